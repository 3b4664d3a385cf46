"""Issue 15: messages a person reads say what happened to the records and what to do."""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import sys

from loghandlers import JSONHandler
from tests.children import ROOT, child_env
from tests.helpers import attach, messages
from tests.loopback import LoopbackServer, free_port


def test_an_unreachable_endpoint_says_where_records_went_and_how_to_replay_them(tmp_path, capsys):
    port = free_port()
    spool_root = tmp_path / "spool"
    handler = JSONHandler(
        url=f"http://127.0.0.1:{port}/in", spool_dir=str(spool_root), retries=0, timeout=5
    )
    try:
        log, _ = attach(handler)
        for i in range(10):
            log.warning("r%d", i)
        assert handler.flush(timeout=10)
        assert handler.stats()["spooled"] == 10
    finally:
        handler.close(timeout=2)
    err = capsys.readouterr().err
    assert f"10 records kept on disk in {handler.spool_dir}" in err
    command = re.search(r"or now with: (python -m loghandlers replay .*)$", err, re.M).group(1)
    with LoopbackServer(port=port) as server:
        argv = shlex.split(command)
        done = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert server.wait_for_events(10)
        assert messages(server.events) == [f"r{i}" for i in range(10)]


def test_replay_list_names_each_spools_endpoint_without_credentials(tmp_path):
    """issue 15: identity.json names the endpoint (no user-info, no query), the service and
    the identity options, so `replay --list` can tell the user whose batches wait where."""
    port = free_port()
    spool_root = tmp_path / "spool"
    secret = "pa55-w0rd-S3cret"
    handler = JSONHandler(
        url=f"http://user:{secret}@127.0.0.1:{port}/in?key={secret}",
        spool_dir=str(spool_root),
        retries=0,
        timeout=5,
    )
    try:
        log, _ = attach(handler)
        log.warning("kept")
        assert handler.flush(timeout=10)
    finally:
        handler.close(timeout=2)
    identity = (pathlib.Path(handler.spool_dir) / "identity.json").read_text()
    assert secret not in identity
    assert json.loads(identity) == {
        "service": "json",
        "endpoint": f"http://127.0.0.1:{port}/in",
        "identity": {},
    }
    done = subprocess.run(
        [sys.executable, "-m", "loghandlers", "replay", "--spool-dir", str(spool_root), "--list"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["SPOOL", "SERVICE", "BATCHES", "OLDEST", "ENDPOINT"]
    assert row.split()[1:3] == ["json", "1"] and row.endswith(f"http://127.0.0.1:{port}/in")
    assert secret not in done.stdout + done.stderr
