"""One burst (log N records through a fresh handler, flush, wait for the sink) and the
interleaved repeats of every row, with medians and per-repeat ratios to the floors."""

from __future__ import annotations

import gc
import time

from common import FULL, bench_logger, log_loop, med, thread_cpu_s
from runners import Spec, _bounded

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
    return summarize(results)


def summarize(results: dict) -> dict:
    """Medians of every row's runs and their per-repeat ratios to the floors (in place)."""
    floor = results.get("QueueHandler floor")
    floor_by_rep = {r["repeat"]: r for r in floor["runs"]} if floor else {}
    null = results.get("NullHandler floor")
    null_by_rep = {r["repeat"]: r for r in null["runs"]} if null else {}
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
        res["by_queue_floor"] = {
            k: [r[k] / f[k] for r, f in pairs if f.get(k)] for k in ("wall_us", "cpu_us")
        }
        res["ratio_to_queue_floor"] = {k: med(v) for k, v in res["by_queue_floor"].items()}
        # whole-process CPU per delivered record over the NullHandler floor's (per emitted
        # record): what shipping costs on top of the logging call itself, repeat by repeat
        null_pairs = [(r, null_by_rep[r["repeat"]]) for r in runs if r["repeat"] in null_by_rep]
        res["process_cpu_by_null_floor"] = [
            r["process_cpu_us"] / f["process_cpu_us"]
            for r, f in null_pairs
            if r.get("process_cpu_us") and f.get("process_cpu_us")
        ]
        res["ratio_to_null_floor"] = {"process_cpu_us": med(res["process_cpu_by_null_floor"])}
        res["rate_pct_of_floor_emit_rate"] = med(
            [100.0 * r["rate"] * f["wall_us"] / 1e6 for r, f in pairs if r.get("rate")]
        )
    return results
