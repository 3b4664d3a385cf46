"""The markdown report: the issue's targets first (pass/fail with the measured ratio),
then the tables."""

from __future__ import annotations

from targets import evaluate, render_targets


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
        *render_targets(report.get("targets") or evaluate(report)),
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
