"""KronosHandler on the wire: docs/protocols.md section 4."""

from __future__ import annotations

import datetime
import json

import pytest

from loghandlers import KronosHandler, __version__
from loghandlers.services.kronos import kronos_time, stream_name
from tests.helpers import attach, collector_accepts
from tests.loopback import status

LIBRARY = {"version": __version__, "name": "loghandlers"}


@pytest.fixture
def server_default():
    return status(200, body={"@success": True, "@took": "1.0ms"})


@pytest.fixture
def handler_class():
    return KronosHandler


def test_put_groups_by_stream_like_pykronos(server, make):
    handler = make(url=server.url + "/kronos/", namespace="wire_ns", source_id="src")
    log, caught = attach(handler, "wire.stream")
    log.info("no @time -> record time")
    other = {"count": 3, "ok": True, "missing": None, "nested": {"a": {"b": [1, "x", False]}}}
    log.info("other", extra={"stream": "other_stream", **other, "@id": "client-supplied-id"})
    log.info("int kronos time", extra={"@time": 14564850056590000})
    assert handler.flush(timeout=5)
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/kronos/1.0/events/put")
    assert req.header("Content-Type") is None and req.header("Content-Encoding") is None
    first, second, _ = caught.records
    base = {"level": "INFO", "logger": "wire.stream"}
    expected = {
        "namespace": "wire_ns",
        "events": {
            "wire.stream": [
                {
                    "@time": int(first.created * 1e7),
                    "@library": LIBRARY,
                    "message": "no @time -> record time",
                    **base,
                    "sourceId": "src",
                },
                {
                    "@time": 14564850056590000,
                    "@library": LIBRARY,
                    "message": "int kronos time",
                    **base,
                    "sourceId": "src",
                },
            ],
            "other_stream": [
                {
                    "@time": int(second.created * 1e7),
                    "@library": LIBRARY,
                    "message": "other",
                    **base,
                    **other,
                    "@id": "client-supplied-id",
                    "sourceId": "src",
                }
            ],
        },
    }
    assert req.body.decode("ascii") == json.dumps(expected)
    assert collector_accepts(req, path="/1.0/events/put")


def test_no_namespace_key_without_a_namespace(server, make):
    handler = make(url=server.url)
    log, _ = attach(handler, "plain")
    log.info("x")
    assert handler.flush(timeout=5)
    body = server.requests[0].json()
    assert list(body) == ["events"] and list(body["events"]) == ["plain"]


def test_streams_are_sanitised(server, make):
    handler = make(url=server.url, stream="from option")
    log, _ = attach(handler, "my app/x:y")
    log.info("a")
    log.info("b", extra={"stream": "caf\u00e9 <1>"})
    log.info("c", extra={"stream": "s" * 3000})
    log.info("d", extra={"stream": ""})
    assert handler.flush(timeout=5)
    body = server.requests[0].json()
    assert list(body["events"]) == ["from_option", "caf___1_", "s" * 2048]
    assert [e["message"] for e in body["events"]["from_option"]] == ["a", "d"]
    assert all("stream" not in e for events in body["events"].values() for e in events)
    assert collector_accepts(server.requests[0])
    assert stream_name("my app/x:y") == "my_app_x_y"


def test_default_stream_is_the_logger_name_sanitised(server, make):
    handler = make(url=server.url)
    log, _ = attach(handler, "my app/x:y")
    log.info("a")
    assert handler.flush(timeout=5)
    assert list(server.requests[0].json()["events"]) == ["my_app_x_y"]


@pytest.mark.parametrize(
    "value",
    [
        "2016-02-26T11:10:05.659Z",
        datetime.datetime(2016, 2, 26, 11, 10, 5, 659000),
        datetime.datetime(
            2016, 2, 26, 13, 10, 5, 659000, datetime.timezone(datetime.timedelta(hours=2))
        ),
    ],
)
def test_time_extra_conversions_match_pykronos(value):
    assert kronos_time(value, 0.0) == 14564850056590000


@pytest.mark.parametrize("value", [1456485005.659, "not a time", None, True])
def test_other_time_extras_use_the_record_time(value):
    assert kronos_time(value, 1456485005.5) == 14564850055000000


def test_partial_failure_counts_rejected_and_does_not_resend(server, make):
    reply = {
        "wire": {"memory": {"num_inserted": 2}},
        "@success": False,
        "@errors": ["InvalidEventTime(-1,)"],
        "@took": "1ms",
    }
    server.push(status(200, {}, reply))
    handler = make(url=server.url)
    errors = []
    handler.on("error", errors.append)
    log, _ = attach(handler, "wire")
    log.info("a")
    log.info("b", extra={"@time": -1})
    log.info("c")
    assert handler.flush(timeout=5)
    assert len(server.requests) == 1
    stats = handler.stats()
    assert (stats["sent"], stats["rejected"], stats["spooled"]) == (2, 1, 0)
    assert any("InvalidEventTime" in e["message"] for e in errors)


def test_a_refused_stream_counts_all_its_events(server, make):
    reply = {
        "good": {"memory": {"num_inserted": 1}},
        "@success": False,
        "@errors": ["InvalidStreamName('bad',)"],
    }
    server.push(status(200, {}, reply))
    handler = make(url=server.url)
    log, _ = attach(handler, "good")
    log.info("a")
    log.info("b", extra={"stream": "bad"})
    log.info("c", extra={"stream": "bad"})
    assert handler.flush(timeout=5)
    assert len(server.requests) == 1
    assert (handler.stats()["sent"], handler.stats()["rejected"]) == (1, 2)


def test_400_invalid_json_is_rejected(server, make):
    body = {"@errors": ["Request body must be valid JSON."], "@success": False}
    server.push(status(400, {}, body))
    handler = make(url=server.url)
    log, _ = attach(handler)
    log.info("a")
    assert handler.flush(timeout=5)
    assert len(server.requests) == 1 and handler.stats()["rejected"] == 1


@pytest.mark.parametrize(
    "first", [status(500, {}, b"oops"), status(200, {}, b"<html>proxy</html>")], ids=["500", "html"]
)
def test_5xx_or_a_non_kronos_200_is_retried(server, make, first):
    server.push(first)
    handler = make(url=server.url)
    log, _ = attach(handler)
    log.info("a")
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(2)
    one, two = server.requests
    assert one.body == two.body
    assert handler.stats()["sent"] == 1


def test_url_is_required(monkeypatch):
    monkeypatch.delenv("LOGHANDLERS_KRONOS_URL", raising=False)
    monkeypatch.delenv("LOGHANDLERS_URL", raising=False)
    with pytest.raises(ValueError, match="url"):
        KronosHandler(spool_dir="")
