"""Memory with the endpoint down: a handler at default settings logs N records in its own
process (``run.py --memory-child``) while RSS is sampled."""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
import threading
import time

from common import HERE, bench_logger, hwm_kb, log_loop, our_handlers, our_options, rss_kb

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
                    str(HERE / "run.py"),
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
        summarize_memory(result)
        out[name] = result
        ctx.progress(f"memory {name}: {result.get('peak_growth_mb', result.get('error'))}")
    return out


def summarize_memory(result: dict) -> dict:
    """Growth over the pre-loop RSS at each checkpoint, the peak, and the late growth (in
    place; a child that failed keeps only its error)."""
    if "checkpoints" not in result:
        return result
    base = result["baseline_rss_kb"]
    result["growth_mb"] = {
        str(c["fraction"]): (c["rss_kb"] - base) / 1024 for c in result["checkpoints"]
    }
    result["peak_growth_mb"] = (
        max(result["peak_sampled_rss_kb"], result["final_hwm_kb"]) - base
    ) / 1024
    by = {c["fraction"]: c["rss_kb"] for c in result["checkpoints"]}
    result["growth_after_quarter_mb"] = (by[1.0] - by[0.25]) / 1024
    result["growth_last_quarter_mb"] = (by[1.0] - by[0.75]) / 1024
    return result
