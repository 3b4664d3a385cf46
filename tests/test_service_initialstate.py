"""InitialStateHandler on the wire: docs/protocols.md section 2."""

from __future__ import annotations

import datetime
import json
import re

import pytest

from loghandlers import InitialStateHandler, __version__
from loghandlers.services.initialstate import MAX_KEY, is_key
from tests.helpers import attach, collector_accepts, spool_text, spooled_events
from tests.loopback import status

ACCESS_KEY = "ist_TESTKEY+/secret=="
CREDS = {"access_key": ACCESS_KEY, "bucket_key": "wire_bucket_key"}


@pytest.fixture
def server_default():
    return status(200, body={})


@pytest.fixture
def handler_class():
    return InitialStateHandler


def assert_is_headers(req):
    assert req.header("Content-Type") == "application/json"
    assert req.header("User-Agent") == f"loghandlers/{__version__}"
    assert req.header("Accept-Version") == "<=0.0.4"
    assert req.header("X-IS-AccessKey") == ACCESS_KEY
    assert req.header("X-IS-BucketKey") == "wire_bucket_key"
    assert req.header("Content-Encoding") is None


def official_shape(event) -> bool:
    """What the official client sends (the collector checks the rest): these keys in this
    order, a float epoch."""
    return list(event) == ["key", "value", "epoch"] and type(event["epoch"]) is float


def test_bucket_once_then_events_under_a_url_path(server, make):
    handler = make(
        url=server.url + "/prefix/", bucket_name="Wire Test Bucket", compression="gzip", **CREDS
    )
    log, caught = attach(handler, "app.is")
    when = datetime.datetime(2020, 1, 2, 3, 4, 5)
    extras = {
        "key": "sensor",
        "temp": 21.5,
        "flag": True,
        "nested": {"a": {"b": [1, "x", None]}},
        "none": None,
        "unicode": "h\u00e9llo \u2603",
        "when": when,
    }
    log.info("hello", extra=extras)
    log.warning("plain")
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(2)
    bucket, events = server.requests
    assert (bucket.method, bucket.path) == ("POST", "/prefix/api/buckets")
    assert bucket.body == b'{"bucketKey": "wire_bucket_key", "bucketName": "Wire Test Bucket"}'
    assert (events.method, events.path) == ("POST", "/prefix/api/events")
    for req in (bucket, events):
        assert_is_headers(req)
    one, two = (record.created for record in caught.records)
    expected = [
        {"key": "sensor", "value": "hello", "epoch": one},
        {"key": "sensor_temp", "value": 21.5, "epoch": one},
        {"key": "sensor_flag", "value": True, "epoch": one},
        {"key": "sensor_nested_a", "value": '{"b": [1, "x", null]}', "epoch": one},
        {"key": "sensor_none", "value": "null", "epoch": one},
        {"key": "sensor_unicode", "value": "h\u00e9llo \u2603", "epoch": one},
        {"key": "sensor_when", "value": when.isoformat(), "epoch": one},
        {"key": "app.is", "value": "plain", "epoch": two},
    ]
    assert events.body.decode("ascii") == json.dumps(expected)
    assert all(official_shape(e) for e in events.json())
    assert collector_accepts(events, path="/api/events")
    # later batches: no second bucket call; the pipeline counted records, not IS events
    log.info("later")
    assert handler.flush(timeout=5)
    assert [r.path for r in server.requests] == ["/prefix/api/buckets"] + ["/prefix/api/events"] * 2
    assert handler.stats()["sent"] == 3


def test_default_url_is_groker(make):
    handler = make(**CREDS)
    assert handler.service.endpoint() == "https://groker.init.st/api/events"
    assert handler.service.setup_request().url == "https://groker.init.st/api/buckets"
    assert json.loads(handler.service.setup_request().body)["bucketName"] == "wire_bucket_key"


def test_key_option_traceback_and_dict_message(server, make):
    handler = make(url=server.url, key="app", **CREDS)
    log, _ = attach(handler)
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        log.exception("failed")
    log.info({"reading": 3})
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(2)
    events = server.requests[1].json()
    assert [e["key"] for e in events] == ["app", "app_reading"]
    assert events[0]["value"].startswith("failed\nTraceback (most recent call last):")
    assert events[0]["value"].rstrip().endswith("RuntimeError: bad")
    assert events[1]["value"] == 3


def test_long_keys_are_cut_to_250_with_a_hash():
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    assert len(is_key(long_a)) == MAX_KEY == len(is_key(long_b))
    assert is_key(long_a) != is_key(long_b)
    assert re.fullmatch(r"a{241}~[0-9a-f]{8}", is_key(long_a))
    assert is_key("a" * 250) == "a" * 250


def test_long_keys_on_the_wire(server, make):
    handler = make(url=server.url, **CREDS)
    log, _ = attach(handler)
    log.info("m", extra={"key": "k" * 300, "f" * 260: 1})
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(2)
    events = server.requests[1].json()
    assert all(official_shape(e) for e in events)
    assert collector_accepts(server.requests[1])
    assert [len(e["key"]) for e in events] == [250, 250]


def test_429_retry_after_is_honoured(server, make):
    server.push(status(200, {}, {}), status(429, {"Retry-After": "0"}, b""))
    handler = make(url=server.url, **CREDS)
    log, _ = attach(handler)
    log.info("x")
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(3)
    paths = [r.path for r in server.requests]
    assert paths == ["/api/buckets", "/api/events", "/api/events"]
    assert server.requests[1].body == server.requests[2].body
    assert handler.stats()["sent"] == 1


def test_429_retry_after_beyond_max_backoff_spools_instead_of_retrying(server, make, tmp_path):
    # without Retry-After the policy would retry after ~0.01 s; the server asked for an hour
    server.push(status(200, {}, {}), status(429, {"Retry-After": "3600"}, b""))
    handler = make(url=server.url, max_backoff=1.0, **CREDS)
    log, _ = attach(handler)
    log.info("x")
    assert handler.flush(timeout=5)
    assert [r.path for r in server.requests] == ["/api/buckets", "/api/events"]
    stats = handler.stats()
    assert stats["spooled"] == 1 and stats["errors"].get("http_429") == 1
    assert [list(e.values())[1:] for e in spooled_events(tmp_path / "spool")] == [["x"]]


def test_401_on_bucket_setup_holds_and_spools_and_reports_once(server, make, tmp_path, capsys):
    server.push(status(401, {}, {"message": "unauthorized"}))
    handler = make(url=server.url, **CREDS)
    log, _ = attach(handler)
    log.info("first")
    assert handler.flush(timeout=5)
    log.info("second")
    assert handler.flush(timeout=5)
    assert [r.path for r in server.requests] == ["/api/buckets"]  # held: no more tries
    stats = handler.stats()
    assert stats["spooled"] == 2 and stats["rejected"] == 0
    spooled = spooled_events(tmp_path / "spool")
    assert [next(v for k, v in e.items() if k) for e in spooled] == ["first", "second"]
    err = capsys.readouterr().err
    assert err.count("http_401") == 1 and "access_key" in err
    assert ACCESS_KEY not in err and ACCESS_KEY not in spool_text(tmp_path / "spool")
    handler.close()
    # a new handler for the same bucket replays the spool once the key works
    again = make(url=server.url, **CREDS)
    assert server.wait_for_requests(4)
    requests = server.requests  # one request per spooled batch, oldest first
    assert [r.path for r in requests] == ["/api/buckets"] * 2 + ["/api/events"] * 2
    assert [e["value"] for r in requests[2:] for e in r.json()] == ["first", "second"]
    assert again.flush(timeout=5)


@pytest.mark.parametrize("code", [401, 402, 403])
def test_refused_events_are_held_and_spooled_not_raised(server, make, tmp_path, code):
    server.push(status(200, {}, {}), status(code, {}, {"message": "no"}))
    handler = make(url=server.url, **CREDS)
    log, _ = attach(handler)
    log.info("kept")
    assert handler.flush(timeout=5)
    assert len(server.requests) == 2
    assert handler.stats()["spooled"] == 1
    assert handler.stats()["errors"] == {f"http_{code}": 1}
    assert ACCESS_KEY not in spool_text(tmp_path / "spool")


def test_400_bucket_removed_is_rejected_not_retried(server, make):
    error = {"message": {"error": {"type": "BUCKET_REMOVED", "message": "gone"}}}
    server.push(status(200, {}, {}), status(400, {}, error))
    handler = make(url=server.url, **CREDS)
    log, _ = attach(handler)
    log.info("lost")
    assert handler.flush(timeout=5)
    assert len(server.requests) == 2
    assert handler.stats()["rejected"] == 1


@pytest.mark.parametrize(
    "options, word",
    [
        ({"bucket_key": "b"}, "access_key"),
        ({"access_key": ACCESS_KEY}, "bucket_key"),
        ({"access_key": ACCESS_KEY + "\n", "bucket_key": "b"}, "access_key"),
        ({"access_key": " " + ACCESS_KEY, "bucket_key": "b"}, "access_key"),
    ],
)
def test_bad_settings_are_value_errors_without_the_key(monkeypatch, options, word):
    for name in ("ACCESS_KEY", "BUCKET_KEY"):
        monkeypatch.delenv(f"LOGHANDLERS_INITIALSTATE_{name}", raising=False)
        monkeypatch.delenv(f"LOGHANDLERS_{name}", raising=False)
    with pytest.raises(ValueError) as info:
        InitialStateHandler(spool_dir="", **options)
    assert word in str(info.value) and ACCESS_KEY not in str(info.value)
