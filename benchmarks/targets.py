"""Issue 14's targets, each stated as pass or fail with what this run measured.

Every ratio is taken repeat by repeat against a floor measured seconds earlier or later in
the same run, then the median; the range over the repeats is shown beside it, so a reader
sees how much the noisy machine moved it.
"""

from __future__ import annotations

#: whole-process CPU per delivered record / the NullHandler floor's, at most
PROCESS_CPU_LIMITS = {
    "JSONHandler": 2.0,
    "SamsaraHandler": 2.0,
    "KronosHandler": 2.0,
    "InitialStateHandler": 2.5,
    "PanoplyHandler": 2.5,
}
LAST_RECORD_LIMIT_S = 0.5  # the last record at the sink, after the end of the loop
CALLER_CPU_LIMIT = 1.0  # caller CPU per record / the QueueHandler floor's
#: RSS growth over the last quarter of the endpoint-down loop (250,000 records in a full
#: run), at most, plus room for records that joined the batch in flight meanwhile: a leak
#: of 4 bytes per record would exceed it
FLAT_MB = 1.0


def _range(values: list, spec: str = ".2f") -> str:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f" ({format(min(values), spec)}–{format(max(values), spec)})"


def _verdict(passed) -> str:
    return "—" if passed is None else ("**pass**" if passed else "**FAIL**")


def evaluate(report: dict) -> list[dict]:
    """One row per target and handler: ``target``, ``handler``, ``measured``, ``limit``,
    ``passed`` (True, False, or None when this run could not tell)."""
    bursts = report["caller_delivery"]
    ours = {n: r for n, r in bursts.items() if r["kind"] == "ours"}
    peers = {n: r for n, r in bursts.items() if r["kind"] == "peer"}
    rows = []
    for name, res in ours.items():
        runs = res["runs"]
        full = [r.get("delivered", 0) >= r["n"] for r in runs]
        lags = [r.get("last_after_loop_s") for r in runs]
        in_time = [lag is not None and lag <= LAST_RECORD_LIMIT_S for lag in lags]
        worst = min((r.get("delivered_pct", 0.0) for r in runs), default=0.0)
        slowest = max((lag for lag in lags if lag is not None), default=None)
        rows.append(
            {
                "target": "delivers 100.0% of the burst in every repeat, last record "
                f"≤ {LAST_RECORD_LIMIT_S} s after the loop",
                "handler": name,
                "measured": f"worst {worst:.1f}%, {slowest:.2f} s ({sum(full)}/{len(runs)} full)"
                if slowest is not None
                else f"worst {worst:.1f}%",
                "limit": f"100.0%, {LAST_RECORD_LIMIT_S} s",
                "passed": bool(runs) and all(full) and all(in_time),
            }
        )
    for name, res in ours.items():
        limit = PROCESS_CPU_LIMITS.get(name)
        ratios = res.get("process_cpu_by_null_floor", [])
        ratio = res.get("ratio_to_null_floor", {}).get("process_cpu_us")
        rows.append(
            {
                "target": "process CPU per delivered record ÷ NullHandler floor",
                "handler": name,
                "measured": f"{ratio:.2f}×{_range(ratios)}" if ratio is not None else "—",
                "limit": f"≤ {limit:.1f}×" if limit else "—",
                "passed": None if ratio is None or limit is None else ratio <= limit,
            }
        )
    for name, res in ours.items():
        ratio = res.get("ratio_to_queue_floor", {}).get("cpu_us")
        ratios = res.get("by_queue_floor", {}).get("cpu_us", [])
        rows.append(
            {
                "target": "caller CPU per record ÷ QueueHandler floor",
                "handler": name,
                "measured": f"{ratio:.2f}×{_range(ratios)}" if ratio is not None else "—",
                "limit": f"≤ {CALLER_CPU_LIMIT:.1f}×",
                "passed": None if ratio is None else ratio <= CALLER_CPU_LIMIT,
            }
        )
    peer_walls = {n: r["median"].get("wall_us") for n, r in peers.items()}
    peer_walls = {n: w for n, w in peer_walls.items() if w is not None}
    fastest = min(peer_walls, key=peer_walls.get) if peer_walls else None
    for name, res in ours.items():
        wall = res["median"].get("wall_us")
        if fastest is None or wall is None:
            measured, passed = "no peer ran", None
        else:
            measured = f"{wall:.2f} µs vs {peer_walls[fastest]:.2f} µs ({fastest})"
            passed = wall < peer_walls[fastest]
        rows.append(
            {
                "target": "caller wall per record below every peer's",
                "handler": name,
                "measured": measured,
                "limit": "< fastest peer",
                "passed": passed,
            }
        )
    sizes = report.get("sizes", {})
    for name, mem in report.get("memory", {}).items():
        if "growth_last_quarter_mb" not in mem:
            rows.append(
                {
                    "target": "memory flat with the endpoint down",
                    "handler": name,
                    "measured": f"error: {mem.get('error', '?')[:60]}",
                    "limit": f"≤ {FLAT_MB:.0f} MB",
                    "passed": False,
                }
            )
            continue
        growth = mem["growth_last_quarter_mb"]
        ends = {c["fraction"]: c["queued"] + c["in_flight"] for c in mem["checkpoints"]}
        added = max(0, ends.get(1.0, 0) - ends.get(0.75, 0))
        # records that joined the batch in flight meanwhile are the bound's, not a leak
        allowance = FLAT_MB + 2 * added * (sizes.get("in_flight_bytes_per_record") or 0) / 2**20
        rows.append(
            {
                "target": "memory flat with the endpoint down (RSS growth over the last "
                "quarter of the loop)",
                "handler": name,
                "measured": f"{growth:+.1f} MB, {added:,} more records held "
                f"(peak {mem['peak_growth_mb']:+.1f} MB over the pre-loop RSS)",
                "limit": f"≤ {allowance:.1f} MB",
                "passed": growth <= allowance,
            }
        )
        bound = buffer_bound_bytes(mem, sizes)
        if bound is not None:
            rows.append(
                {
                    "target": "buffer bound in bytes (max_queue_size snapshots + one batch in "
                    "flight, for the benchmark's record)",
                    "handler": name,
                    "measured": f"{mem['max_queue_size']:,} × {sizes['snapshot_bytes']:.0f} B "
                    f"+ {mem['batch_size']:,} × {sizes['in_flight_bytes_per_record']:.0f} B "
                    f"= {bound / 2**20:.1f} MiB",
                    "limit": "documented",
                    "passed": None,
                }
            )
    return rows


def buffer_bound_bytes(mem: dict, sizes: dict) -> float | None:
    snapshot, in_flight = sizes.get("snapshot_bytes"), sizes.get("in_flight_bytes_per_record")
    if not snapshot or not in_flight or "max_queue_size" not in mem:
        return None
    return mem["max_queue_size"] * snapshot + mem["batch_size"] * in_flight


def render_targets(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    failed = sum(1 for r in rows if r["passed"] is False)
    passed = sum(1 for r in rows if r["passed"] is True)
    lines = [
        f"**Targets (issue 14)**: {passed} pass, {failed} fail "
        "(ratios are medians of per-repeat ratios, range over the repeats in brackets)",
        "",
        "| target | handler | measured | limit | result |",
        "| --- | --- | ---: | ---: | :---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['handler']} | {r['measured']} | {r['limit']} | "
            f"{_verdict(r['passed'])} |"
        )
    return lines
