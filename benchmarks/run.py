#!/usr/bin/env python
"""loghandlers benchmark: caller cost, delivery, memory and worker cost, in one run.

    python benchmarks/run.py            # full run (100k-record bursts, 1M-record memory run)
    python benchmarks/run.py --quick    # smaller run for development
    python benchmarks/run.py --json PATH

Prints one markdown report (paste it into the README) and writes every number, every run
and the settings used to ``benchmarks/results.json``. Measurement only: nothing here
asserts on a time. See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import datetime
import gc
import http.client
import importlib
import json
import logging
import logging.handlers
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# "default settings": nothing from the environment may change a handler's options
IGNORED_ENV = sorted(k for k in os.environ if k.startswith("LOGHANDLERS_"))
for _key in IGNORED_ENV:
    del os.environ[_key]

import loghandlers  # noqa: E402

MESSAGE = "order %s paid"
LOGGER_NAME = "bench"
OUR_NAMES = (
    "JSONHandler",
    "SamsaraHandler",
    "InitialStateHandler",
    "PanoplyHandler",
    "KronosHandler",
)
PANOPLY_KEY = "acct1/RAND1xyz"
PANOPLY_SECRET = base64.b64encode(
    b"RAND2abc/6f1c2e9a-0000-4000-8000-000000000001/123456789012/us-east-1"
).decode("ascii")

FULL = dict(
    records=100_000,
    repeats=3,
    memory_records=1_000_000,
    peer_deadline=6.0,  # seconds after its loop a peer may take to deliver
    stage_repeats=9,
)
QUICK = dict(
    records=20_000,
    repeats=3,
    memory_records=200_000,
    peer_deadline=4.0,
    stage_repeats=5,
)


def our_handlers() -> tuple[dict, dict]:
    """{name: class} of the handlers that import, {name: why not} for the others."""
    found, missing = {}, {}
    for name in OUR_NAMES:
        try:
            found[name] = getattr(importlib.import_module("loghandlers"), name)
        except (ImportError, AttributeError) as exc:
            missing[name] = f"{type(exc).__name__}: {exc}"
    return found, missing


def our_options(name: str, base_url: str) -> tuple[dict, str, int]:
    """(constructor options, sink channel, sink events per record) at default settings."""
    common = {"spool_dir": ""}
    if name == "JSONHandler":
        return {**common, "url": base_url + "/json", "compression": "gzip"}, "json", 1
    if name == "SamsaraHandler":
        return {**common, "url": base_url}, "samsara", 1
    if name == "InitialStateHandler":
        opts = {"url": base_url, "access_key": "bench-access", "bucket_key": "bench-bucket"}
        return {**common, **opts}, "initialstate", 3  # message, user, amount
    if name == "PanoplyHandler":
        url = base_url + "/123456789012/sdk-acct1-RAND2abc"
        opts = {"url": url, "api_key": PANOPLY_KEY, "api_secret": PANOPLY_SECRET}
        return {**common, **opts}, "panoply", 1
    if name == "KronosHandler":
        return {**common, "url": base_url}, "kronos", 1
    raise KeyError(name)


# --------------------------------------------------------------------------- measuring


def rss_kb() -> int:
    return _status_kb("VmRSS")


def hwm_kb() -> int:
    return _status_kb("VmHWM")


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux: peak only


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu_s(native_id: int | None) -> float | None:
    """CPU seconds of another thread of this process (Linux; 1/CLK_TCK resolution)."""
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def make_record(i: int) -> logging.LogRecord:
    return logging.getLogger(LOGGER_NAME).makeRecord(
        LOGGER_NAME,
        logging.INFO,
        __file__,
        1,
        MESSAGE,
        (i,),
        None,
        extra={"user": i, "amount": 1.5},
    )


def bench_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def log_loop(info, start: int, stop: int) -> None:
    for i in range(start, stop):
        info(MESSAGE, i, extra={"user": i, "amount": 1.5})


# --------------------------------------------------------------------------- the sink


class Sink:
    """benchmarks/sink.py in its own process; always killed on the way out."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.conn = None

    def start(self) -> Sink:
        errors = open(os.path.join(self.workdir, "sink.stderr"), "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "sink.py"),
                "--parent-pid",
                str(os.getpid()),
                "--max-seconds",
                "900",
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        atexit.register(self.stop)
        line = _readline_with_timeout(self.proc.stdout, 15.0)
        if not line.startswith("PORT "):
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _request(self, method: str, path: str) -> dict:
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.conn.request(method, path, body=b"" if method == "POST" else None)
                response = self.conn.getresponse()
                return json.loads(response.read() or b"{}")
            except (OSError, http.client.HTTPException, ValueError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        return {}

    def counts(self) -> dict:
        return self._request("GET", "/_counts")

    def reset(self) -> None:
        self._request("POST", "/_reset")

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _readline_with_timeout(stream, timeout: float) -> str:
    box = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


# --------------------------------------------------------------------------- runners


class Runner:
    """One configured handler for one burst: the same surface for floors, ours and peers."""

    kind = "?"
    channel: str | None = None
    events_per_record = 1
    worker_native_id: int | None = None

    def flush(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def close(self) -> None:
        self.handler.close()

    def stats(self) -> dict | None:
        return None


class NullFloor(Runner):
    kind = "floor"

    def __init__(self, ctx):
        self.handler = logging.NullHandler()


class _Drop(logging.Handler):
    def handle(self, record):
        return True

    def emit(self, record):
        pass


class QueueFloor(Runner):
    """stdlib QueueHandler + QueueListener whose only handler drops every record."""

    kind = "floor"
    queue_factory = staticmethod(lambda: queue.Queue(-1))

    def __init__(self, ctx):
        self.queue = self.queue_factory()
        self.handler = logging.handlers.QueueHandler(self.queue)
        self.listener = logging.handlers.QueueListener(self.queue, _Drop())
        self.listener.start()
        self.worker_native_id = getattr(self.listener._thread, "native_id", None)

    def close(self) -> None:
        self.listener.stop()
        self.handler.close()


class SimpleQueueFloor(QueueFloor):
    queue_factory = staticmethod(queue.SimpleQueue)


class Ours(Runner):
    kind = "ours"

    def __init__(self, ctx, name: str):
        cls = ctx.ours[name]
        options, self.channel, self.events_per_record = our_options(name, ctx.sink.base_url)
        self.handler = cls(**options)
        thread = getattr(getattr(self.handler, "_worker", None), "_thread", None)
        self.worker_native_id = getattr(thread, "native_id", None)

    def flush(self) -> None:
        self.handler.flush(timeout=60)

    def stats(self) -> dict:
        return self.handler.stats()


class Peer(Runner):
    kind = "peer"

    def __init__(self, ctx, peer_class):
        self.peer = peer_class(ctx.sink.base_url, "127.0.0.1", ctx.sink.port, ctx.workdir)
        self.handler = self.peer.handler
        self.channel = self.peer.channel
        self.events_per_record = self.peer.events_per_record

    def flush(self) -> None:
        self.peer.flush()

    def abandon(self) -> None:
        self.peer.abandon()

    def close(self) -> None:
        _bounded(self.peer.close, 15.0)


def _bounded(fn, seconds: float) -> bool:
    """Run ``fn`` on a daemon thread; give up waiting after ``seconds``."""
    errors = []

    def call():
        try:
            fn()
        except Exception as exc:  # a peer's close() failing must not stop the benchmark
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive() and not errors


class Spec:
    def __init__(self, name: str, kind: str, factory, note: str = "", max_records=None):
        self.name, self.kind, self.factory, self.note = name, kind, factory, note
        self.max_records = max_records  # records per burst in a full run, if fewer than all
        self.records = None


# --------------------------------------------------------------------------- one burst


def burst(ctx, spec: Spec, n: int) -> dict:
    """Log ``n`` records through a fresh handler, flush, and wait for the sink."""
    runner = spec.factory(ctx)
    handler = runner.handler
    logger = bench_logger(handler)
    info = logger.info
    closed = False
    try:
        if runner.channel is not None:
            ctx.sink.reset()
        gc.collect()
        worker0 = thread_cpu_s(runner.worker_native_id)
        e0 = time.time()
        p0 = time.process_time()
        c0 = time.thread_time()
        w0 = time.perf_counter()
        log_loop(info, 0, n)
        w1 = time.perf_counter()
        c1 = time.thread_time()
        p1 = time.process_time()
        e1 = time.time()
        out = {
            "n": n,
            "wall_us": (w1 - w0) / n * 1e6,
            "cpu_us": (c1 - c0) / n * 1e6,
            "process_cpu_loop_us": (p1 - p0) / n * 1e6,
        }
        note = getattr(getattr(runner, "peer", None), "note", None)
        if note:
            out["note"] = note
        if runner.channel is None:
            if runner.kind == "floor":  # let its listener finish its queue, then count
                logger.removeHandler(handler)
                runner.close()
                closed = True
                out["process_cpu_us"] = (time.process_time() - p0) / n * 1e6
            return out
        f0 = time.perf_counter()
        runner.flush()
        out["flush_s"] = time.perf_counter() - f0
        expected = n * runner.events_per_record
        stats = runner.stats()
        idle_limit = 2.5  # a peer that delivered some and then went quiet for this long is done
        deadline = time.monotonic() + (5.0 if runner.kind == "ours" else ctx.cfg["peer_deadline"])
        seen, changed = -1, time.monotonic()
        complete = False
        while True:
            slot = ctx.sink.counts().get(runner.channel, {})
            events = slot.get("events", 0)
            now = time.monotonic()
            if events >= expected:
                complete = True
                break
            if events != seen:
                seen, changed = events, now
            if stats is not None and events >= stats.get("sent", 0) * runner.events_per_record:
                complete = True  # everything the handler says it delivered has arrived
                break
            if stats is None and events > 0 and now - changed > idle_limit:
                complete = True  # the peer stopped sending (it dropped the rest)
                break
            if now > deadline:
                break
            time.sleep(0.01)
        p2 = time.process_time()
        out["settle_s"] = time.perf_counter() - w1
        worker1 = thread_cpu_s(runner.worker_native_id)
        delivered = events / runner.events_per_record
        last = slot.get("last")
        out.update(
            delivered=delivered,
            delivered_pct=100.0 * delivered / n,
            complete=complete,
            requests=slot.get("requests", 0),
            wire_bytes=slot.get("wire_bytes", 0),
            body_bytes=slot.get("bytes", 0),
            sink_errors=slot.get("errors", 0),
            sink_s=slot.get("sink_s", 0.0),
            last_after_loop_s=(last - e1) if last else None,
            rate=(delivered / (last - e0)) if last and last > e0 else None,
            process_cpu_us=((p2 - p0) / delivered * 1e6) if delivered else None,
        )
        if worker0 is not None and worker1 is not None and delivered:
            out["worker_cpu_us"] = (worker1 - worker0) / delivered * 1e6
        if stats is not None:
            stats = runner.stats()
            out["stats"] = {
                k: stats.get(k)
                for k in ("emitted", "sent", "dropped", "failed", "retried", "rejected", "batches")
            }
        return out
    finally:
        if not closed:
            logger.removeHandler(handler)
            runner.abandon()  # a peer cut off by the deadline stops sending now
            k0 = time.perf_counter()
            if not _bounded(runner.close, 20.0):
                ctx.progress(f"{spec.name}: close() failed or did not return within 20 s")
            close_s = time.perf_counter() - k0
            if close_s > 2:
                ctx.progress(f"{spec.name}: close() took {close_s:.1f} s")


def run_bursts(ctx, specs: list) -> dict:
    cfg = ctx.cfg
    results = {s.name: {"kind": s.kind, "note": s.note, "runs": []} for s in specs}
    # warm-up (imports, first connections) and, for peers, how many records fit the budget
    for spec in specs:
        warm = 500 if spec.kind == "peer" else 2000
        r = burst(ctx, spec, warm)
        if r.get("note"):
            results[spec.name]["note"] = r["note"]
        spec.records = cfg["records"]
        if spec.max_records:  # a very slow peer: a fixed share of the burst, the same every run
            share = spec.max_records * cfg["records"] // FULL["records"]
            spec.records = min(cfg["records"], max(1000, share))
        results[spec.name]["records"] = spec.records
        ctx.progress(f"warm-up {spec.name}: {r['wall_us']:.1f} us/record -> n={spec.records}")
    for rep in range(cfg["repeats"]):
        order = specs[rep % len(specs) :] + specs[: rep % len(specs)]  # rotate the start
        for spec in order:
            r = burst(ctx, spec, spec.records)
            r["repeat"] = rep
            results[spec.name]["runs"].append(r)
            ctx.progress(
                f"rep {rep + 1} {spec.name}: {r['wall_us']:.2f} us wall, {r['cpu_us']:.2f} us cpu"
                + (
                    f", delivered {r['delivered_pct']:.1f}% settled in {r['settle_s']:.1f} s"
                    if "delivered_pct" in r
                    else ""
                )
            )
    floor = results.get("QueueHandler floor")
    floor_by_rep = {r["repeat"]: r for r in floor["runs"]} if floor else {}
    for res in results.values():
        runs = res["runs"]
        numbers = {
            k
            for r in runs
            for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "repeat"
        }
        res["median"] = {k: med([r.get(k) for r in runs]) for k in sorted(numbers)}
        res["complete_runs"] = sum(1 for r in runs if r.get("complete"))
        # ratios are taken run by run against the floor's run of the same repeat, then the
        # median: the pairs ran seconds apart, so slow drift of a noisy machine cancels out
        pairs = [(r, floor_by_rep[r["repeat"]]) for r in runs if r["repeat"] in floor_by_rep]
        res["ratio_to_queue_floor"] = {
            k: med([r[k] / f[k] for r, f in pairs if f.get(k)]) for k in ("wall_us", "cpu_us")
        }
        res["rate_pct_of_floor_emit_rate"] = med(
            [100.0 * r["rate"] * f["wall_us"] / 1e6 for r, f in pairs if r.get("rate")]
        )
    return results


# --------------------------------------------------------------------------- worker stages


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    """(median thread-CPU seconds, median wall seconds, last result)."""
    cpu, wall, result = [], [], None
    for _ in range(repeats):
        gc.collect()
        c0, w0 = time.thread_time(), time.perf_counter()
        result = fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
    return statistics.median(cpu), statistics.median(wall), result


class BusyCaller:
    """A thread logging to a NullHandler non-stop, so the GIL is as contended as in a burst
    (bounded: it stops on exit, or after 5M records)."""

    def __enter__(self) -> BusyCaller:
        self.stop = threading.Event()
        logger = logging.getLogger(LOGGER_NAME + ".busy")
        logger.handlers[:] = [logging.NullHandler()]
        logger.propagate = False
        logger.setLevel(logging.INFO)

        def spin():
            info, i = logger.info, 0
            while not self.stop.is_set() and i < 5_000_000:
                info(MESSAGE, i, extra={"user": i, "amount": 1.5})
                i += 1

        self.thread = threading.Thread(target=spin, daemon=True)
        self.thread.start()
        time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def worker_stages(ctx) -> dict:
    out = {}
    for name, cls in ctx.ours.items():
        out[name] = stages_of(ctx, name, cls)
        ctx.progress(f"stages {name}: {out[name]['worker_total_us']:.2f} us/record")
    return out


def stages_of(ctx, name: str, cls) -> dict:
    """Each worker stage of one handler, timed on the main thread on prebuilt records."""
    from loghandlers.records import base_fields, capture, dumps

    repeats = ctx.cfg["stage_repeats"]
    options, channel, _ = our_options(name, ctx.sink.base_url)
    handler = cls(**options)
    try:
        size = handler.settings.batch_size
        records = [make_record(i) for i in range(size)]
        cap_cpu, _, snaps = _timed(lambda: [capture(r, None) for r in records], repeats)
        base_cpu, _, _ = _timed(lambda: [base_fields(s, None) for s in snaps], repeats)
        conv_cpu, _, events = _timed(lambda: [handler._convert(s) for s in snaps], repeats)
        dumps_cpu, _, text = _timed(lambda: dumps(events), repeats)
        enc_cpu, _, request = _timed(lambda: handler.service.encode(events), repeats)
        fit_cpu, _, parts = _timed(lambda: list(handler._worker._fit(events)), repeats)
        requests = [req for _, req in parts if req is not None]
        transport = handler._transport
        comp_cpu, _, bodies = _timed(lambda: [transport.compress(r) for r in requests], repeats)
        compresses = transport.compression == "gzip" and any(r.compressible for r in requests)
        for req, (body, headers) in zip(requests, bodies):  # open the connection first
            transport.send(req, body, headers)
        ctx.sink.reset()
        send_cpu, send_wall, replies = _timed(
            lambda: [transport.send(r, b, h) for r, (b, h) in zip(requests, bodies)], repeats
        )
        sink_slot = ctx.sink.counts().get(channel, {})
        delivered = sink_slot.get("events", 0)
        sink_ms = 1e3 * sink_slot.get("sink_s", 0.0) / max(1, sink_slot.get("requests", 1))
        with BusyCaller():
            _, busy_wall, _ = _timed(
                lambda: [transport.send(r, b, h) for r, (b, h) in zip(requests, bodies)],
                repeats,
            )
        per = 1e6 / size
        per_request = 1e3 / max(1, len(requests))
        stage = {
            "batch_size": size,
            "requests_per_batch": len(requests),
            "body_bytes": sum(len(r.body) for r in requests),
            "wire_bytes": sum(len(b) for b, _ in bodies),
            "compression": transport.compression,
            "compression_level": transport.compression_level,
            "capture_us": cap_cpu * per,
            "base_fields_us": base_cpu * per,
            "convert_us": conv_cpu * per,
            "dumps_us": dumps_cpu * per,
            "encode_us": enc_cpu * per,
            "encode_as_worker_us": fit_cpu * per,
            "compress_us": comp_cpu * per if compresses else 0.0,
            "send_cpu_us": send_cpu * per,
            "send_wall_us": send_wall * per,
            "send_cpu_ms_per_request": send_cpu * per_request,
            "send_wall_ms_per_request": send_wall * per_request,
            "send_wall_busy_ms_per_request": busy_wall * per_request,
            "send_wall_busy_us": busy_wall * per,
            "sink_ms_per_request": sink_ms,
            "send_statuses": sorted({r.status for r in replies}),
            "send_check_events_at_sink": delivered,
            "dumps_bytes": len(text),
        }
        stage["worker_total_us"] = (
            stage["convert_us"]
            + stage["encode_as_worker_us"]
            + stage["compress_us"]
            + stage["send_cpu_us"]
        )
        return stage
    finally:
        handler.close(timeout=1)


def gzip_levels(ctx) -> dict:
    """Cost and ratio of gzip levels on one encoded Samsara (else JSON) batch."""
    from loghandlers.records import capture

    name = "SamsaraHandler" if "SamsaraHandler" in ctx.ours else next(iter(ctx.ours), None)
    if name is None:
        return {}
    options, _, _ = our_options(name, ctx.sink.base_url)
    handler = ctx.ours[name](**options)
    try:
        size = handler.settings.batch_size
        events = [handler._convert(capture(make_record(i), None)) for i in range(size)]
        body = handler.service.encode(events).body
    finally:
        handler.close(timeout=1)
    levels = {}
    for level in (1, 6, 9):

        def compress(level=level):
            c = zlib.compressobj(level, zlib.DEFLATED, 31)
            return c.compress(body) + c.flush()

        cpu, _, packed = _timed(compress, ctx.cfg["stage_repeats"])
        levels[str(level)] = {
            "us_per_event": cpu / size * 1e6,
            "ratio": len(body) / len(packed),
            "mb_per_s": len(body) / cpu / 1e6 if cpu else None,
            "bytes": len(packed),
        }
    return {
        "handler": name,
        "events": size,
        "body_bytes": len(body),
        "levels": levels,
        "default_level": handler.settings.compression_level,
    }


def snapshot_bytes() -> dict:
    """Bytes a buffered snapshot and a converted event hold (tracemalloc, 10k of each)."""
    import tracemalloc

    from loghandlers.records import capture

    records = [make_record(i) for i in range(10_000)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        snaps = [capture(r, None) for r in records]
        per_snapshot = (tracemalloc.get_traced_memory()[0] - base) / len(snaps)
        record_base = tracemalloc.get_traced_memory()[0]
        more = [make_record(i) for i in range(10_000)]
        per_record = (tracemalloc.get_traced_memory()[0] - record_base) / len(more)
    finally:
        tracemalloc.stop()
    del snaps, more
    return {"snapshot_bytes": per_snapshot, "logrecord_bytes": per_record}


# --------------------------------------------------------------------------- memory


def memory_child(name: str, n: int) -> dict:
    """Runs in its own process: endpoint down, ``n`` records, RSS along the way."""
    ours, missing = our_handlers()
    cls = ours[name]
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens here now: every connection is refused
    base_url = f"http://127.0.0.1:{port}"
    options, _, _ = our_options(name, base_url)
    handler = cls(**options)
    logger = bench_logger(handler)
    info = logger.info
    log_loop(info, 0, 100)  # warm the code paths
    gc.collect()
    base = rss_kb()
    hwm0 = hwm_kb()
    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.wait(0.05) and len(samples) < 5000:
            samples.append(rss_kb())

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    checkpoints = []
    done = 0
    w0 = time.perf_counter()
    c0 = time.thread_time()
    for fraction in (0.01, 0.25, 0.5, 0.75, 1.0):
        upto = int(n * fraction)
        log_loop(info, done, upto)
        done = upto
        stats = handler.stats()
        checkpoints.append(
            {
                "fraction": fraction,
                "records": done,
                "rss_kb": rss_kb(),
                "queued": stats["queued"],
                "dropped": stats["dropped"],
                "in_flight": stats["in_flight"],
            }
        )
    wall = time.perf_counter() - w0
    cpu = time.thread_time() - c0
    stop.set()
    thread.join(1)
    stats = handler.stats()
    return {
        "handler": name,
        "records": n,
        "max_queue_size": handler.settings.max_queue_size,
        "batch_size": handler.settings.batch_size,
        "baseline_rss_kb": base,
        "baseline_hwm_kb": hwm0,
        "final_hwm_kb": hwm_kb(),
        "peak_sampled_rss_kb": max(samples + [c["rss_kb"] for c in checkpoints]),
        "checkpoints": checkpoints,
        "samples": len(samples),
        "caller_wall_us": wall / n * 1e6,
        "caller_cpu_us": cpu / n * 1e6,
        "stats": {
            k: stats.get(k)
            for k in ("emitted", "queued", "in_flight", "dropped", "failed", "retried", "sent")
        },
    }


def run_memory(ctx, names: list) -> dict:
    out = {}
    for name in names:
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    name,
                    "--records",
                    str(ctx.cfg["memory_records"]),
                ],
                capture_output=True,
                text=True,
                timeout=150,
                cwd=ctx.workdir,
            )
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            result = (
                json.loads(line)
                if line.startswith("{")
                else {"error": f"exit {done.returncode}: {done.stderr[-500:]}"}
            )
        except subprocess.TimeoutExpired:
            result = {"error": "timed out after 150 s"}
        if "checkpoints" in result:
            base = result["baseline_rss_kb"]
            result["growth_mb"] = {
                str(c["fraction"]): (c["rss_kb"] - base) / 1024 for c in result["checkpoints"]
            }
            result["peak_growth_mb"] = (
                max(result["peak_sampled_rss_kb"], result["final_hwm_kb"]) - base
            ) / 1024
            by = {c["fraction"]: c["rss_kb"] for c in result["checkpoints"]}
            result["growth_after_quarter_mb"] = (by[1.0] - by[0.25]) / 1024
        out[name] = result
        ctx.progress(f"memory {name}: {result.get('peak_growth_mb', result.get('error'))}")
    return out


# --------------------------------------------------------------------------- report


def fmt(value, spec=".1f", dash="—"):
    if value is None:
        return dash
    return format(value, spec)


def render(ctx, report: dict) -> str:
    meta = report["meta"]
    bursts = report["caller_delivery"]
    floor = bursts.get("QueueHandler floor", {}).get("median", {})
    null = bursts.get("NullHandler floor", {}).get("median", {})
    floor_rate = 1e6 / floor["wall_us"] if floor.get("wall_us") else None
    lines = [
        f"### loghandlers benchmark — {meta['date']} ({'quick' if meta['quick'] else 'full'} run)",
        "",
        f"`{meta['platform']}`, Python {meta['python']}, {meta['cpu_count']} CPUs; "
        f"medians of {ctx.cfg['repeats']} runs per row, rows interleaved; "
        f"{ctx.cfg['records']:,}-record bursts of "
        '`logger.info("order %s paid", i, extra={"user": i, "amount": 1.5})`; '
        f"run took {meta['elapsed_s']:.0f} s.",
        "",
        '**Caller cost and delivery** (default settings, `spool_dir=""`; gzip on for JSON '
        "and Samsara; sink in another process on 127.0.0.1; × floor is the median of each "
        "repeat's ratio to that repeat's QueueHandler floor). "
        f"Floor emit rate (1 / QueueHandler-floor wall): {fmt(floor_rate, ',.0f')} rec/s; "
        f"NullHandler: {fmt(1e6 / null['wall_us'] if null.get('wall_us') else None, ',.0f')} rec/s.",
        "",
        "| handler | records | caller wall µs/rec | × floor | caller CPU µs/rec | × floor "
        "| delivered | end-to-end rec/s | % of floor rate | last record after loop | "
        "process CPU µs/rec | worker CPU µs/rec |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, res in bursts.items():
        m = res.get("median", {})
        ratio = res.get("ratio_to_queue_floor", {})
        runs = res.get("runs", [])
        delivered = f"{m['delivered_pct']:.1f}%" if m.get("delivered_pct") is not None else "—"
        if runs and m.get("delivered_pct") is not None and res.get("complete_runs", 0) < len(runs):
            delivered += " (cut off)"
        label = name if res["kind"] != "peer" else f"{name} (peer)"
        lines.append(
            f"| {label} | {res.get('records', 0):,} | {fmt(m.get('wall_us'), '.2f')} | "
            f"{fmt(ratio.get('wall_us'), '.2f')}× | {fmt(m.get('cpu_us'), '.2f')} | "
            f"{fmt(ratio.get('cpu_us'), '.2f')}× | {delivered} | {fmt(m.get('rate'), ',.0f')} | "
            f"{fmt(res.get('rate_pct_of_floor_emit_rate'), '.0f')} | "
            f"{fmt(m.get('last_after_loop_s'), '.2f')}{' s' if m.get('last_after_loop_s') is not None else ''} | "
            f"{fmt(m.get('process_cpu_us'), '.1f')} | {fmt(m.get('worker_cpu_us'), '.1f')} |"
        )
    stages = report.get("worker_stages", {})
    if stages:
        lines += [
            "",
            "**Worker cost by stage** (thread CPU µs per record, on prebuilt records, one "
            "default-size batch on the main thread; *encode* is what the worker runs, splits "
            "included; *send* is `Transport.send` of that batch to the sink; *in-burst worker "
            "thread* is the worker thread's own CPU per delivered record in the bursts above, "
            "from /proc; the last column is one request's send, alone and while another thread "
            "logs non-stop)",
            "",
            "| handler | batch | requests | capture (caller) | convert | encode | compress | "
            "send | worker total | in-burst worker thread | one request: CPU / wall (sink's "
            "part) / wall with a busy caller |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, s in stages.items():
            burst_worker = bursts.get(name, {}).get("median", {}).get("worker_cpu_us")
            comp = (
                f"{s['compress_us']:.2f} (gzip {s['compression_level']})"
                if s["compression"] == "gzip" and s["compress_us"]
                else "—"
            )
            lines.append(
                f"| {name} | {s['batch_size']:,} | {s['requests_per_batch']} | "
                f"{s['capture_us']:.2f} | {s['convert_us']:.2f} | "
                f"{s['encode_as_worker_us']:.2f} | {comp} | "
                f"{s['send_cpu_us']:.2f} | "
                f"{s['worker_total_us']:.2f} | {fmt(burst_worker, '.2f')} | "
                f"{s['send_cpu_ms_per_request']:.1f} / {s['send_wall_ms_per_request']:.1f} "
                f"(sink {s['sink_ms_per_request']:.1f}) / "
                f"{s['send_wall_busy_ms_per_request']:.1f} ms |"
            )
    gz = report.get("gzip_levels", {})
    if gz.get("levels"):
        lines += [
            "",
            f"**gzip level** on one {gz['handler']} batch ({gz['events']:,} events, "
            f"{gz['body_bytes'] / 1024:.0f} KiB; handler default level "
            f"{gz['default_level']}): "
            + "; ".join(
                f"level {lv}: {v['us_per_event']:.2f} µs/event, ratio {v['ratio']:.1f}×, "
                f"{v['mb_per_s']:.0f} MB/s"
                for lv, v in gz["levels"].items()
            ),
        ]
    mem = report.get("memory", {})
    if mem:
        sizes = report.get("sizes", {})
        lines += [
            "",
            f"**Memory, endpoint down** (connection refused; {ctx.cfg['memory_records']:,} "
            "records at default settings, own process; RSS growth over the pre-loop RSS at "
            f"1/25/50/75/100% of the loop; a buffered snapshot is "
            f"{sizes.get('snapshot_bytes', 0):.0f} B by tracemalloc, a LogRecord "
            f"{sizes.get('logrecord_bytes', 0):.0f} B)",
            "",
            "| handler | max_queue_size | batch | 1% | 25% | 50% | 75% | 100% | peak | "
            "held at the end (queued + in flight) | dropped | caller wall µs/rec |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, r in mem.items():
            if "growth_mb" not in r:
                lines.append(f"| {name} | error: {r.get('error', '?')[:80]} |")
                continue
            g = r["growth_mb"]
            end = r["checkpoints"][-1]
            lines.append(
                f"| {name} | {r['max_queue_size']:,} | {r['batch_size']:,} | "
                + " | ".join(f"{g[k]:.1f} MB" for k in ("0.01", "0.25", "0.5", "0.75", "1.0"))
                + f" | {r['peak_growth_mb']:.1f} MB | {end['queued']:,} + {end['in_flight']:,} | "
                f"{r['stats']['dropped']:,} | {r['caller_wall_us']:.2f} |"
            )
    peers = report["peers"]
    notes = [f"{n}: {res['note']}" for n, res in bursts.items() if res["kind"] == "peer"]
    lines += ["", "Peers: " + ("; ".join(notes) if notes else "none installed") + "."]
    if peers["missing"]:
        lines.append("Not installed: " + ", ".join(sorted(peers["missing"])) + ".")
    if report.get("ours_missing"):
        lines.append("Our handlers not importable: " + ", ".join(report["ours_missing"]) + ".")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


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
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        result = memory_child(args.memory_child, args.records)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os._exit(0)  # skip atexit's drain of a handler whose endpoint is down

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
        bursts = run_bursts(ctx, specs)
        stages = worker_stages(ctx)
        gz = gzip_levels(ctx)
        sizes = snapshot_bytes()
    finally:
        ctx.sink.stop()
    memory_names = (
        list(ctx.ours) if args.memory_all else [n for n in ("JSONHandler",) if n in ctx.ours]
    )
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
    report["markdown"] = render(ctx, report)
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(report["markdown"])
    print(f"\n(JSON: {json_path})")
    return 0


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
