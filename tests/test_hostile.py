"""Hostile-user replays of issue 9's promises with variations the item tests did not try.

Each test names the promise it guards; every wait is bounded; loopback servers only.
"""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys

import pytest

from loghandlers import JSONHandler, OTLPHandler, SamsaraHandler

ROOT = pathlib.Path(__file__).resolve().parent.parent
LEDGER = ("sent", "rejected", "failed", "spooled", "dropped", "queued", "in_flight")


def balances(stats: dict) -> bool:
    return stats["emitted"] == sum(stats[part] for part in LEDGER)


class PoisonedClass:
    """Like Django's SimpleLazyObject off the request thread: type checks raise."""

    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("lazy object not set up")

    def __repr__(self):
        raise RuntimeError("no repr either")


@pytest.mark.parametrize("cls", [JSONHandler, SamsaraHandler, OTLPHandler])
@pytest.mark.parametrize("with_formatter", [False, True])
def test_a_poisoned_object_logged_as_the_message_is_shipped_not_lost(
    server, make_handler, logger, capfd, cls, with_formatter
):
    """issue 9 item 1 (variation: the poisoned object is the message itself,
    ``log.info(lazy)``): emit never raises nor prints a traceback, and the record is
    delivered with a placeholder text, its neighbours too; the ledger counts all three."""
    handler = make_handler(cls, url=server.url, flush_interval=3600)
    if with_formatter:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.info("before")
    logger.info(PoisonedClass())
    logger.info("after")
    assert handler.flush(timeout=15)
    stats = handler.stats()
    assert stats["emitted"] == 3 and stats["sent"] == 3 and balances(stats), stats
    assert "Traceback" not in capfd.readouterr().err


def _run(code: str, timeout: float = 90) -> subprocess.CompletedProcess:
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


def test_a_child_forked_without_hooks_that_never_logs_exits_at_once(server, tmp_path):
    """issue 10 / issue 9 (close bounded, nothing counted wrongly): a child forked behind
    Python's back (uWSGI, a C extension) that never logs must not treat its copy of the
    parent's buffer as its own at exit: no wait for a worker that does not exist in it,
    no report of the parent's records as failed, and the parent delivers them once."""
    code = (
        "import ctypes, logging, os, sys, time\n"
        "from loghandlers import JSONHandler\n"
        f"h = JSONHandler(url={server.url!r}, spool_dir={str(tmp_path)!r},\n"
        "                flush_interval=3600, close_timeout=20)\n"
        "log = logging.getLogger('x'); log.addHandler(h); log.propagate = False\n"
        "for i in range(5):\n"
        "    log.warning('parent %d', i)\n"
        "pid = ctypes.PyDLL(None).fork()\n"
        "if pid == 0:\n"
        "    started = time.monotonic()\n"
        "    import loghandlers.lifecycle\n"
        "    loghandlers.lifecycle.close_all()  # what the child's exit does\n"
        "    sys.stdout.write(f'child drained in {time.monotonic() - started:.1f}\\n')\n"
        "    sys.stdout.flush()\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "h.close(timeout=10)\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert "counted as failed" not in done.stderr, done.stderr
    seconds = float(done.stdout.split("child drained in ")[1].split()[0])
    assert seconds < 10, f"the child waited {seconds} s for its parent's worker (close_timeout=20)"
    assert sorted(e["message"] for e in server.events) == [f"parent {i}" for i in range(5)]
