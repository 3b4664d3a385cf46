"""What every client of ``loghandlers.clients`` shares with the handlers (issue 11): the
common options and environment variables, and the pipeline's retries, spool, replay and
exit drain, checked by breaking the endpoint mid-run. Also the helpers the per-SDK test
modules use to run an SDK README's example in a subprocess against the collector."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap

import pytest

from loghandlers.collector import Collector
from tests.loopback import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PANOPLY_KEY = "acct1/RAND1xyz"
PANOPLY_SECRET = base64.b64encode(b"RAND2abc/6f1c2e9a-0000/123456789012/us-east-1").decode()
#: fast, bounded pipeline options for tests
FAST = {"flush_interval": 0.05, "retries": 1, "backoff": 0.01, "timeout": 5, "close_timeout": 3}


def run_script(code: str, env: dict | None = None, cwd: str | None = None) -> str:
    """Run ``code`` in a fresh interpreter (so exit drains and imports are real); its
    stdout. Fails the test, with stderr, if it exits non-zero."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def with_import(example: str, official: str, ours: str) -> str:
    """The README example with only its import line changed."""
    assert official in example, official
    return example.replace(official, ours)


# ------------------------------------------------------------------ the four clients


def make_client(service: str, url: str, spool_dir: str, **options):
    """A client of ``service`` pointed at ``url``, with a private spool."""
    options = {"spool_dir": spool_dir, **FAST, **options}
    if service == "samsara":
        from loghandlers.clients.samsara import SamsaraClient

        return SamsaraClient(url=url, sourceId="src", **options)
    if service == "initialstate":
        from loghandlers.clients.initialstate import Streamer

        return Streamer(bucket_name="B", bucket_key="bk", access_key="ist_k", url=url, **options)
    if service == "panoply":
        from loghandlers.clients.panoply import SDK

        return SDK(PANOPLY_KEY, PANOPLY_SECRET, url=url + "/123456789012/q", **options)
    from loghandlers.clients.kronos import KronosClient

    return KronosClient(url, blocking=False, namespace="ns", **options)


def buffer_events(service: str, client, first: int, count: int) -> None:
    """Buffer events numbered ``first`` .. ``first + count - 1`` (field ``n``)."""
    for n in range(first, first + count):
        if service == "samsara":
            client.record_event(eventName="tick", n=n)
        elif service == "initialstate":
            client.log("n", n)
        elif service == "panoply":
            client.write("ticks", {"n": n})
        else:
            client.put({"ticks": [{"n": n}]})


def stored_numbers(collector, service: str) -> list:
    events = [row["event"] for row in collector.events(service=service)]
    if service == "initialstate":
        return sorted(e["value"] for e in events)
    return sorted(e["n"] for e in events)


SERVICES = ("samsara", "initialstate", "panoply", "kronos")


@pytest.mark.parametrize("service", SERVICES)
def test_break_the_endpoint_mid_run_retried_spooled_replayed_once(service, tmp_path):
    """issue 11: buffered client events are retried and spooled like handler records; a
    later client of the same target replays them; nothing arrives twice."""
    port = free_port()
    spool = str(tmp_path / "spool")
    db = str(tmp_path / "events.db")
    url = f"http://127.0.0.1:{port}"
    with Collector(port=port, db=db):
        client = make_client(service, url, spool)
        buffer_events(service, client, 0, 5)
        assert client.flush(timeout=10)
    # the endpoint goes away mid-run: later events are retried, then spooled
    client_stats_before = client.stats()
    buffer_events(service, client, 5, 5)
    client.close()
    stats = client.stats()
    assert stats["sent"] == client_stats_before["sent"] == 5
    assert stats["spooled"] == 5 and stats["retried"] >= 5, stats
    # the endpoint is back: a new client of the same target replays the spool, once
    with Collector(port=port, db=db) as collector:
        again = make_client(service, url, spool)
        buffer_events(service, again, 10, 1)
        assert again.flush(timeout=10)
        again.close()
        assert stored_numbers(collector, service) == list(range(11))
        assert again.stats()["replayed"] == 5


@pytest.mark.parametrize("service", SERVICES)
def test_buffered_events_are_delivered_at_interpreter_exit(service, tmp_path):
    """issue 11: what a client buffered is delivered at exit, without close()."""
    with Collector(port=0, db=":memory:") as collector:
        run_script(
            f"""
            from tests.test_clients_shared import buffer_events, make_client
            client = make_client({service!r}, {collector.url!r}, {str(tmp_path)!r},
                                 flush_interval=3600)
            buffer_events({service!r}, client, 0, 3)
            """
        )
        assert stored_numbers(collector, service) == [0, 1, 2]


ENV_URL = {
    "samsara": "LOGHANDLERS_SAMSARA_URL",
    "initialstate": "LOGHANDLERS_INITIALSTATE_URL",
    "panoply": "LOGHANDLERS_PANOPLY_URL",
    "kronos": "LOGHANDLERS_KRONOS_URL",
}


def test_clients_read_their_services_environment_variables(tmp_path):
    """issue 11: LOGHANDLERS_<SERVICE>_* configure the clients as they do the handlers."""
    with Collector(port=0, db=":memory:") as collector:
        env = {name: collector.url for name in ENV_URL.values()}
        env["LOGHANDLERS_PANOPLY_URL"] = collector.url + "/123456789012/q"
        env["LOGHANDLERS_SPOOL_DIR"] = str(tmp_path)
        env["LOGHANDLERS_INITIALSTATE_ACCESS_KEY"] = "ist_from_env"
        env["LOGHANDLERS_PANOPLY_API_KEY"] = PANOPLY_KEY
        env["LOGHANDLERS_PANOPLY_API_SECRET"] = PANOPLY_SECRET
        env["LOGHANDLERS_KRONOS_NAMESPACE"] = "from_env"
        run_script(
            """
            from loghandlers.clients.samsara import SamsaraClient
            from loghandlers.clients.initialstate import Streamer
            from loghandlers.clients.panoply import SDK
            from loghandlers.clients.kronos import KronosClient

            SamsaraClient().record_event(eventName="e", n=0)
            Streamer(bucket_key="bk").log("n", 0)
            SDK().write("t", {"n": 0})
            kc = KronosClient()
            assert kc.namespace == "from_env", kc.namespace
            kc.put({"s": [{"n": 0}]})
            """,
            env=env,
        )
        for service in SERVICES:
            assert stored_numbers(collector, service) == [0], service
        assert collector.events(service="kronos")[0]["namespace"] == "from_env"


def test_an_unknown_option_is_a_type_error():
    """issue 11: our options are checked as strictly as the handlers check them."""
    from loghandlers.clients.samsara import SamsaraClient

    with pytest.raises(TypeError, match="flush_intervall"):
        SamsaraClient(url="http://127.0.0.1:9", flush_intervall=1)


@pytest.mark.parametrize("service", SERVICES)
def test_a_client_keeps_working_in_a_forked_child(service, tmp_path):
    """issue 11: fork handling is the handlers': a forked child (multiprocessing, which
    leaves through os._exit) buffers through the parent's client and drains at its exit."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with Collector(port=0, db=":memory:") as collector:
        client = make_client(service, collector.url, str(tmp_path))
        try:
            buffer_events(service, client, 0, 1)
            assert client.flush(timeout=10)
            child = context.Process(target=buffer_events, args=(service, client, 1, 2))
            child.start()
            child.join(60)
            assert child.exitcode == 0
            buffer_events(service, client, 3, 1)
            assert client.flush(timeout=10)
        finally:
            client.close()
        assert stored_numbers(collector, service) == [0, 1, 2, 3]
