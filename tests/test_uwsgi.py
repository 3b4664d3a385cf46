"""uWSGI: pre-fork workers (forked without Python's fork hooks), lazy apps, and a uWSGI
without Python threads (issue 10).

uWSGI is a C build, so it is not in the test extra: ``pip install uwsgi`` (CI does, for
every interpreter) puts a ``uwsgi`` binary beside this interpreter, and these tests use it.
A uWSGI that runs without Python threads needs a version before 2.0.27 (threads are always
on since); CI builds one for one interpreter and names it in
``TEST_UWSGI_WITHOUT_THREADS``. Each test is skipped, saying why, where its uWSGI is
missing.

Each test serves tests/uwsgi_app.py with a master and 2 workers, sends a first round of
requests and waits (bounded) for their records to arrive while uWSGI runs, then sends a
second round and stops uWSGI with SIGTERM at once (``--die-on-term``: without it, uWSGI 2.0
treats SIGTERM as "reload"); the second round arrives through the workers' exit drain.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from loghandlers.collector import Collector
from tests.where_table import record

ROOT = pathlib.Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "uwsgi_app.py"
HOST = socket.gethostname()
UWSGI = pathlib.Path(sys.executable).parent / "uwsgi"
WITHOUT_THREADS = os.environ.get("TEST_UWSGI_WITHOUT_THREADS", "")
ROUND = 24  # requests per round, 6 at a time
WARNING = "loghandlers: uWSGI is running without Python threads"

needs_uwsgi = pytest.mark.skipif(
    not UWSGI.exists() or not hasattr(os, "fork"),
    reason=f"needs uWSGI for this interpreter (pip install uwsgi; no {UWSGI})",
)
needs_uwsgi_without_threads = pytest.mark.skipif(
    not WITHOUT_THREADS or not os.path.exists(WITHOUT_THREADS),
    reason="needs a uWSGI before 2.0.27 (threads are always on since) built for this "
    "interpreter, named in TEST_UWSGI_WITHOUT_THREADS (CI builds one for Python 3.11)",
)
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    with _no_proxy.open(url, timeout=10) as response:
        return int(response.read())


def _round(port: int, first: int) -> collections.Counter:
    urls = [f"http://127.0.0.1:{port}/r/{first + i}" for i in range(ROUND)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        return collections.Counter(pool.map(_get, urls))


def _events(collector) -> list:
    return [row["event"] for row in collector.events(service="json")]


def serve(tmp_path, binary, *options, wait_while_running=15.0):
    """Run the scenario; return what a test needs to judge it."""
    port = _free_port()
    log_path = tmp_path / "uwsgi.log"
    with Collector(port=0, db=":memory:") as collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGHANDLERS_", "UWSGI_"))}
        env["LOGHANDLERS_JSON_URL"] = f"{collector.url}/json"
        env["LOGHANDLERS_SPOOL_DIR"] = str(tmp_path / "spool")
        command = [str(binary), "--http-socket", f"127.0.0.1:{port}", "--master"]
        command += ["--processes", "2", "--wsgi-file", str(APP), "--virtualenv", sys.prefix]
        command += ["--die-on-term", "--disable-logging", *options]
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "uWSGI never listened"
                    time.sleep(0.05)
            served = _round(port, 0)
            deadline = time.monotonic() + wait_while_running  # the flush interval is 1 s
            while time.monotonic() < deadline:
                arrived = [e for e in _events(collector) if e["path"].startswith("/r/")]
                if len(arrived) >= ROUND:
                    break
                time.sleep(0.1)
            while_running = len(arrived)
            served += _round(port, ROUND)
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        time.sleep(0.2)  # the last request's reply may still be on its way to the store
        events = _events(collector)
    return {
        "master": proc.pid,
        "returncode": returncode,
        "served": served,
        "while_running": while_running,
        "events": events,
        "output": log_path.read_text(errors="replace"),
    }


def report(request, run, note=""):
    events = run["events"]
    logged = 2 * ROUND + run["loaded_logged"]
    sources = len({e["sourceId"] for e in events})
    note = f"{run['while_running']} of the first {ROUND} arrived while running; {note}"
    record(request.node.name, logged, len(events), sources, note)


def check_requests_once_under_their_workers(run):
    events = run["events"]
    assert run["returncode"] == 0, run["output"]
    assert "Traceback" not in run["output"], run["output"]
    requests = [e for e in events if e["path"].startswith("/r/")]
    assert sorted(e["path"] for e in requests) == sorted(f"/r/{i}" for i in range(2 * ROUND))
    assert all(e["sourceId"] == f"{HOST}:{e['pid']}" for e in events)  # its own pid's id
    by_worker = collections.Counter(e["pid"] for e in requests)
    assert by_worker == run["served"]  # each under the worker that answered it
    assert run["master"] not in by_worker
    keys = collections.Counter((e["pid"], e["message"]) for e in events)
    assert max(keys.values()) == 1, "a record arrived twice"
    return [e for e in events if e["message"] == "app loaded"]


@needs_uwsgi
@pytest.mark.xfail(
    strict=False,
    reason="known defect: at uWSGI's SIGTERM shutdown a pre-forked worker sometimes exits "
    "before its drain ends; on a quiet CI machine 12 of 48 request records were lost once "
    "(3.11) and one run timed out (3.10). Passes most runs; see the README's uWSGI row.",
)
@pytest.mark.parametrize("threads", [[], ["--enable-threads"]], ids=["default", "enable-threads"])
def test_uwsgi_prefork_workers_ship_under_their_own_ids(tmp_path, threads, request):
    """issue 10: uWSGI's default pre-fork mode forks without Python's fork hooks. Before,
    0 of 100 request records arrived while it ran, the workers spooled theirs under the
    master's source id at exit, and the master's pre-fork record was copied into every
    worker (delivered 3 times)."""
    run = serve(tmp_path, UWSGI, *threads)
    loaded = check_requests_once_under_their_workers(run)
    assert run["while_running"] == ROUND  # sent while uWSGI runs, not only at exit
    assert [e["pid"] for e in loaded] == [run["master"]]  # the master's, once
    assert WARNING not in run["output"]
    run["loaded_logged"] = 1
    report(request, run)


@needs_uwsgi
def test_uwsgi_lazy_apps_workers_ship_under_their_own_ids(tmp_path, request):
    """issue 10: with --lazy-apps each worker loads the app (and builds its handler)."""
    run = serve(tmp_path, UWSGI, "--lazy-apps")
    loaded = check_requests_once_under_their_workers(run)
    assert run["while_running"] == ROUND
    assert run["master"] not in {e["pid"] for e in loaded}
    assert len(loaded) == 2  # one per worker, each under its own pid
    run["loaded_logged"] = 2
    report(request, run)


@needs_uwsgi_without_threads
@pytest.mark.parametrize("mode", [[], ["--lazy-apps"]], ids=["prefork", "lazy-apps"])
def test_uwsgi_without_threads_says_so_once_and_delivers_at_worker_exit(tmp_path, mode, request):
    """issue 10: where uWSGI runs without Python threads our worker thread only runs in
    the gaps of request handling; the handler says so once, and every request's record
    still arrives, at the latest when its worker exits. (The master never runs Python
    again after forking and runs no exit hooks: its pre-fork record arrives only if its
    thread got to send it during the app's import; never twice.)"""
    run = serve(tmp_path, WITHOUT_THREADS, *mode, wait_while_running=2)
    loaded = check_requests_once_under_their_workers(run)
    assert run["output"].count(WARNING) == 1, run["output"]
    if mode:
        assert len(loaded) == 2
    else:
        assert [e["pid"] for e in loaded] in ([], [run["master"]])
    run["loaded_logged"] = 2 if mode else 1
    report(request, run, "warned once")


@needs_uwsgi
def test_uwsgi_worker_that_never_logged_exits_at_once(tmp_path):
    """issue 10: a pre-forked worker that never logged holds a copy of the master's handler
    (buffer, and a worker thread that does not exist there). At exit it used to wait out
    close_timeout for that thread and count the master's record as failed in its name."""
    port = _free_port()
    with Collector(port=0, db=":memory:") as collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGHANDLERS_", "UWSGI_"))}
        env["LOGHANDLERS_JSON_URL"] = f"{collector.url}/json"
        env["LOGHANDLERS_SPOOL_DIR"] = str(tmp_path / "spool")
        env["LOGHANDLERS_CLOSE_TIMEOUT"] = "30"
        command = [str(UWSGI), "--http-socket", f"127.0.0.1:{port}", "--master"]
        command += ["--processes", "2", "--wsgi-file", str(APP), "--virtualenv", sys.prefix]
        command += ["--die-on-term", "--disable-logging", "--worker-reload-mercy", "60"]
        log_path = tmp_path / "uwsgi.log"
        with open(log_path, "w") as log_file:
            done = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            # both workers forked (the master's own signal handlers are in place right after)
            while "spawned uWSGI worker 2" not in log_path.read_text(errors="replace"):
                assert done.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, "uWSGI never started its workers"
                time.sleep(0.05)
            while not _events(collector) and time.monotonic() < deadline:
                time.sleep(0.05)  # the master's thread sends its "app loaded"
            time.sleep(0.5)
            started = time.monotonic()
            done.send_signal(signal.SIGTERM)
            done.wait(timeout=90)
            took = time.monotonic() - started
        finally:
            if done.poll() is None:
                done.kill()
                done.wait()
        output = log_path.read_text(errors="replace")
        events = _events(collector)
    assert done.returncode == 0, output
    assert "ran out of time" not in output and "counted as failed" not in output, output
    assert took < 30, output  # not close_timeout: 30 s (a bound on a wait, not a speed)
    assert [(e["message"], e["pid"]) for e in events] == [("app loaded", done.pid)]
    record("test_uwsgi_worker_that_never_logged_exits_at_once", 1, len(events), 1)
