"""``loghandlers.clients.panoply``: panoply-python-sdk's API on our pipeline (issue 11),
against the collector over real HTTP. (The SDK itself is Python 2 only.)"""

from __future__ import annotations

import threading

import pytest

import loghandlers.clients.panoply as panoply
from loghandlers.collector import Collector
from tests.loopback import LoopbackServer, status
from tests.test_clients_shared import FAST, PANOPLY_KEY, PANOPLY_SECRET, run_script, with_import

#: both READMEs' usage example (the original SDK's and the Python 3 fork's)
README = """
import panoply
conn = panoply.SDK( "APIKEY", "APISECRET" )
conn.write( "tablename", { "foo": "bar" } )
"""


@pytest.fixture
def collector():
    with Collector(port=0, db=":memory:") as running:
        yield running


def queue_url(collector) -> str:
    return collector.url + "/123456789012/sdk-acct1-RAND2abc"


def test_readme_example_with_only_the_import_changed(collector, tmp_path):
    """issue 11: the README runs with only the import changed (and its placeholder
    credentials filled in, which the SDK needs too); LOGHANDLERS_PANOPLY_URL points it at
    the collector, and the record arrives at exit, where the SDK's daemon thread would have
    lost it."""
    example = with_import(README, "import panoply", "import loghandlers.clients.panoply as panoply")
    example = example.replace('"APIKEY"', repr(PANOPLY_KEY)).replace(
        '"APISECRET"', repr(PANOPLY_SECRET)
    )
    run_script(
        example,
        env={
            "LOGHANDLERS_PANOPLY_URL": queue_url(collector),
            "LOGHANDLERS_SPOOL_DIR": str(tmp_path),
        },
    )
    rows = collector.events(service="panoply")
    assert [(row["channel"], row["event"]) for row in rows] == [
        ("tablename", {"foo": "bar", "__table": "tablename"})
    ]


def test_write_sends_exactly_data_and_table(collector, tmp_path):
    """issue 11: write(table, data) sends data plus __table, nothing of ours; the form and
    its message attributes are the SDK's (our sdk name aside)."""
    conn = panoply.SDK(
        PANOPLY_KEY, PANOPLY_SECRET, url=queue_url(collector), spool_dir=str(tmp_path)
    )
    try:
        data = {"count": 3, "nested": {"a": [1, None]}, "special": "a&b=c+d %/?#;", "__table": "x"}
        conn.write("logs", data)
        conn.write("other_table", {"id": 1})
        data["count"] = 4  # a copy was taken at write()
        assert conn.flush(timeout=10)
        events = [row["event"] for row in collector.events(service="panoply")]
        assert events == [
            {"count": 3, "nested": {"a": [1, None]}, "special": "a&b=c+d %/?#;", "__table": "logs"},
            {"id": 1, "__table": "other_table"},
        ]
        request = collector.requests(service="panoply")[-1]
        assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
        assert request["body"].startswith(b"Action=SendMessage&MessageBody=")
        with pytest.raises(TypeError):
            conn.write("t", ["not", "a", "dict"])
    finally:
        conn.close()


def test_on_send_flush_error_and_star(tmp_path):
    """issue 11: on("send"|"flush"|"error", fn) as the SDK's emitter: fn(data), "*" gets
    fn(name, data); an error arrives as an exception; on() returns the SDK."""
    seen = []
    done = threading.Event()
    with LoopbackServer(default=status(200)) as server:
        server.push(status(500))
        conn = panoply.SDK(
            PANOPLY_KEY, PANOPLY_SECRET, url=server.url + "/1/q", spool_dir=str(tmp_path), **FAST
        )
        try:
            assert conn.on("send", lambda data: seen.append(("send", data))) is conn
            conn.on("flush", lambda data: (seen.append(("flush", data)), done.set()))
            conn.on("error", lambda error: seen.append(("error", error)))
            conn.on("*", lambda name, data: seen.append(("*", name)))
            conn.write("t", {"x": 1})
            assert conn.flush(timeout=10) and done.wait(10)
        finally:
            conn.close()
    kinds = [kind for kind, _ in seen]
    assert kinds.count("send") == 2 and kinds.count("flush") == 1
    sends = [data for kind, data in seen if kind == "send"]
    assert sends[0]["events"] == 1 and sends[0]["url"].endswith("/1/q")
    errors = [data for kind, data in seen if kind == "error"]
    assert not errors  # a 500 that a retry fixed is not an error of the batch
    assert ("*", "send") in seen and ("*", "flush") in seen


def test_error_callback_gets_an_exception_without_the_secret(tmp_path):
    """issue 11: "error" receives an exception (as the SDK's), secrets blanked."""
    errors = []
    with LoopbackServer(default=status(400, body=PANOPLY_SECRET.encode())) as server:
        conn = panoply.SDK(
            PANOPLY_KEY, PANOPLY_SECRET, url=server.url + "/1/q", spool_dir=str(tmp_path), **FAST
        )
        try:
            conn.on("error", errors.append)
            conn.write("t", {"x": 1})
            assert conn.flush(timeout=10)
        finally:
            conn.close()
    assert errors and isinstance(errors[0], panoply.SendError)
    assert errors[0].kind == "http_400" and errors[0].events == 1
    assert PANOPLY_SECRET not in str(errors[0])
    assert PANOPLY_SECRET not in repr(conn)


def test_credentials_are_checked():
    """Malformed credentials are a ValueError that names the option, never its value (as
    for the handler), even with url= set."""
    with pytest.raises(ValueError, match="api_secret") as info:
        panoply.SDK("acct/key", "APISECRET", url="http://127.0.0.1:9", spool_dir="")
    assert "APISECRET" not in str(info.value)
    conn = panoply.SDK(PANOPLY_KEY, PANOPLY_SECRET, spool_dir="")
    try:
        assert conn.qurl == "https://sqs.us-east-1.amazonaws.com/123456789012/sdk-acct1-RAND2abc"
    finally:
        conn.close(timeout=0)
