"""python -m loghandlers: send, check and replay against real loopback servers."""

import logging
import os
import subprocess
import sys

from loghandlers import JSONHandler
from loghandlers.__main__ import main
from tests.loopback import LoopbackServer, free_port


def run_cli(*args, env=None, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "loghandlers", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def test_send_one_event_with_extras(server, tmp_path):
    done = run_cli(
        "send",
        "--handler",
        "json",
        "--url",
        server.url,
        "deploy done",
        "--extra",
        "version=42",
        "--extra",
        "who=ann",
        env={"LOGHANDLERS_SPOOL_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert server.events[0]["message"] == "deploy done"
    assert server.events[0]["version"] == 42 and server.events[0]["who"] == "ann"


def test_send_reports_failure_with_a_nonzero_exit(tmp_path):
    done = run_cli(
        "send",
        "--handler",
        "json",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "lost?",
        "--timeout",
        "1",
        "--option",
        "retries=0",
        env={"LOGHANDLERS_SPOOL_DIR": str(tmp_path)},
    )
    assert done.returncode == 1
    assert "spooled" in done.stderr


def test_check_masks_secrets_and_tests_reachability(server):
    secret = "ist_SUPERSECRET_KEY"
    done = run_cli(
        "check",
        env={
            "LOGHANDLERS_JSON_URL": server.url,
            "LOGHANDLERS_INITIALSTATE_ACCESS_KEY": secret,
            "LOGHANDLERS_INITIALSTATE_BUCKET_KEY": "b1",
            "LOGHANDLERS_INITIALSTATE_URL": f"http://127.0.0.1:{free_port()}",
        },
    )
    assert secret not in done.stdout + done.stderr
    assert "****" in done.stdout
    assert f"{server.url}: reachable" in done.stdout
    assert "unreachable" in done.stdout
    assert done.returncode == 1


def test_replay_sends_a_spool_left_by_an_earlier_process(tmp_path, capsys, monkeypatch):
    port = free_port()
    url = f"http://127.0.0.1:{port}/in"
    spool_dir = str(tmp_path / "spool")
    handler = JSONHandler(url=url, spool_dir=spool_dir, retries=0, flush_interval=3600)
    log = logging.getLogger("replay.cli")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    for i in range(3):
        log.info("spooled %d", i)
    handler.close()
    log.removeHandler(handler)
    assert handler.stats()["spooled"] == 3
    monkeypatch.setenv("LOGHANDLERS_JSON_URL", url)
    with LoopbackServer(port=port) as srv:
        assert main(["replay", "--spool-dir", spool_dir, "--timeout", "20"]) == 0
        assert [e["message"] for e in srv.events] == ["spooled 0", "spooled 1", "spooled 2"]
    assert "replayed 3 events; 0 batches left" in capsys.readouterr().out
