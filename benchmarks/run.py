#!/usr/bin/env python
"""loghandlers benchmark: caller cost, delivery, memory and worker cost, in one run.

    python benchmarks/run.py            # full run (100k-record bursts, 1M-record memory run)
    python benchmarks/run.py --quick    # smaller run for development
    python benchmarks/run.py --json PATH

Prints one markdown report (paste it into the README) and writes every number, every run
and the settings used to ``benchmarks/results.json``. Measurement only: nothing here
asserts on a time. See benchmarks/README.md for what each number means.

The parts: ``common`` (settings, the record, helpers), ``runners`` (the sink and one
handler per burst), ``bursts``, ``stages`` and ``memory`` (the measurements), ``report``
(the markdown, the issue's targets first), ``probes`` (the only code that looks inside
our handlers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time

from bursts import run_bursts, summarize
from common import FULL, HERE, IGNORED_ENV, QUICK, our_handlers, our_options
from memory import memory_child, run_memory, summarize_memory
from report import render
from runners import NullFloor, Ours, Peer, QueueFloor, SimpleQueueFloor, Sink, Spec
from stages import gzip_levels, snapshot_bytes, worker_stages
from targets import evaluate

import loghandlers


class Context:
    def __init__(self, cfg: dict, workdir: str, quiet: bool):
        self.cfg = cfg
        self.workdir = workdir
        self.quiet = quiet
        self.sink: Sink | None = None
        self.ours: dict = {}
        self.started = time.monotonic()

    def progress(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)


def build_specs(ctx, peer_classes: list) -> list:
    specs = [
        Spec("NullHandler floor", "floor", NullFloor, "logging.NullHandler"),
        Spec(
            "QueueHandler floor",
            "floor",
            QueueFloor,
            "QueueHandler(queue.Queue(-1)) + QueueListener that drops records",
        ),
        Spec(
            "QueueHandler (SimpleQueue)",
            "floor",
            SimpleQueueFloor,
            "QueueHandler(queue.SimpleQueue()) + dropping QueueListener",
        ),
    ]
    for name in ctx.ours:
        specs.append(
            Spec(
                name,
                "ours",
                lambda c, name=name: Ours(c, name),
                "default settings" + (", compression=gzip" if name == "JSONHandler" else ""),
            )
        )
    for peer in peer_classes:
        max_records = getattr(peer, "max_records", None)
        spec = Spec(peer.name, "peer", lambda c, peer=peer: Peer(c, peer), "", max_records)
        specs.append(spec)
    return specs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run for development")
    parser.add_argument("--json", default=str(HERE / "results.json"), help="where to write JSON")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    parser.add_argument(
        "--memory-all",
        action="store_true",
        help="memory run for every handler (default: JSONHandler only)",
    )
    parser.add_argument(
        "--stages-only",
        action="store_true",
        help="only the worker-stage table (no bursts, no memory run): for profiling changes",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--render", metavar="JSON", help="print the report of an earlier run's JSON, run nothing"
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        result = memory_child(args.memory_child, args.records)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os._exit(0)  # skip atexit's drain of a handler whose endpoint is down

    if args.render:
        print(rerender(args.render))
        return 0

    cfg = dict(QUICK if args.quick else FULL)
    json_path = os.path.abspath(args.json)
    workdir = tempfile.mkdtemp(prefix="loghandlers-bench-")
    home = os.getcwd()
    os.chdir(workdir)  # peers write failure files into the working directory
    try:
        return run(args, cfg, json_path, workdir)
    finally:
        os.chdir(home)
        shutil.rmtree(workdir, ignore_errors=True)


def run(args, cfg: dict, json_path: str, workdir: str) -> int:
    ctx = Context(cfg, workdir, args.quiet)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))

    ctx.ours, ours_missing = our_handlers()
    if args.no_peers:
        peer_classes, peers_missing, peer_versions = [], {}, {}
    else:
        import peers as peer_module

        peer_classes, peers_missing = peer_module.available()
        peer_versions = peer_module.versions()
    ctx.sink = Sink(workdir).start()
    try:
        ctx.progress(
            f"sink on port {ctx.sink.port}; ours: {', '.join(ctx.ours)}; "
            f"peers: {', '.join(p.name for p in peer_classes) or 'none'}"
        )
        specs = build_specs(ctx, peer_classes)
        bursts = {} if args.stages_only else run_bursts(ctx, specs)
        stages = worker_stages(ctx)
        gz = gzip_levels(ctx)
        sizes = snapshot_bytes(ctx)
    finally:
        ctx.sink.stop()
    memory_names = (
        list(ctx.ours) if args.memory_all else [n for n in ("JSONHandler",) if n in ctx.ours]
    )
    if args.stages_only:
        memory_names = []
    memory = run_memory(ctx, memory_names)

    report = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu_count": os.cpu_count(),
            "quick": args.quick,
            "loghandlers_version": getattr(loghandlers, "__version__", None),
            "ignored_env": IGNORED_ENV,
            "elapsed_s": time.monotonic() - ctx.started,
        },
        "config": cfg,
        "peers": {
            "installed": peer_versions,
            "used": [p.name for p in peer_classes],
            "missing": peers_missing,
        },
        "ours_missing": ours_missing,
        "handler_settings": handler_settings(ctx),
        "caller_delivery": bursts,
        "worker_stages": stages,
        "gzip_levels": gz,
        "sizes": sizes,
        "memory": memory,
    }
    report["targets"] = evaluate(report)
    report["markdown"] = render(ctx, report)
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(report["markdown"])
    print(f"\n(JSON: {json_path})")
    return 0


def rerender(path: str) -> str:
    """The markdown of a results JSON, its summaries and targets recomputed from its runs
    (so a JSON written before a change of the report can be compared with a new one)."""
    with open(path) as f:
        report = json.load(f)
    summarize(report["caller_delivery"])
    for result in report.get("memory", {}).values():
        summarize_memory(result)
    report["targets"] = evaluate(report)
    ctx = Context(report["config"], "", quiet=True)
    ctx.started = time.monotonic() - report["meta"].get("elapsed_s", 0.0)
    return render(ctx, report)


def handler_settings(ctx) -> dict:
    out = {}
    for name, cls in ctx.ours.items():
        options, _, _ = our_options(name, "http://127.0.0.1:9")
        try:
            from loghandlers import options as opts

            specs = opts.COMMON + tuple(cls.service_class.options)
            settings = opts.resolve(
                cls.service_class.env, specs, options, cls.service_class.defaults
            )
            out[name] = {
                k: v
                for k, v in settings.as_dict().items()
                if k
                in (
                    "batch_size",
                    "max_batch_bytes",
                    "max_queue_size",
                    "flush_interval",
                    "compression",
                    "compression_level",
                    "min_batch_size",
                    "retries",
                    "backoff",
                )
            }
        except Exception as exc:  # a handler built differently: say so, don't fail
            out[name] = {"error": str(exc)}
    return out


if __name__ == "__main__":
    sys.exit(main())
