"""The pipeline's promises at their edges (issue 9; issue 10's dictConfig and fork parts).

Delivered, spooled or counted; never twice outside SIGKILL; ``close()`` bounded by
``close_timeout``. Each test names the issue item it guards. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import pathlib
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from loghandlers import JSONHandler
from tests.loopback import LoopbackServer, delayed, hang, ok

ROOT = pathlib.Path(__file__).resolve().parent.parent
LEDGER = ("sent", "rejected", "failed", "spooled", "dropped", "queued", "in_flight")


def balances(stats: dict) -> bool:
    return stats["emitted"] == sum(stats[part] for part in LEDGER)


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def spooled_messages(root) -> list:
    out = []
    for path in sorted(pathlib.Path(root).rglob("*.json"), key=lambda p: p.name):
        if path.name == "identity.json" or path.name.startswith("."):
            continue
        _, _, body = path.read_text("utf-8").partition("\n")
        out += [event["message"] for event in json.loads(body)]
    return out


def run_script(code: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class PoisonedClass:
    """Like Django's SimpleLazyObject off the request thread: type checks raise."""

    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("lazy object not set up")

    def __repr__(self):
        raise RuntimeError("no repr either")


# ----------------------------------------------------------------------------- item 1
def test_a_poisoned_extra_costs_at_most_its_own_record(server, make_handler, logger):
    """issue 9 item 1: a value whose __class__ raises is isolated to its record."""
    handler = make_handler(url=server.url, flush_interval=3600)
    logger.addHandler(handler)
    for i in range(100):
        extra = {"lazy": PoisonedClass()} if i == 50 else {"n": i}
        logger.info("r%d", i, extra=extra)
    assert handler.flush(timeout=15)
    assert sorted(int(e["message"][1:]) for e in server.events) == list(range(100))
    poisoned = [e for e in server.events if e["message"] == "r50"][0]
    assert "unrepresentable" in str(poisoned["lazy"])
    stats = handler.stats()
    assert stats["sent"] == 100 and balances(stats), stats
    assert stats["placeholders"] >= 1


def test_a_poisoned_extra_never_raises_out_of_close(tmp_path, logger):
    """issue 9 item 1: with a hanging endpoint, close() neither raises nor loses the batch."""
    with LoopbackServer(default=hang(5)) as server:
        handler = JSONHandler(
            url=server.url, spool_dir=str(tmp_path), flush_interval=3600, retries=0
        )
        logger.addHandler(handler)
        logger.info("poisoned", extra={"lazy": PoisonedClass()})
        logger.info("plain")
        handler.close(timeout=0.5)
    stats = handler.stats()
    assert stats["spooled"] == 2 and balances(stats), stats
    assert sorted(spooled_messages(tmp_path)) == ["plain", "poisoned"]


# ----------------------------------------------------------------------------- item 2
@pytest.mark.parametrize("mode", ["fallback", "always"])
def test_a_split_batch_cut_by_close_keeps_each_part_once(tmp_path, logger, mode):
    """issue 9 item 2: part 1 delivered, part 2 hanging at the close deadline: every
    record is delivered or spooled, none both, and the ledger sums to emitted."""
    with LoopbackServer(default=hang(10)) as server:
        server.push(ok())
        handler = JSONHandler(
            url=server.url,
            spool_dir=str(tmp_path),
            spool_mode=mode,
            max_batch_bytes=4096,
            flush_interval=3600,
            retries=0,
        )
        logger.addHandler(handler)
        for i in range(40):
            logger.info("%d %s", i, "x" * 400)
        handler.close(timeout=1.5)
        delivered = [e["message"].split()[0] for e in server.events]
    kept = [m.split()[0] for m in spooled_messages(tmp_path)]
    assert delivered, "the first part should have been delivered"
    assert sorted(delivered + kept, key=int) == [str(i) for i in range(40)]
    stats = handler.stats()
    assert stats["sent"] == len(delivered) and stats["spooled"] == len(kept), stats
    assert balances(stats), stats


# ----------------------------------------------------------------------------- item 3
def test_always_mode_with_a_shared_spool_sends_each_batch_once(tmp_path):
    """issue 9 item 3: another sender of the same spool never replays a batch in flight."""
    with LoopbackServer() as server:
        server.push(delayed(1.5))
        options = dict(
            url=server.url, spool_dir=str(tmp_path), spool_mode="always", flush_interval=0.05
        )
        first = JSONHandler(**options)
        log = logging.getLogger("promises.shared")
        log.propagate = False
        log.handlers[:] = [first]
        log.warning("only once")
        assert server.wait_for_requests(1)
        second = JSONHandler(**options)  # starts up and looks at the spool
        time.sleep(0.5)
        first.close(timeout=5)
        second.close(timeout=5)
        time.sleep(0.2)
        assert [e["message"] for e in server.events] == ["only once"]
        log.handlers.clear()


# ----------------------------------------------------------------------------- items 4, 5
def _config(url: str, spool: str, disable: bool) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": disable,
        "handlers": {
            "ship": {
                "class": "loghandlers.JSONHandler",
                "url": url,
                "flush_interval": "0.05",
                "close_timeout": "6",
                "spool_dir": spool,
            }
        },
        "loggers": {"promises.reload": {"handlers": ["ship"], "level": "INFO"}},
    }


@pytest.mark.parametrize("disable", [False, True])
def test_a_reload_is_prompt_and_delivers_the_batch_in_flight_once(tmp_path, disable):
    """issue 9 item 4: dictConfig closes the old handler while its batch is on the wire
    and the worker will need logging's lock: the reload returns well under
    close_timeout and the batch arrives exactly once."""
    with LoopbackServer() as server:
        server.push(delayed(1.0))
        config = _config(server.url, str(tmp_path), disable)
        logging.config.dictConfig(config)
        log = logging.getLogger("promises.reload")
        log.info("in flight")
        assert server.wait_for_requests(1)
        logging.getLogger("promises.other").setLevel(logging.INFO)  # loggers' caches cleared
        started = time.monotonic()
        logging.config.dictConfig(config)
        took = time.monotonic() - started
        log.info("after")
        current = log.handlers[0]
        assert current.flush(timeout=15)
        assert wait_until(lambda: len(server.events) >= 2, 15)
        time.sleep(0.3)
        current.close()
        log.handlers.clear()
        assert took < 3.0, f"reload took {took:.2f}s with close_timeout=6"
        assert sorted(e["message"] for e in server.events) == ["after", "in flight"]


def test_records_logged_to_a_closed_handler_reach_its_replacement(server, tmp_path):
    """issue 9 item 5: a reload under traffic neither loses nor duplicates a record."""
    config = _config(server.url, str(tmp_path), False)
    logging.config.dictConfig(config)
    log = logging.getLogger("promises.reload")
    old = log.handlers[0]
    stop = threading.Event()
    sent = []

    def traffic():
        i = 0
        while not stop.is_set() and i < 20000:
            log.info("t%d", i)
            sent.append(i)
            i += 1
            if i % 50 == 0:
                time.sleep(0.001)

    producer = threading.Thread(target=traffic)
    producer.start()
    try:
        for _ in range(3):
            time.sleep(0.1)
            logging.config.dictConfig(config)
    finally:
        stop.set()
        producer.join(30)
    # and, deterministically, records handed to the closed handler itself
    for i in range(10):
        old.handle(log.makeRecord(log.name, logging.INFO, __file__, 1, "late%d", (i,), None))
    current = log.handlers[0]
    assert current is not old
    assert current.flush(timeout=20)
    expected = [f"t{i}" for i in sent] + [f"late{i}" for i in range(10)]
    assert wait_until(lambda: len(server.events) >= len(expected), 20)
    time.sleep(0.3)
    current.close()
    log.handlers.clear()
    got = [e["message"] for e in server.events]
    assert len(got) == len(set(got)), "a record was delivered twice"
    assert sorted(got) == sorted(expected)


# ----------------------------------------------------------------------------- item 6
class BlockingFormatter(logging.Formatter):
    def __init__(self, entered: threading.Event, release: threading.Event):
        super().__init__()
        self.entered, self.release = entered, release

    def format(self, record):
        self.entered.set()
        self.release.wait(30)
        return super().format(record)


def test_close_is_bounded_while_user_code_blocks_conversion(server, make_handler, logger):
    """issue 9 item 6: a formatter that blocks costs its records, never close()'s bound,
    and never the caller's emit."""
    entered, release = threading.Event(), threading.Event()
    handler = make_handler(url=server.url, flush_interval=0.05)
    handler.setFormatter(BlockingFormatter(entered, release))
    logger.addHandler(handler)
    try:
        logger.info("blocked")
        assert entered.wait(10)
        emitting = threading.Thread(target=lambda: [logger.info("more") for _ in range(5)])
        emitting.start()
        emitting.join(5)
        assert not emitting.is_alive(), "emit waited for user code in conversion"
        closing = threading.Thread(target=handler.close, kwargs={"timeout": 1.0})
        started = time.monotonic()
        closing.start()
        closing.join(10)
        took = time.monotonic() - started
        assert not closing.is_alive(), "close() hung on user code"
        assert took < 5
        assert balances(handler.stats()), handler.stats()
    finally:
        release.set()


def test_sigterm_during_a_blocked_close_still_ends_the_process(server, tmp_path):
    """issue 9 item 6: a SIGTERM arriving while close() waits on blocked user code ends
    the process, within close_timeout and a small constant."""
    code = (
        "import logging, sys, time\n"
        "from loghandlers import JSONHandler\n"
        "class Block(logging.Formatter):\n"
        "    def format(self, record):\n"
        "        time.sleep(60)\n"
        "        return 'never'\n"
        f"h = JSONHandler(url={server.url!r}, spool_dir={str(tmp_path)!r},"
        " close_timeout=2, flush_interval=0.05)\n"
        "h.setFormatter(Block())\n"
        "log = logging.getLogger('x'); log.addHandler(h); log.warning('stuck')\n"
        "time.sleep(0.3)\n"
        "print('closing', flush=True)\n"
        "h.close()\n"
        "time.sleep(60)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "closing"
        time.sleep(0.3)
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == -signal.SIGTERM
        assert time.monotonic() - started < 15
    finally:
        child.kill()
        child.wait()


# ----------------------------------------------------------------------------- items 8, 9
def test_an_unusable_spool_dir_is_reported_once_and_the_handler_still_works(
    tmp_path, capfd, logger
):
    """issue 9 item 8: a file where the spool directory should be: no construction error,
    one report naming spool_dir, delivery goes on, undeliverable records are counted."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with LoopbackServer() as server:
        handler = JSONHandler(url=server.url, spool_dir=str(blocker / "spool"), flush_interval=0.05)
        logger.addHandler(handler)
        logger.info("delivered anyway")
        assert handler.flush(timeout=10)
        assert [e["message"] for e in server.events] == ["delivered anyway"]
        server.default = hang(5)
        for i in range(3):
            logger.info("lost %d", i)
            handler.flush(timeout=10)
        handler.close(timeout=1)
    stats = handler.stats()
    assert stats["failed"] == 3 and balances(stats), stats
    reports = [line for line in capfd.readouterr().err.splitlines() if "spool_dir=" in line]
    assert len(reports) == 1 and ": spool_dir: " in reports[0], reports


def _service_dirs(root: pathlib.Path) -> list:
    return [p for p in root.rglob("*") if p.is_dir()]


def test_spool_directories_are_private_whatever_the_umask(tmp_path, logger):
    """issue 9 item 9: every directory we create is 0700, even under umask 000."""
    root = tmp_path / "a" / "b" / "spool"
    old = os.umask(0)
    try:
        with LoopbackServer(default=hang(5)) as server:
            handler = JSONHandler(url=server.url, spool_dir=str(root), retries=0)
            logger.addHandler(handler)
            logger.info("kept")
            handler.close(timeout=0.5)
    finally:
        os.umask(old)
    assert spooled_messages(root) == ["kept"]
    for directory in [tmp_path / "a", tmp_path / "a" / "b", *_service_dirs(tmp_path / "a")]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_a_spool_dir_reached_through_a_planted_symlink_is_refused(tmp_path, logger, capfd):
    """issue 9 item 9: a symlink we did not make is not followed (nor chmod-ed through)."""
    target = tmp_path / "theirs"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    link = tmp_path / "spool"
    link.symlink_to(target)
    with LoopbackServer(default=hang(5)) as server:
        handler = JSONHandler(url=server.url, spool_dir=str(link), retries=0)
        logger.addHandler(handler)
        logger.info("not theirs")
        handler.close(timeout=0.5)
    assert list(target.iterdir()) == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert handler.stats()["failed"] == 1
    assert "spool_dir" in capfd.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_spool_dir_owned_by_someone_else_is_refused(tmp_path, logger, capfd):
    """issue 9 item 9: a directory another user created is not used."""
    theirs = tmp_path / "spool"
    theirs.mkdir(mode=0o777)
    os.chmod(theirs, 0o777)
    os.chown(theirs, 65534, 65534)
    with LoopbackServer(default=hang(5)) as server:
        handler = JSONHandler(url=server.url, spool_dir=str(theirs), retries=0)
        logger.addHandler(handler)
        logger.info("not in theirs")
        handler.close(timeout=0.5)
    assert list(theirs.rglob("*")) == []
    assert handler.stats()["failed"] == 1
    assert "spool_dir" in capfd.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another user's symlink")
def test_a_spool_root_reached_through_another_users_symlink_is_refused(tmp_path, logger):
    """issue 9 item 9: a symlink on the way to the spool root that another user made (and
    could repoint) is not followed."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "shared"
    link.symlink_to(target)
    os.lchown(link, 65534, 65534)
    with LoopbackServer(default=hang(5)) as server:
        handler = JSONHandler(url=server.url, spool_dir=str(link / "spool"), retries=0)
        logger.addHandler(handler)
        logger.info("not through theirs")
        handler.close(timeout=0.5)
    assert list(target.iterdir()) == []
    assert handler.stats()["failed"] == 1


# ----------------------------------------------------------------------------- item 12
def test_flush_registered_with_atexit_is_bounded_and_quiet(tmp_path):
    """issue 9 item 12: atexit.register(handler.flush) neither crashes nor waits past
    close_timeout against a hanging endpoint."""
    with LoopbackServer(default=hang(60)) as server:
        code = (
            "import atexit, logging\n"
            "from loghandlers import JSONHandler\n"
            f"h = JSONHandler(url={server.url!r}, spool_dir={str(tmp_path)!r},"
            " close_timeout=1, timeout=30, flush_interval=0.05)\n"
            "atexit.register(h.flush)\n"
            "log = logging.getLogger('x'); log.addHandler(h); log.warning('bye')\n"
            "import time; time.sleep(0.3)\n"
        )
        started = time.monotonic()
        done = run_script(code)
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert took < 15, took


def test_a_subclass_overriding_flush_keeps_the_shutdown_bound(tmp_path):
    """issue 9 item 12: logging.shutdown() through a subclass's flush stays bounded."""
    with LoopbackServer(default=hang(60)) as server:
        code = (
            "import logging, time\n"
            "from loghandlers import JSONHandler\n"
            "class Mine(JSONHandler):\n"
            "    def flush(self, timeout=None):\n"
            "        return super().flush(timeout)\n"
            f"h = Mine(url={server.url!r}, spool_dir={str(tmp_path)!r},"
            " close_timeout=1, timeout=30, retries=2, flush_interval=0.05)\n"
            "log = logging.getLogger('x'); log.addHandler(h); log.warning('bye')\n"
            "time.sleep(0.3)\n"
            "logging.shutdown()\n"
        )
        started = time.monotonic()
        done = run_script(code)
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 15, took
    assert spooled_messages(tmp_path) == ["bye"]


# ----------------------------------------------------------------------------- item 13
def test_the_ledger_balances_after_a_timed_out_close(tmp_path, logger):
    """issue 9 item 13: a batch cut off by close() is spooled or in flight, not both."""
    with LoopbackServer(default=hang(5)) as server:
        handler = JSONHandler(url=server.url, spool_dir=str(tmp_path), retries=0, timeout=30)
        logger.addHandler(handler)
        for i in range(10):
            logger.info("r%d", i)
        assert server.wait_for_requests(1)
        handler.close(timeout=0.5)
        stats = handler.stats()
    assert balances(stats), stats
    assert stats["in_flight"] == 0 and stats["spooled"] == 10, stats


def test_the_ledger_balances_at_every_observation_mid_traffic(tmp_path, logger):
    """issue 9 item 13: with spool_mode="always", every stats() mid-traffic sums up."""
    with LoopbackServer() as server:
        handler = JSONHandler(
            url=server.url,
            spool_dir=str(tmp_path),
            spool_mode="always",
            flush_interval=0.005,
            batch_size=7,
        )
        logger.addHandler(handler)
        stop = threading.Event()
        bad = []

        def observe():
            while not stop.is_set():
                stats = handler.stats()
                if not balances(stats):
                    bad.append(stats)

        watcher = threading.Thread(target=observe)
        watcher.start()
        try:
            for i in range(3000):
                logger.info("r%d", i)
                if i % 100 == 0:
                    time.sleep(0.005)
            assert handler.flush(timeout=30)
        finally:
            stop.set()
            watcher.join(10)
            handler.close()
    assert not bad, bad[:3]
    assert handler.stats()["sent"] == 3000


# ----------------------------------------------------------------------------- item 15
def test_the_stdlib_queue_handler_face_accepts_a_log_record(server, make_handler, logger):
    """issue 9 item 15: enqueue() given a LogRecord ships it, and flush() still works."""
    handler = make_handler(url=server.url)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "raw %s", ("rec",), None)
    handler.queue_handler.enqueue(record)
    assert handler.flush(timeout=10)
    logger.addHandler(handler)
    logger.info("after")
    assert handler.flush(timeout=10)
    assert [e["message"] for e in server.events] == ["raw rec", "after"]
    assert handler.listener is not None


# ----------------------------------------------------------------------------- issue 10
def test_handlers_are_not_queue_handler_subclasses_for_dictconfig():
    """issue 10: Python 3.12.0-3.12.3's dictConfig special-cases QueueHandler subclasses
    ("No handlers specified for a QueueHandler"); ours compose one instead."""
    assert not issubclass(JSONHandler, logging.handlers.QueueHandler)
    assert isinstance(
        JSONHandler(url="http://127.0.0.1:9", spool_dir="").queue_handler,
        logging.handlers.QueueHandler,
    )


@pytest.mark.skipif(sys.version_info < (3, 12), reason="QueueHandler 'handlers' is 3.12+")
def test_the_stdlib_queue_handler_idiom_feeds_our_handler(server, tmp_path):
    """issue 10: a logging.handlers.QueueHandler whose handlers name one of ours."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "ship": {"class": "loghandlers.JSONHandler", "url": server.url, "spool_dir": ""},
                "queued": {"class": "logging.handlers.QueueHandler", "handlers": ["ship"]},
            },
            "loggers": {"promises.idiom": {"handlers": ["queued"], "level": "INFO"}},
        }
    )
    log = logging.getLogger("promises.idiom")
    queued = log.handlers[0]
    queued.listener.start()  # as the logging cookbook does: dictConfig leaves that to us
    try:
        log.info("via the stdlib queue")
        assert server.wait_for_events(1)
        assert server.events[0]["message"] == "via the stdlib queue"
    finally:
        queued.listener.stop()
        for handler in queued.listener.handlers:
            handler.close()
        log.handlers.clear()


def test_a_fork_without_python_hooks_is_detected_on_the_next_emit(server, tmp_path):
    """issue 10: a child forked behind Python's back (as uWSGI does) gets its own buffer,
    worker and source id, and none of the parent's records."""
    code = (
        "import ctypes, logging, os, sys, time\n"
        "from loghandlers import JSONHandler\n"
        f"h = JSONHandler(url={server.url!r}, spool_dir='', flush_interval=3600)\n"
        "log = logging.getLogger('x'); log.addHandler(h); log.propagate = False\n"
        "log.warning('parent before fork')\n"
        "pid = ctypes.PyDLL(None).fork()\n"
        "if pid == 0:\n"
        "    log.warning('child')\n"
        "    h.close(timeout=10)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "h.close(timeout=10)\n"
    )
    done = run_script(code)
    assert done.returncode == 0, done.stderr
    got = sorted((e["message"], e["sourceId"]) for e in server.events)
    assert [m for m, _ in got] == ["child", "parent before fork"], got
    assert got[0][1] != got[1][1], "the child kept its parent's source id"
