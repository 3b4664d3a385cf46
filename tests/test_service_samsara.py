"""SamsaraHandler on the wire: docs/protocols.md section 1."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from loghandlers import SamsaraHandler
from loghandlers.transport import Request
from tests.helpers import attach, collector_accepts
from tests.loopback import status

EXTRAS = {
    "count": 3,
    "ratio": 0.5,
    "ok": True,
    "missing": None,
    "nested": {"a": {"b": [1, "x", False]}},
    "unicode": "h\u00e9llo \u2603",
}


@pytest.fixture
def server_default():
    return status(202)


@pytest.fixture
def handler_class():
    return SamsaraHandler


def test_gzip_by_default_path_dropped_headers_and_body(server, make):
    handler = make(url=server.url + "/some/prefix/?q=1", source_id="wire-source")
    log, caught = attach(handler, "app.web")
    before = int(time.time() * 1000)
    log.info("hello wire", extra=EXTRAS)
    log.warning(
        "explicit",
        extra={"eventName": "log.custom_ts", "timestamp": 1456485005659, "sourceId": "other"},
    )
    assert handler.flush(timeout=5)
    after = int(time.time() * 1000)
    (req,) = server.requests
    assert (req.method, req.target) == ("POST", "/v1/events")  # path and query dropped
    assert req.header("Accept") == "application/json"
    assert req.header("Content-Type") == "application/json"
    assert req.header("Content-Encoding") == "gzip"
    assert req.body[:2] == b"\x1f\x8b"
    assert int(req.header("Content-Length")) == len(req.body)
    published = req.header("X-Samsara-publishedTimestamp")
    assert published.isdigit() and before <= int(published) <= after
    first, second = caught.records
    expected = [
        {
            "eventName": "log.info",
            "message": "hello wire",
            "level": "INFO",
            "logger": "app.web",
            **EXTRAS,
            "sourceId": "wire-source",
            "timestamp": int(first.created * 1000),
        },
        {
            "eventName": "log.custom_ts",
            "message": "explicit",
            "level": "WARNING",
            "logger": "app.web",
            "timestamp": 1456485005659,
            "sourceId": "other",
        },
    ]
    # json.dumps defaults, as the official client: same text, not only the same data
    assert gzip.decompress(req.body).decode("ascii") == json.dumps(expected)
    assert collector_accepts(req)
    assert second.created * 1000 >= expected[0]["timestamp"]


def test_compression_none_sends_identity(server, make):
    handler = make(url=server.url, compression="none")
    log, _ = attach(handler)
    log.error("plain")
    assert handler.flush(timeout=5)
    (req,) = server.requests
    assert req.header("Content-Encoding") == "identity"
    events = json.loads(req.body)
    assert events[0]["eventName"] == "log.error" and events[0]["message"] == "plain"
    assert collector_accepts(req)


def test_event_name_template_and_extra_override(server, make):
    handler = make(url=server.url, event_name="{logger}.{level}.{absent}x", compression="none")
    log, _ = attach(handler, "svc")
    log.critical("a")
    log.info("b", extra={"eventName": 42})
    assert handler.flush(timeout=5)
    names = [e["eventName"] for e in server.requests[0].json()]
    assert names == ["svc.critical.x", "42"]


@pytest.mark.parametrize("template", ["{level:d}", "{0}", "{unclosed"])
def test_bad_event_name_template_is_a_value_error(template):
    with pytest.raises(ValueError, match="event_name"):
        SamsaraHandler(url="http://127.0.0.1:9", event_name=template, spool_dir="")


def test_url_is_required(monkeypatch):
    monkeypatch.delenv("LOGHANDLERS_SAMSARA_URL", raising=False)
    monkeypatch.delenv("LOGHANDLERS_URL", raising=False)
    with pytest.raises(ValueError, match="url"):
        SamsaraHandler(spool_dir="")


@pytest.mark.parametrize(
    "given, kept",
    [(0, True), (1456485005659, True), (-5, False), (1.5, False), ("x", False), (True, False)],
)
def test_timestamp_extra_kept_only_when_a_non_negative_int(server, make, given, kept):
    handler = make(url=server.url)
    log, caught = attach(handler)
    log.info("t", extra={"timestamp": given})
    assert handler.flush(timeout=5)
    (event,) = server.requests[0].json()
    want = given if kept else int(caught.records[0].created * 1000)
    assert event["timestamp"] == want and type(event["timestamp"]) is int


def test_non_string_source_id_extra_is_made_a_string(server, make):
    handler = make(url=server.url)
    log, _ = attach(handler)
    log.info("s", extra={"sourceId": 7})
    assert handler.flush(timeout=5)
    (event,) = server.requests[0].json()
    assert event["sourceId"] == "7" and collector_accepts(server.requests[0])


def test_400_per_event_resends_only_ok_events_and_counts_the_invalid(server, make):
    reasons = ["OK", "timestamp: must be an integer (ms since epoch)", "OK"]
    server.push(status(400, {}, reasons))
    handler = make(url=server.url)
    errors = []
    handler.on("error", errors.append)
    log, _ = attach(handler)
    for word in ("one", "two", "three"):
        log.info(word)
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(2)
    first, second = server.requests
    assert [e["message"] for e in first.json()] == ["one", "two", "three"]
    assert [e["message"] for e in second.json()] == ["one", "three"]
    assert len(server.requests) == 2
    stats = handler.stats()
    assert (stats["sent"], stats["rejected"]) == (2, 1)
    assert any("must be an integer" in e["message"] and e["events"] == 1 for e in errors)


def test_other_400_rejects_the_batch_without_retry(server, make):
    message = {
        "status": "ERROR",
        "message": "Invalid format, content-type must be application/json",
    }
    server.push(status(400, {}, message))
    handler = make(url=server.url)
    log, _ = attach(handler)
    log.info("a")
    log.info("b")
    assert handler.flush(timeout=5)
    assert len(server.requests) == 1
    assert handler.stats()["rejected"] == 2 and handler.stats()["spooled"] == 0


def test_500_is_retried_with_the_same_events(server, make):
    server.push(status(500, {}, b"boom"))
    handler = make(url=server.url)
    log, _ = attach(handler)
    log.info("again")
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(2)
    first, second = server.requests
    assert first.json() == second.json()
    assert handler.stats()["sent"] == 1


def test_published_timestamp_hook_is_fresh():
    handler = SamsaraHandler(url="http://127.0.0.1:9", spool_dir="")
    try:
        request = handler.service.encode([])
        header = handler.service.attempt_headers(request)["X-Samsara-publishedTimestamp"]
        assert header.isdigit() and int(header) >= int(
            request.headers["X-Samsara-publishedTimestamp"]
        )
        assert isinstance(request, Request)
    finally:
        handler.close()


def test_published_timestamp_is_taken_at_each_attempt(server, make):
    server.push(status(503, {"Retry-After": "0.05"}, b""))
    handler = make(url=server.url)
    log, _ = attach(handler)
    log.info("late")
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(2)
    first, second = server.requests
    assert int(second.header("X-Samsara-publishedTimestamp")) > int(
        first.header("X-Samsara-publishedTimestamp")
    )
