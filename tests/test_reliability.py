"""The promises under faults, load and process death, with exact accounting.

Every scenario checks the ledger: each emitted record is delivered, or spooled (and later
replayed), or counted as dropped, rejected or failed; the server's own record of what it
accepted must agree, with duplicates only where at-least-once allows them (and counted).
Waits are measured at the server. The figures in the README's Reliability table come from these
tests: run them with RELIABILITY_TABLE=<file> to have each scenario append its row.
"""

from __future__ import annotations

import email.utils
import json
import logging
import multiprocessing
import os
import pathlib
import signal
import socket
import threading
import time
import tracemalloc
from collections import Counter

import pytest

from loghandlers import JSONHandler
from tests import children
from tests.children import first_line, run_child, start_child
from tests.helpers import messages
from tests.loopback import (
    LoopbackServer,
    free_port,
    garbage,
    hang,
    ok,
    reset,
    reset_reply,
    status,
)

HOST = socket.gethostname()
ROOT = pathlib.Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- helpers
def by_source(events) -> dict:
    out: dict = {}
    for event in events:
        out.setdefault(event["sourceId"], []).append(event["message"])
    return out


def settled(stats: dict) -> int:
    """Records whose fate is decided, as the README's ledger has it: ``emitted == sent +
    rejected + failed + spooled + dropped + queued + in_flight`` (replays count apart)."""
    return stats["sent"] + stats["rejected"] + stats["failed"] + stats["spooled"] + stats["dropped"]


def assert_ledger(stats: dict) -> None:
    assert stats["queued"] == 0 and stats["in_flight"] == 0, stats
    assert settled(stats) == stats["emitted"], repr(stats)


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def table_row(scenario, emitted, delivered, spooled, dropped, lost) -> None:
    """Append one row of the README table (only when RELIABILITY_TABLE names a file)."""
    path = os.environ.get("RELIABILITY_TABLE")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            row = [scenario, emitted, delivered, spooled, dropped, lost]
            out.write(" | ".join(str(cell) for cell in row) + "\n")


def private_logger(name: str, handler) -> logging.Logger:
    log = logging.getLogger(f"reliability.{name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.handlers.clear()
    log.addHandler(handler)
    return log


def spooled_messages(spool_dir) -> list:
    """Every event message in a spool tree's batch files, oldest batch first."""
    found = []
    for path in pathlib.Path(spool_dir).rglob("*.json"):
        if path.name == "identity.json" or path.name.startswith("."):
            continue
        found.append(path)
    out = []
    for path in sorted(found, key=lambda p: p.name):
        _, _, body = path.read_text("utf-8").partition("\n")
        out += messages(json.loads(body))
    return out


# ----------------------------------------------------------------------------- outages
def test_endpoint_down_then_back_everything_arrives_in_order_per_source(tmp_path):
    """Two sources log continuously; the endpoint refuses connections, then a server comes
    up on the same port while they keep logging. Nothing is lost or repeated, and each
    source's records arrive in the order they were logged, without touching the hold."""
    port = free_port()
    names = ("web-1", "web-2")
    handlers, logs = {}, {}
    for name in names:
        handlers[name] = JSONHandler(
            url=f"http://127.0.0.1:{port}/{name}",
            source_id=name,
            spool_dir=str(tmp_path / "spool"),
            retries=1,
            backoff=0.05,
            max_backoff=0.5,
            flush_interval=0.02,
            batch_size=25,
            timeout=5,
        )
        logs[name] = private_logger(f"down.{name}", handlers[name])

    def produce(name, start, stop):
        for i in range(start, stop):
            logs[name].info("%s %d", name, i)
            if i % 10 == 9:
                time.sleep(0.002)

    def phase(start, stop):
        threads = [threading.Thread(target=produce, args=(n, start, stop)) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()

    try:
        phase(0, 150)  # endpoint down: connection refused
        for name in names:
            assert handlers[name].flush(timeout=30)
            stats = handlers[name].stats()
            assert (stats["sent"], stats["spooled"], stats["failed"]) == (0, 150, 0), stats
        with LoopbackServer(port=port) as server:
            phase(150, 300)  # back up while the sources keep logging
            assert server.wait_for_events(600, timeout=30)
            for name in names:
                assert handlers[name].flush(timeout=30)
                assert wait_until(lambda h=handlers[name]: h.stats()["spool"]["files"] == 0)
                assert wait_until(
                    lambda h=handlers[name]: h.stats()["replayed"] == h.stats()["spooled"]
                )
            time.sleep(0.2)  # anything extra (a duplicate) would arrive now
            assert server.event_count == 600
            assert by_source(server.events) == {
                name: [f"{name} {i}" for i in range(300)] for name in names
            }
        for name in names:
            stats = handlers[name].stats()
            assert_ledger(stats)
            assert stats["sent"] + stats["replayed"] == 300
            assert stats["dropped"] == stats["failed"] == 0
            assert stats["replayed"] == stats["spooled"] >= 150
            assert stats["spool"]["files"] == 0
        table_row(
            "endpoint refused, then back (2 sources)",
            600,
            600,
            sum(h.stats()["spooled"] for h in handlers.values()),
            0,
            0,
        )
    finally:
        for handler in handlers.values():
            handler.close(timeout=2)


def test_senders_sharing_a_spool_keep_each_sources_order(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/shared"
    options = dict(url=url, spool_dir=str(tmp_path), retries=2, backoff=0.01, flush_interval=3600)
    a = JSONHandler(source_id="a", **options)
    b = JSONHandler(source_id="b", **options)
    log_a, log_b = private_logger("share.a", a), private_logger("share.b", b)
    try:
        log_b.info("b old")
        assert b.flush(timeout=10)
        log_a.info("a old")
        assert a.flush(timeout=10)
        assert a.stats()["spooled"] == b.stats()["spooled"] == 1
        with LoopbackServer(port=port) as server:
            server.push(hang(2))  # a's replay of the oldest file (b's) is slow
            a.resume()
            b.resume()
            log_a.info("a new")
            flusher = threading.Thread(target=a.flush, kwargs={"timeout": 20})
            flusher.start()
            assert server.wait_for_requests(1)
            log_b.info("b new")  # meanwhile b has something new to say
            assert b.flush(timeout=10)
            flusher.join(30)
            assert server.wait_for_events(4)
            assert by_source(server.events) == {"a": ["a old", "a new"], "b": ["b old", "b new"]}
    finally:
        a.close(timeout=2)
        b.close(timeout=2)


# ----------------------------------------------------------------------------- Retry-After
def test_a_429_503_storm_is_waited_out_as_the_server_asks(server, make_handler, logger):
    waits = ["0.3", "0.6", "0.3", "0.6"]
    server.push(
        *(status(429 if n % 2 == 0 else 503, {"Retry-After": w}) for n, w in enumerate(waits))
    )
    handler = make_handler(
        url=server.url, retries=5, backoff=0.01, max_backoff=5, flush_interval=3600, batch_size=10
    )
    logger.addHandler(handler)
    for i in range(30):
        logger.info("r%d", i)
    assert handler.flush(timeout=30)
    times = [r.arrived for r in server.requests]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert len(server.requests) == len(waits) + 3  # the storm, then three clean batches
    for gap, wait in zip(gaps, waits):
        assert gap >= float(wait) - 0.01, (gaps, waits)
    assert messages(server.events) == [f"r{i}" for i in range(30)]
    stats = handler.stats()
    assert_ledger(stats)
    assert (stats["sent"], stats["retried"], stats["spooled"]) == (30, 40, 0)
    assert stats["errors"] == {}  # never gave up, so nothing to report
    table_row("429/503 storm with Retry-After", 30, 30, 0, 0, 0)


def test_retry_after_as_an_http_date_is_honoured(server, make_handler, logger):
    when = int(time.time()) + 2
    server.push(status(503, {"Retry-After": email.utils.formatdate(when, usegmt=True)}))
    handler = make_handler(url=server.url, retries=2, backoff=0.01, max_backoff=5)
    logger.addHandler(handler)
    logger.info("dated")
    assert handler.flush(timeout=20)
    first, second = server.requests
    assert second.wall >= when - 0.01  # not before the moment the server named
    assert messages(server.events) == ["dated"]


def test_retry_after_beyond_max_backoff_spools_and_holds_until_then(tmp_path, logger):
    with LoopbackServer() as server:
        server.push(status(503, {"Retry-After": "2"}))
        handler = JSONHandler(
            url=server.url,
            spool_dir=str(tmp_path),
            retries=3,
            backoff=0.01,
            max_backoff=0.5,
            flush_interval=0.05,
        )
        logger.addHandler(handler)
        try:
            logger.info("first")
            assert handler.flush(timeout=10)
            stats = handler.stats()
            assert (stats["spooled"], stats["retried"], stats["sent"]) == (1, 0, 0)
            for i in range(5):
                logger.info("held %d", i)
            assert handler.flush(timeout=10)
            assert len(server.requests) == 1  # held: straight to the spool, no new attempt
            assert handler.stats()["spooled"] == 6
            assert server.wait_for_events(6, timeout=20)
            assert wait_until(lambda: handler.stats()["replayed"] == 6)
            gap = server.requests[1].arrived - server.requests[0].arrived
            assert gap >= 2 - 0.01
            assert messages(server.events) == ["first"] + [f"held {i}" for i in range(5)]
            stats = handler.stats()
            assert_ledger(stats)
            assert (stats["replayed"], stats["sent"]) == (6, 0)
        finally:
            handler.close()


# ----------------------------------------------------------------------------- broken answers
def test_garbage_answers_and_resets_mid_body_are_retried_until_delivered(
    server, make_handler, logger
):
    server.push(
        garbage(),  # not HTTP at all
        reset(),  # reset while the request body is still arriving
        reset_reply(503),  # a 503 whose body is cut by a reset
        garbage(b"HTTP/1.1 2"),  # a truncated status line
        garbage(b""),  # closed without a word
    )
    handler = make_handler(url=server.url, retries=6, backoff=0.01, flush_interval=3600)
    logger.addHandler(handler)
    for i in range(25):
        logger.info("g%d", i)
    assert handler.flush(timeout=30)
    outcomes = [r.outcome for r in server.requests]
    assert outcomes == ["garbage", "reset", "reset_reply", "garbage", "garbage", "accepted"]
    assert messages(server.events) == [f"g{i}" for i in range(25)]
    logger.info("after")  # the connection pool is not poisoned
    assert handler.flush(timeout=10)
    assert messages(server.events)[-1] == "after" and server.event_count == 26
    stats = handler.stats()
    assert_ledger(stats)
    assert (stats["sent"], stats["retried"], stats["spooled"]) == (26, 5 * 25, 0)
    table_row("garbage answers and resets, then OK", 26, 26, 0, 0, 0)


def test_a_reset_after_a_2xx_status_line_counts_as_delivered(server, make_handler, logger):
    """The status line is the verdict: a body cut short after a 200 is not resent."""
    server.push(reset_reply(200))
    handler = make_handler(url=server.url, retries=3, backoff=0.01)
    logger.addHandler(handler)
    logger.info("once")
    assert handler.flush(timeout=10)
    logger.info("twice")
    assert handler.flush(timeout=10)
    assert messages(server.events) == ["once", "twice"]
    stats = handler.stats()
    assert (stats["sent"], stats["retried"]) == (2, 0)


# ----------------------------------------------------------------------------- process death
@pytest.mark.parametrize("mode", ["always", "fallback"])
def test_sigkill_keeps_on_disk_what_reached_a_batch_only_with_spool_mode_always(tmp_path, mode):
    """1000 records in batches of 100: three are delivered, the fourth hangs in flight, the
    rest wait in memory when the process is SIGKILLed. A new process replays the disk."""
    spool_dir = str(tmp_path / "spool")
    port = free_port()
    with LoopbackServer(default=hang(30), port=port) as server:
        server.push(ok(), ok(), ok())
        options = dict(
            url=server.url,
            spool_dir=spool_dir,
            spool_mode=mode,
            batch_size=100,
            flush_interval=3600,
            timeout=60,
            retries=0,
        )
        child = start_child("stream_then_wait", {"options": options, "count": 1000})
        try:
            assert first_line(child)["logged"] == 1000
            assert server.wait_for_requests(4, timeout=30)
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            child.kill()
            child.wait()
        assert messages(server.events) == [f"k{i}" for i in range(300)]
        in_flight = messages(server.requests[3].json())
        assert in_flight == [f"k{i}" for i in range(300, 400)]
    on_disk = spooled_messages(spool_dir)
    assert on_disk == (in_flight if mode == "always" else [])
    with LoopbackServer(port=port) as healthy:
        replayed = run_child(
            "replay", {"options": {"url": healthy.url, "spool_dir": spool_dir, "timeout": 5}}
        )
        assert messages(healthy.events) == on_disk
        assert replayed["replayed"] == len(on_disk) and replayed["spool"]["files"] == 0
    delivered = 300 + len(on_disk)
    table_row(
        f'SIGKILL mid-stream, endpoint hanging, spool_mode="{mode}"',
        1000,
        delivered,
        len(on_disk),
        0,
        f"{1000 - delivered} (in memory)",
    )


def test_sigkill_of_a_streaming_process_with_spool_mode_always_leaves_no_gap(tmp_path):
    """Killed at an arbitrary moment against a healthy endpoint: what arrived plus what the
    next process replays is a gap-free prefix of what was logged; the only duplicates
    possible are one batch that was delivered but not yet removed from disk."""
    spool_dir = str(tmp_path / "spool")
    port = free_port()
    batch = 50
    options = dict(
        spool_dir=spool_dir,
        spool_mode="always",
        batch_size=batch,
        flush_interval=0.02,
        max_queue_size=1_000_000,  # no overflow here: this is about the spool
    )
    with LoopbackServer(port=port) as server:
        child = start_child(
            "stream_forever", {"options": {**options, "url": server.url}, "limit": 500_000}
        )
        try:
            first_line(child)
            assert server.wait_for_events(2000, timeout=60)
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            child.kill()
            child.wait()
        first = [int(m[1:]) for m in messages(server.events)]
    with LoopbackServer(port=port) as healthy:
        run_child("replay", {"options": {**options, "url": healthy.url, "timeout": 10}})
        second = [int(m[1:]) for m in messages(healthy.events)]
    counts = Counter(first + second)
    assert set(counts) == set(range(max(counts) + 1)), "a record that reached a batch is gone"
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    assert all(counts[n] == 2 for n in duplicates)
    assert len(duplicates) <= batch
    # No duplicates is the common case: check that first, then that they are one run.
    assert not duplicates or duplicates == list(
        range(duplicates[0], duplicates[0] + len(duplicates))
    )


@pytest.mark.alone  # bounds close()'s wall-clock duration
@pytest.mark.parametrize(
    "count",
    [
        200,
        500,
    ],
)
def test_sigterm_against_a_hanging_endpoint_spools_by_the_deadline_and_replays(tmp_path, count):
    """Batch 1 is delivered, batch 2 hangs, the rest is buffered: SIGTERM must return within
    close_timeout, spool everything not delivered, and still die of SIGTERM."""
    spool_dir = str(tmp_path / "spool")
    port = free_port()
    with LoopbackServer(default=hang(30), port=port) as server:
        server.push(ok())
        options = dict(
            url=server.url,
            spool_dir=spool_dir,
            batch_size=100,
            flush_interval=3600,
            timeout=30,
            close_timeout=1,
        )
        child = start_child("stream_then_wait", {"options": options, "count": count})
        try:
            assert first_line(child)["logged"] == count
            assert server.wait_for_requests(2, timeout=30)
            started = time.monotonic()
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=30) == -signal.SIGTERM
            took = time.monotonic() - started
        finally:
            child.kill()
            child.wait()
        assert took < 1 + 4  # close_timeout plus generous slack for a loaded machine
        assert messages(server.events) == [f"k{i}" for i in range(100)]
    on_disk = spooled_messages(spool_dir)
    assert on_disk == [f"k{i}" for i in range(100, count)]
    with LoopbackServer(port=port) as healthy:
        replayed = run_child(
            "replay", {"options": {"url": healthy.url, "spool_dir": spool_dir, "timeout": 10}}
        )
        assert messages(healthy.events) == on_disk
    assert replayed["replayed"] == count - 100
    table_row(
        f"SIGTERM mid-stream, endpoint hanging ({count} records)",
        count,
        count,
        count - 100,
        0,
        0,
    )


# ----------------------------------------------------------------------------- load
THREADS, PER_THREAD = 8, 50_000


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def test_eight_threads_no_deadlock_exact_accounting_bounded_memory(tmp_path):
    last = dict.fromkeys(range(THREADS), -1)
    disorder = []

    def check(events):  # on the server's thread: each thread's records in order, once
        for event in events:
            thread, number = (int(x) for x in event["message"][1:].split(" "))
            if number <= last[thread]:
                disorder.append((thread, last[thread], number))
            last[thread] = number

    total = THREADS * PER_THREAD
    with LoopbackServer(keep=False, on_events=check) as server:
        handler = JSONHandler(url=server.url, spool_dir=str(tmp_path), flush_interval=0.05)
        log = private_logger("load", handler)
        samples = []
        stop_sampling = threading.Event()

        def sample():  # resident memory against progress, every 10 ms
            while not stop_sampling.wait(0.01):
                samples.append((handler.stats()["emitted"], rss_bytes()))

        def produce(thread):
            for number in range(PER_THREAD):
                log.info("t%d %d", thread, number)

        sampler = threading.Thread(target=sample)
        threads = [threading.Thread(target=produce, args=(t,)) for t in range(THREADS)]
        sampler.start()
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
            assert not any(thread.is_alive() for thread in threads), "deadlock"
            assert handler.flush(timeout=120)
        finally:
            stop_sampling.set()
            sampler.join(10)
        stats = handler.stats()
        handler.close()
    assert stats["emitted"] == total
    assert_ledger(stats)
    assert stats["sent"] == server.event_count
    assert stats["sent"] + stats["dropped"] == total
    assert stats["spooled"] == stats["failed"] == stats["rejected"] == 0
    assert not disorder[:5]  # per thread: in order, nothing twice
    if samples and samples[0][1] is not None:
        # resident memory stops growing once the buffer is full: the second half of the
        # records adds nothing like a per-record cost (80k records x 200 B = 16 MB)
        first = [rss for emitted, rss in samples if emitted <= total // 2]
        second = [rss for emitted, rss in samples if emitted > total // 2]
        assert first and second
        assert max(second) - max(first) < 12 * 2**20, (max(first), max(second))
    table_row(
        f"{THREADS} threads x {PER_THREAD} records, as fast as they can",
        total,
        stats["sent"],
        0,
        stats["dropped"],
        0,
    )


@pytest.mark.parametrize("endpoint", ["hanging", "refusing"])
def test_overflow_drops_the_oldest_counts_them_and_memory_stays_flat(endpoint, logger):
    size = 1000
    server = None
    if endpoint == "hanging":
        server = LoopbackServer(default=hang(20)).start()
        url = server.url
    else:
        url = f"http://127.0.0.1:{free_port()}"
    handler = JSONHandler(
        url=url,
        spool_dir="",
        max_queue_size=size,
        batch_size=100,
        retries=0,
        timeout=30,
        flush_interval=0.05,
    )
    logger.addHandler(handler)
    try:
        if server is not None:
            logger.info("first")  # its batch hangs: nothing leaves the buffer from now on
            assert server.wait_for_requests(1)
        for i in range(2 * size):  # fill the buffer
            logger.info("fill %d %s", i, "x" * 100)
        tracemalloc.start()
        try:
            growth = []
            for count in (2_000, 20_000):
                tracemalloc.reset_peak()
                start = tracemalloc.get_traced_memory()[0]
                for i in range(count):
                    logger.info("over %d %s", i, "x" * 100)
                growth.append(tracemalloc.get_traced_memory()[1] - start)
        finally:
            tracemalloc.stop()
        small, large = growth
        # ten times the records past a full buffer: the peak does not grow with them
        assert large < small + 512 * 1024, growth
        assert large < 4 * 2**20, growth
        emitted = 2 * size + 22_000 + (1 if server else 0)
        stats = handler.stats()
        assert stats["emitted"] == emitted
        if server is not None:
            assert stats["queued"] == size and stats["in_flight"] == 1
            assert stats["dropped"] == emitted - size - 1
            server.stop()  # the hanging request is reset; the rest is refused
            server = None
        assert handler.flush(timeout=60)
        stats = handler.stats()
        assert_ledger(stats)
        assert stats["sent"] == stats["spooled"] == 0
        if endpoint == "hanging":
            assert stats["dropped"] == emitted - size - 1
            assert stats["failed"] == size + 1  # no spool: undeliverable, counted
        else:
            assert stats["dropped"] + stats["failed"] == emitted
    finally:
        handler.close(timeout=0.5)
        if server is not None:
            server.stop()
    table_row(
        f"overflow, endpoint {endpoint}, no spool, max_queue_size={size}",
        emitted,
        0,
        0,
        stats["dropped"],
        f"{stats['failed']} (failed, counted)",
    )


# ----------------------------------------------------------------------------- processes
def test_spawned_children_configure_their_own_handler_and_ship_their_own(server, tmp_path):
    handler = JSONHandler(url=server.url, spool_dir=str(tmp_path), flush_interval=3600)
    log = private_logger("spawn.parent", handler)
    spawned = logging.getLogger("spawned")  # the children's logger name, here too
    spawned.addHandler(handler)
    try:
        for i in range(5):
            log.info("parent before %d", i)
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=children.spawn_child,
                args=(server.url, str(tmp_path), f"child{k}", 40),
            )
            for k in range(3)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
        assert [proc.exitcode for proc in procs] == [0, 0, 0]
        log.info("parent after")
        assert handler.flush(timeout=10)
        assert server.wait_for_events(5 + 1 + 3 * 40)
        expected = {f"{HOST}:{os.getpid()}": [f"parent before {i}" for i in range(5)]}
        expected[f"{HOST}:{os.getpid()}"].append("parent after")
        for k, proc in enumerate(procs):
            expected[f"{HOST}:{proc.pid}"] = [f"child{k} {i}" for i in range(40)]
        assert by_source(server.events) == expected
        assert_ledger(handler.stats())
    finally:
        spawned.removeHandler(handler)
        handler.close()
    table_row("multiprocessing spawn: parent + 3 children", 126, 126, 0, 0, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_prefork_workers_ship_their_own_records_under_their_own_source_id(server, tmp_path):
    """A gunicorn-style master builds the handler, logs (some still buffered), and forks
    while another thread keeps logging; workers log and leave through close()+os._exit or
    sys.exit (atexit); the master logs on and exits normally."""
    exits = ["close+_exit", "sys.exit", "close+_exit", "sys.exit"]
    args = {
        "options": {"url": server.url, "spool_dir": str(tmp_path), "flush_interval": 3600},
        "before": 5,
        "chatter": 400,
        "per_worker": 40,
        "exits": exits,
    }
    out = run_child("prefork", args)
    assert out["codes"] == [0] * len(exits), out
    assert out["chatter_done"]
    total = 5 + 400 + 1 + 40 * len(exits)
    assert server.wait_for_events(total, timeout=10)
    time.sleep(0.2)
    assert server.event_count == total  # nothing twice
    got = by_source(server.events)
    master = got.pop(f"{HOST}:{out['master']}")
    assert Counter(master) == Counter(
        [f"master before fork {i}" for i in range(5)]
        + [f"master chatter {i}" for i in range(400)]
        + ["master after fork"]
    )
    assert got == {
        f"{HOST}:{pid}": [f"worker {n} record {i}" for i in range(40)]
        for n, pid in enumerate(out["workers"])
    }
    table_row(f"pre-fork master + {len(exits)} workers", total, total, 0, 0, 0)
