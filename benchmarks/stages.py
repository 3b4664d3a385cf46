"""Our worker's pipeline stage by stage on prebuilt records (capture, convert, encode,
compress, send), the gzip levels, and the bytes a buffered snapshot holds."""

from __future__ import annotations

import gc
import logging
import statistics
import threading
import time
import zlib

from common import LOGGER_NAME, MESSAGE, make_record, our_options
from probes import convert_batch, fit_batch, transport_of

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
        conv_cpu, _, events = _timed(lambda: convert_batch(handler, snaps), repeats)
        dumps_cpu, _, text = _timed(lambda: dumps(events), repeats)
        enc_cpu, _, request = _timed(lambda: handler.service.encode(events), repeats)
        fit_cpu, _, parts = _timed(lambda: fit_batch(handler, events), repeats)
        requests = [req for _, req in parts if req is not None]
        transport = transport_of(handler)
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
        events = convert_batch(handler, [capture(make_record(i), None) for i in range(size)])
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


def snapshot_bytes(ctx) -> dict:
    """Bytes a buffered snapshot, a LogRecord, and one record of JSONHandler's batch in flight
    (its event dict plus its share of the encoded body) hold (tracemalloc, 10k of each)."""
    import tracemalloc

    from loghandlers.records import capture

    records = [make_record(i) for i in range(10_000)]
    handler = None
    if "JSONHandler" in ctx.ours:
        options, _, _ = our_options("JSONHandler", ctx.sink.base_url)
        handler = ctx.ours["JSONHandler"](**options)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        snaps = [capture(r, None) for r in records]
        per_snapshot = (tracemalloc.get_traced_memory()[0] - base) / len(snaps)
        record_base = tracemalloc.get_traced_memory()[0]
        more = [make_record(i) for i in range(10_000)]
        per_record = (tracemalloc.get_traced_memory()[0] - record_base) / len(more)
        per_event = None
        if handler is not None:
            event_base = tracemalloc.get_traced_memory()[0]
            events = convert_batch(handler, snaps)
            parts = fit_batch(handler, events)
            per_event = (tracemalloc.get_traced_memory()[0] - event_base) / len(events)
            del events, parts
    finally:
        tracemalloc.stop()
        if handler is not None:
            handler.close(timeout=1)
    del snaps, more
    return {
        "snapshot_bytes": per_snapshot,
        "logrecord_bytes": per_record,
        "in_flight_bytes_per_record": per_event,
    }
