"""Process life: fork, multiprocessing, atexit, and our own HTTP stack's log records."""

import logging
import multiprocessing
import os
import socket

import pytest

from tests.children import first_line, run_child, start_child

HOST = socket.gethostname()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_ships_its_own_records_under_its_own_source_id(server, make_handler, logger):
    handler = make_handler(url=server.url, flush_interval=3600, batch_size=1000)
    logger.addHandler(handler)
    logger.info("parent before fork")  # still buffered at fork time
    pid = os.fork()
    if pid == 0:  # child: log, drain, leave without running the parent's test machinery
        code = 1
        try:
            logger.info("child record")
            code = 0 if handler.flush(timeout=10) else 2
            handler.close()
        finally:
            os._exit(code)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    handler.flush(timeout=10)
    by_source = {}
    for event in server.events:
        by_source.setdefault(event["sourceId"], []).append(event["message"])
    assert by_source == {
        f"{HOST}:{pid}": ["child record"],
        f"{HOST}:{os.getpid()}": ["parent before fork"],
    }


def _child_logs(name):
    logging.getLogger(name).info("from child %d", os.getpid())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_multiprocessing_fork_children_ship_on_exit(server, make_handler):
    """multiprocessing's children leave through os._exit: atexit never runs there."""
    ctx = multiprocessing.get_context("fork")
    log = logging.getLogger("mp")
    log.propagate = False
    handler = make_handler(url=server.url, flush_interval=3600, batch_size=1000)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        procs = [ctx.Process(target=_child_logs, args=("mp",)) for _ in range(3)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        assert server.wait_for_events(3)
        sources = sorted(e["sourceId"] for e in server.events)
        assert sources == sorted(f"{HOST}:{p.pid}" for p in procs)
        assert all(
            e["message"] == f"from child {e['sourceId'].split(':')[1]}" for e in server.events
        )
    finally:
        log.removeHandler(handler)


def test_atexit_drains_what_the_program_never_flushed(server, tmp_path):
    options = {"url": server.url, "flush_interval": 3600, "spool_dir": str(tmp_path)}
    run_child("log_and_exit", {"options": options, "count": 50, "format": "exit %d"})
    assert server.wait_for_events(50, timeout=5)
    assert [e["message"] for e in server.events] == [f"exit {i}" for i in range(50)]


def test_urllib3_debug_logs_from_our_worker_are_not_shipped(server, make_handler):
    root = logging.getLogger()
    old_level = root.level
    handler = make_handler(url=server.url, flush_interval=0.05)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger("app").info("only me")
        assert handler.flush(timeout=10)
        logging.getLogger("app").info("and me")
        assert handler.flush(timeout=10)
        assert not server.wait_for_requests(3, timeout=0.5)  # no feedback loop
        assert [e["message"] for e in server.events] == ["only me", "and me"]
        assert handler.stats()["suppressed"] > 0  # urllib3 did log, on the worker thread
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_two_handlers_do_not_ship_each_others_http_logs(make_handler):
    from tests.loopback import LoopbackServer

    with LoopbackServer() as one, LoopbackServer() as two:
        root = logging.getLogger()
        old_level = root.level
        first = make_handler(url=one.url)
        second = make_handler(url=two.url)
        root.addHandler(first)
        root.addHandler(second)
        root.setLevel(logging.DEBUG)
        try:
            logging.getLogger("app").info("hello")
            assert first.flush(timeout=10) and second.flush(timeout=10)
            assert not one.wait_for_requests(2, timeout=0.5)
            assert [e["message"] for e in one.events] == ["hello"]
            assert [e["message"] for e in two.events] == ["hello"]
        finally:
            root.removeHandler(first)
            root.removeHandler(second)
            root.setLevel(old_level)


def test_sigterm_mid_stream_drains_before_dying(server, tmp_path):
    options = {"url": server.url, "flush_interval": 3600, "spool_dir": str(tmp_path)}
    proc = start_child(
        "stream_then_wait", {"options": options, "count": 500, "format": "term %d", "sleep": 30}
    )
    try:
        assert first_line(proc)["logged"] == 500
        proc.terminate()
        assert proc.wait(timeout=30) == -15  # still dies of SIGTERM, as without us
    finally:
        proc.kill()
        proc.wait()
    assert server.wait_for_events(500, timeout=5)
    assert [e["message"] for e in server.events] == [f"term {i}" for i in range(500)]


def test_sigterm_during_the_exit_drain_waits_for_it(tmp_path):
    """``with Pool()`` sends SIGTERM to children that are already draining at exit."""
    from tests.loopback import LoopbackServer, slow

    with LoopbackServer(default=slow(0.25, b"ok")) as server:  # 0.5 s per request
        options = {
            "url": server.url,
            "batch_size": 1,
            "flush_interval": 3600,
            "close_timeout": 10,
            "spool_dir": str(tmp_path),
        }
        proc = start_child("log_and_exit", {"options": options, "count": 6, "format": "d%d"})
        try:
            assert first_line(proc)["logged"] == 6  # and now it exits
            assert server.wait_for_requests(2, timeout=10)  # the exit drain is under way
            proc.terminate()
            assert proc.wait(timeout=30) == -15
        finally:
            proc.kill()
        assert server.wait_for_events(6, timeout=5)
        assert [e["message"] for e in server.events] == [f"d{i}" for i in range(6)]


@pytest.mark.alone  # bounds close()'s wall-clock duration
def test_logging_shutdown_keeps_to_close_timeout_against_a_hanging_endpoint(tmp_path):
    """Python < 3.12's logging.shutdown() flushes before it closes: both stay bounded."""
    from tests.loopback import LoopbackServer, hang

    with LoopbackServer(default=hang(20)) as server:
        options = {"url": server.url, "close_timeout": 1, "timeout": 30, "spool_dir": str(tmp_path)}
        done = run_child("log_then_shutdown", {"options": options, "count": 10}, timeout=60)
    took, spooled = done["took"], done["spooled"]
    assert float(took) < 5  # close_timeout is 1 s; 30 s timeouts and 4 retries must not show
    assert spooled == 10
