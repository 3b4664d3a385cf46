"""Process life across every way Python starts processes (issue 10; issue 9 item 14).

Each test runs tests/process_scenarios.py in a subprocess against a collector in this
process, then checks that every record logged (by the parent and by each child) arrived
exactly once, under the source id ``"<hostname>:<pid>"`` of the process that logged it.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from loghandlers.collector import Collector
from tests.where_table import record

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "process_scenarios.py"
HOST = socket.gethostname()
METHODS = multiprocessing.get_all_start_methods()


def run_scenario(tmp_path, *args):
    """Run one scenario; return (its JSON summary, the events that arrived, stderr)."""
    with Collector(port=0, db=":memory:") as collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
        env["LOGHANDLERS_JSON_URL"] = f"{collector.url}/json"
        env["LOGHANDLERS_SPOOL_DIR"] = str(tmp_path / "spool")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, str(SCENARIOS), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        # Every process has exited, so everything was sent; allow the collector a moment
        # to store the last request (bounded).
        deadline = time.monotonic() + 10
        while True:
            events = [row["event"] for row in collector.events(service="json")]
            if len(events) >= summary["logged"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return summary, events, done.stderr


def check_each_record_once_under_its_own_pid(summary, events):
    assert len(events) == summary["logged"], (len(events), summary)
    assert all(event["sourceId"] == f"{HOST}:{event['pid']}" for event in events)
    by_pid = collections.Counter(event["pid"] for event in events)
    assert by_pid[summary["parent"]] == 1  # the parent's own record, once, not copied
    children = set(by_pid) - {summary["parent"]}
    assert children == set(summary["children"]), (by_pid, summary)
    keys = collections.Counter((e["pid"], e["message"]) for e in events)
    assert max(keys.values()) == 1, "a record arrived twice"
    return by_pid


def report(request, summary, events):
    sources = len({e["sourceId"] for e in events})
    record(request.node.name, summary["logged"], len(events), sources)


@pytest.mark.parametrize("method", METHODS)
def test_process_children_deliver_everything(tmp_path, method, request):
    """issue 10: forkserver children lost their records (2 of 242 arrived) on 3.9-3.12;
    fork, spawn and forkserver ``Process`` children each deliver all of theirs."""
    summary, events, _ = run_scenario(tmp_path, "process", method)
    assert summary["exitcodes"] == [0, 0, 0]
    by_pid = check_each_record_once_under_its_own_pid(summary, events)
    assert sorted(by_pid[pid] for pid in summary["children"]) == [80, 80, 80]
    report(request, summary, events)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scenario", ["pool", "pool-closed", "executor"])
def test_pools_deliver_everything(tmp_path, scenario, method, request):
    """issue 10: ``Pool`` (left by ``with``, which terminates its workers, or closed and
    joined) and ``ProcessPoolExecutor``, under each start method, deliver every task's
    record under the pid of the worker that ran it."""
    summary, events, _ = run_scenario(tmp_path, scenario, method)
    check_each_record_once_under_its_own_pid(summary, events)
    report(request, summary, events)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("how", ["return", "exit"])
def test_child_forked_off_a_thread_delivers_and_exits(tmp_path, how, request):
    """issue 9 item 14: a child forked from a non-main thread never exited once it had
    logged (our worker thread kept it alive). It must deliver its record and end with 0."""
    summary, events, _ = run_scenario(tmp_path, "thread-fork", how)
    assert not summary["hung"], "the child forked off a thread never exited"
    assert summary["exitcodes"] == [0]
    check_each_record_once_under_its_own_pid(summary, events)
    report(request, summary, events)
