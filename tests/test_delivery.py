"""Retries, Retry-After, final answers, the spool and its replay, the close deadline."""

import json
import os
import stat
import time

import pytest

from loghandlers import JSONHandler
from tests.children import run_child
from tests.helpers import messages
from tests.loopback import LoopbackServer, free_port, hang, huge, reset, slow, status


def test_5xx_and_resets_are_retried_until_delivered(server, make_handler, logger):
    server.push(status(503), reset(), status(502))
    handler = make_handler(url=server.url, retries=4, backoff=0.01)
    logger.addHandler(handler)
    logger.info("eventually")
    assert handler.flush(timeout=10)
    assert messages(server.events) == ["eventually"]
    assert len(server.requests) == 4
    stats = handler.stats()
    assert stats["retried"] == 3 and stats["sent"] == 1 and stats["spooled"] == 0


def test_retry_after_is_honoured(server, make_handler, logger):
    server.push(status(429, {"Retry-After": "1"}))
    handler = make_handler(url=server.url, retries=2, backoff=0.01)
    logger.addHandler(handler)
    logger.info("patient")
    assert handler.flush(timeout=10)
    first, second = server.requests[0].arrived, server.requests[1].arrived
    assert second - first >= 0.9  # the server asked for one second; backoff alone is 0.01
    assert messages(server.events) == ["patient"]


def test_backoff_grows_between_retries(server, make_handler, logger):
    server.push(status(500), status(500), status(500))
    handler = make_handler(url=server.url, retries=3, backoff=0.2)
    logger.addHandler(handler)
    logger.info("x")
    assert handler.flush(timeout=10)
    times = [r.arrived for r in server.requests]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # jittered exponential: each wait is in [0.5, 1] x 0.2 * 2**n
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39


def test_400_is_not_retried_and_the_next_batch_still_goes(server, make_handler, logger):
    server.push(status(400, body=b'{"error":"bad"}'))
    handler = make_handler(url=server.url, retries=5, backoff=0.01)
    logger.addHandler(handler)
    logger.info("refused")
    assert handler.flush(timeout=10)
    logger.info("accepted")
    assert handler.flush(timeout=10)
    assert len(server.requests) == 2
    assert messages(server.events) == ["accepted"]
    stats = handler.stats()
    assert stats["rejected"] == 1 and stats["retried"] == 0 and stats["errors"] == {"http_400": 1}


def test_errors_are_reported_once_on_stderr(server, make_handler, logger, capfd):
    server.default = status(400)
    handler = make_handler(url=server.url)
    logger.addHandler(handler)
    for i in range(5):
        logger.info("bad %d", i)
        handler.flush(timeout=10)
    err = capfd.readouterr().err
    assert err.count("http_400") == 1
    assert "Traceback" not in err
    assert handler.stats()["errors"]["http_400"] == 5


def test_huge_and_slow_error_bodies_do_not_hang_or_bloat(make_handler, logger):
    with LoopbackServer() as server:
        server.push(huge(), slow(0.05, b"x" * 10))
        handler = make_handler(url=server.url, retries=3, backoff=0.01, timeout=2)
        logger.addHandler(handler)
        logger.info("survives")
        assert handler.flush(timeout=20)
        assert messages(server.events) == ["survives"]


def test_outage_spools_then_replays_everything_in_order(tmp_path, logger):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool_dir = str(tmp_path / "spool")
    handler = JSONHandler(
        url=url, spool_dir=spool_dir, retries=1, backoff=0.01, flush_interval=0.05, batch_size=10
    )
    logger.addHandler(handler)
    try:
        for i in range(35):
            logger.info("o%d", i)
        assert handler.flush(timeout=10)
        stats = handler.stats()
        assert stats["spooled"] == 35 and stats["sent"] == 0
        assert handler.stats()["spool"]["files"] >= 1
        with LoopbackServer(port=port) as server:
            for i in range(35, 40):
                logger.info("o%d", i)
            handler.resume()  # skip the rest of the hold for the test's sake
            assert handler.flush(timeout=10)
            assert server.wait_for_events(40)
            assert messages(server.events) == [f"o{i}" for i in range(40)]
            stats = handler.stats()
            assert stats["replayed"] == 35 and stats["sent"] == 5
            assert stats["emitted"] == stats["sent"] + stats["spooled"]
            assert handler.stats()["spool"]["files"] == 0
    finally:
        handler.close()


def test_spool_files_are_private_and_hold_no_credentials(tmp_path, logger):
    spool_dir = tmp_path / "spool"
    handler = JSONHandler(
        url=f"http://user:hunter2secret@127.0.0.1:{free_port()}/x",
        spool_dir=str(spool_dir),
        retries=0,
        flush_interval=0.05,
    )
    logger.addHandler(handler)
    logger.info("keep me")
    handler.flush(timeout=10)
    handler.close()
    files = [os.path.join(d, f) for d, _, fs in os.walk(spool_dir) for f in fs]
    assert files
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert "hunter2secret" not in path
        with open(path) as fh:
            assert "hunter2secret" not in fh.read()
    for directory, _, _ in os.walk(spool_dir):
        if directory != str(spool_dir.parent):
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert "hunter2secret" not in repr(handler)
    assert "hunter2secret" not in json.dumps(handler.stats())


def test_a_new_handler_of_the_same_identity_replays_and_others_do_not(tmp_path, logger):
    spool_dir = str(tmp_path / "spool")
    port = free_port()
    url = f"http://127.0.0.1:{port}/in"
    first = JSONHandler(url=url, spool_dir=spool_dir, retries=0, flush_interval=0.05)
    logger.addHandler(first)
    logger.info("from the first")
    first.flush(timeout=10)
    first.close()
    logger.removeHandler(first)
    assert first.stats()["spooled"] == 1
    with LoopbackServer(port=port) as server:
        other = JSONHandler(url=url + "/elsewhere", spool_dir=spool_dir, flush_interval=0.05)
        other.flush(timeout=5)
        other.close()
        assert server.events == []
        same = JSONHandler(
            url=url, spool_dir=spool_dir, batch_size=3, compression="gzip", flush_interval=0.05
        )
        assert server.wait_for_events(1)
        same.close()
        assert messages(server.events) == ["from the first"]
        assert same.stats()["replayed"] == 1


@pytest.mark.alone  # bounds close()'s wall-clock duration
def test_close_returns_by_its_deadline_against_a_hanging_endpoint(tmp_path, logger):
    spool_dir = str(tmp_path / "spool")
    port = free_port()
    with LoopbackServer(default=hang(20), port=port) as server:
        handler = JSONHandler(
            url=server.url, spool_dir=spool_dir, close_timeout=1, timeout=30, flush_interval=0.05
        )
        logger.addHandler(handler)
        for i in range(20):
            logger.info("h%d", i)
        assert server.wait_for_requests(1)
        started = time.monotonic()
        handler.close()
        took = time.monotonic() - started
        assert took < 4  # close_timeout is 1 s; generous for a loaded machine
        stats = handler.stats()
        assert stats["spooled"] == 20 and stats["sent"] == 0
    # the next process, endpoint healthy again, replays what was left
    with LoopbackServer(port=port) as healthy:
        options = {"url": healthy.url, "spool_dir": spool_dir, "flush_interval": 0.05}
        replayed = run_child("replay", {"options": options, "timeout": 5}, timeout=60)
        assert replayed["replayed"] == 20, replayed
        assert sorted(messages(healthy.events), key=lambda m: int(m[1:])) == [
            f"h{i}" for i in range(20)
        ]


def test_spool_mode_always_writes_before_sending_and_cleans_up(
    server, make_handler, logger, tmp_path
):
    handler = make_handler(url=server.url, spool_mode="always")
    logger.addHandler(handler)
    for i in range(5):
        logger.info("a%d", i)
    assert handler.flush(timeout=10)
    assert len(server.events) == 5
    assert handler.stats()["spool"]["files"] == 0


def test_spool_size_cap_drops_oldest_batches_and_counts_them(tmp_path, logger):
    handler = JSONHandler(
        url=f"http://127.0.0.1:{free_port()}",
        spool_dir=str(tmp_path / "s"),
        spool_max_bytes=2048,
        retries=0,
        batch_size=1,
        flush_interval=0.05,
    )
    logger.addHandler(handler)
    try:
        for i in range(20):
            logger.info("%d %s", i, "y" * 300)
            handler.flush(timeout=10)
        stats = handler.stats()
        assert stats["spool"]["bytes"] <= 2048
        assert stats["spool_dropped"] > 0
        assert stats["spooled"] == 20
    finally:
        handler.close()


def test_after_a_partial_rejection_only_the_good_events_are_spooled(tmp_path, logger):
    from loghandlers import SamsaraHandler

    with LoopbackServer(default=status(500)) as server:
        server.push(
            status(400, body=json.dumps(["OK", "timestamp must be an integer", "OK"]).encode())
        )
        handler = SamsaraHandler(
            url=server.url, spool_dir=str(tmp_path), retries=0, flush_interval=3600, batch_size=3
        )
        logger.addHandler(handler)
        for word in ("good", "bad", "fine"):
            logger.info(word)
        assert handler.flush(timeout=10)
        handler.resume()
        stats = handler.stats()
        assert stats["rejected"] == 1 and stats["spooled"] == 2
        server.default = status(202)
        logger.info("later")
        assert handler.flush(timeout=10)
        handler.close()
    delivered = [e["message"] for e in server.events]
    assert delivered == ["good", "fine", "later"]
