"""The development collector, over real HTTP on 127.0.0.1.

Wire shapes come from the captures in docs/protocols.md; every loop and wait is bounded.
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode, urlsplit

import pytest
import requests

from loghandlers.cli_collect import (
    add_collect_parser,
    add_events_parser,
    default_db,
    run_events,
    summary,
)
from loghandlers.collector import Collector
from loghandlers.collector import base as collector_base
from loghandlers.collector.kronos import UUID_EPOCH_OFFSET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def collector():
    with Collector() as c:
        yield c


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def raw_exchange(url, data, timeout=5.0):
    """Send raw bytes, return (status, head, body-so-far) of the first response."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        for _ in range(1000):
            if b"\r\n\r\n" in buf:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.decode("latin-1"), body


# ----------------------------------------------------------------------------- Samsara

SAMSARA_EVENTS = [
    {
        "eventName": "log.info",
        "message": "hello wire",
        "level": "INFO",
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "missing": None,
        "nested": {"a": {"b": [1, "x", False]}},
        "unicode": "h\u00e9llo \u2603",
        "sourceId": "wire-source",
        "timestamp": 1795373291605,
    },
    {
        "eventName": "log.custom_ts",
        "timestamp": 1456485005659,
        "sourceId": "other-source",
        "msg": "explicit timestamp + sourceId",
    },
]


def samsara_headers(encoding="gzip", published="1795373291606"):
    headers = {
        "User-Agent": "python-requests/2.20.0",
        "Accept-Encoding": "gzip, deflate",
        "Accept": "application/json",
        "Connection": "keep-alive",
        "Content-Type": "application/json",
        "Content-Encoding": encoding,
    }
    if published is not None:
        headers["X-Samsara-publishedTimestamp"] = published
    return headers


def test_samsara_gzip_capture(collector, session):
    body = gzip.compress(json.dumps(SAMSARA_EVENTS).encode("utf-8"))
    r = session.post(collector.url + "/v1/events", data=body, headers=samsara_headers())
    assert r.status_code == 202
    assert r.content == b""
    rows = collector.events(service="samsara")
    assert [(e["source"], e["channel"]) for e in rows] == [
        ("wire-source", "log.info"),
        ("other-source", "log.custom_ts"),
    ]
    first = rows[0]["event"]
    assert first["unicode"] == "h\u00e9llo \u2603"
    assert first["nested"] == {"a": {"b": [1, "x", False]}}
    assert first["publishedAt"] == 1795373291606
    assert isinstance(first["receivedAt"], int) and first["receivedAt"] > 0
    seen = collector.requests(service="samsara")[-1]
    assert seen["body"] == body
    assert seen["headers"]["content-encoding"] == "gzip"
    assert seen["headers"]["X-Samsara-publishedTimestamp"] == "1795373291606"
    assert seen["status"] == 202 and seen["method"] == "POST" and seen["path"] == "/v1/events"


def test_samsara_identity_and_upper_case_gzip(collector, session):
    plain = json.dumps(SAMSARA_EVENTS).encode()
    r = session.post(collector.url + "/v1/events", data=plain, headers=samsara_headers("identity"))
    assert r.status_code == 202
    r = session.post(
        collector.url + "/v1/events", data=gzip.compress(plain), headers=samsara_headers("GZIP")
    )
    assert r.status_code == 202
    assert collector.count("samsara") == 4


def test_samsara_keeps_existing_received_and_published(collector, session):
    event = dict(SAMSARA_EVENTS[1], receivedAt=1, publishedAt=2)
    r = session.post(
        collector.url + "/v1/events",
        data=json.dumps([event]),
        headers=samsara_headers("identity"),
    )
    assert r.status_code == 202
    stored = collector.events()[0]["event"]
    assert (stored["receivedAt"], stored["publishedAt"]) == (1, 2)


def test_samsara_missing_published_header_warns(collector, session):
    headers = samsara_headers("identity", published=None)
    r = session.post(collector.url + "/v1/events", data=json.dumps(SAMSARA_EVENTS), headers=headers)
    assert r.status_code == 202
    assert "X-Samsara-publishedTimestamp" in r.json()["warning"]
    assert "publishedAt" not in collector.events()[0]["event"]


@pytest.mark.parametrize("content_type", ["text/plain", "", "json", "application/xml"])
def test_samsara_content_type_rejected(collector, session, content_type):
    headers = samsara_headers("identity")
    headers["Content-Type"] = content_type
    r = session.post(collector.url + "/v1/events", data=json.dumps(SAMSARA_EVENTS), headers=headers)
    assert r.status_code == 400
    assert r.json() == {
        "status": "ERROR",
        "message": "Invalid format, content-type must be application/json",
    }
    assert collector.count() == 0


def test_samsara_vendor_json_content_type_accepted(collector, session):
    headers = samsara_headers("identity")
    headers["Content-Type"] = "application/vnd.samsara+json; charset=utf-8"
    r = session.post(collector.url + "/v1/events", data=json.dumps(SAMSARA_EVENTS), headers=headers)
    assert r.status_code == 202


@pytest.mark.parametrize("value", ["abc", "", "1.5", "1_000", "99999999999999999999", "12x"])
def test_samsara_bad_published_header(collector, session, value):
    headers = samsara_headers("identity", published=value)
    r = session.post(collector.url + "/v1/events", data=json.dumps(SAMSARA_EVENTS), headers=headers)
    assert r.status_code == 400
    assert r.json()["message"] == "X-Samsara-publishedTimestamp must be a valid timestamp."


def test_samsara_invalid_event_rejects_whole_batch(collector, session):
    batch = [
        SAMSARA_EVENTS[0],
        {"eventName": "x", "sourceId": "s", "timestamp": 1.5},
        {"eventName": "x", "timestamp": 1},
        {"eventName": "x", "sourceId": "s", "timestamp": True},
        "not an object",
    ]
    r = session.post(
        collector.url + "/v1/events", data=json.dumps(batch), headers=samsara_headers("identity")
    )
    assert r.status_code == 400
    results = r.json()
    assert len(results) == 5
    assert results[0] == "OK"
    assert "timestamp" in results[1] and "sourceId" in results[2] and "timestamp" in results[3]
    assert all(isinstance(x, str) and x != "OK" for x in results[1:])
    assert collector.count() == 0


@pytest.mark.parametrize(
    "body, encoding",
    [
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (gzip.compress(b"[]", mtime=0)[:-6], "gzip"),
        (b"", "gzip"),
        (b"[{not json", "identity"),
        (b'{"eventName": "x"}', "identity"),
        (b"[\xff\xfe]", "identity"),
        (b"[" + b"9" * 5000 + b"]", "identity"),
        (b"[NaN]", "identity"),
        (b"[" * 100000 + b"]" * 100000, "identity"),
    ],
)
def test_samsara_malformed_bodies(collector, session, body, encoding):
    r = session.post(collector.url + "/v1/events", data=body, headers=samsara_headers(encoding))
    assert r.status_code == 400
    assert r.json()["status"] == "ERROR"
    assert session.get(collector.url + "/v1/api-status").status_code == 200


def test_samsara_status_and_wrong_method(collector, session):
    assert session.get(collector.url + "/v1/api-status").status_code == 200
    r = session.get(collector.url + "/v1/events")
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    assert r.json()["status"] == "ERROR"
    assert session.post(collector.url + "/v1/api-status", data=b"").status_code == 405


def test_gzip_bomb_is_refused():
    with Collector(max_body_bytes=1024) as c:
        bomb = gzip.compress(b"[" + b" " * 100000 + b"]")
        assert len(bomb) < 1024
        r = requests.post(c.url + "/v1/events", data=bomb, headers=samsara_headers())
        assert r.status_code == 413
        assert c.count() == 0


class _CountingDecompressor:
    """A zlib decompressor that records how many input bytes each call was handed."""

    def __init__(self, fed, real, *args, **kwargs):
        self._fed = fed
        self._real = real(*args, **kwargs)

    def decompress(self, data, *args):
        self._fed.append(len(data))
        return self._real.decompress(data, *args)

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_gzip_members_are_decoded_in_linear_work(monkeypatch):
    """issue 15: many concatenated gzip members decode in linear time (counted in bytes
    handed to zlib, not seconds): the old loop re-fed the whole rest of the body per member."""
    fed = []
    real = zlib.decompressobj
    monkeypatch.setattr(
        zlib, "decompressobj", lambda *a, **k: _CountingDecompressor(fed, real, *a, **k)
    )
    empty = gzip.compress(b"")
    body = empty * 3000 + gzip.compress(b"[1]") + empty * 3000 + b"\0" * 100
    assert collector_base.gunzip(body, 1 << 20) == b"[1]"
    assert sum(fed) <= 8 * len(body) + 4096
    big = gzip.compress(os.urandom(300000)) + empty * 10
    fed.clear()
    assert len(collector_base.gunzip(big, 1 << 20)) == 300000
    assert sum(fed) <= 8 * len(big) + 4096


def test_many_gzip_members_through_the_collector(collector, session):
    """issue 15: thousands of members, then trailing zero padding, decode to one body."""
    body = gzip.compress(b"") * 5000 + gzip.compress(json.dumps(SAMSARA_EVENTS).encode())
    r = session.post(collector.url + "/v1/events", data=body, headers=samsara_headers())
    assert r.status_code == 202
    assert collector.count("samsara") == len(SAMSARA_EVENTS)
    bad = gzip.compress(b"[]") + b"\0\0junk"
    r = session.post(collector.url + "/v1/events", data=bad, headers=samsara_headers())
    assert r.status_code == 400


# ----------------------------------------------------------------------------- Initial State

IS_HEADERS = {
    "Accept-Encoding": "identity",
    "Content-Type": "application/json",
    "User-Agent": "PyStreamer v2.0.0",
    "Accept-Version": "<=0.0.4",
    "X-IS-AccessKey": "ist_TESTKEY",
    "X-IS-BucketKey": "wire_bucket_key",
}
IS_BUCKET = {"bucketKey": "wire_bucket_key", "bucketName": "Wire Test Bucket"}
IS_EVENTS = [
    {"key": "custom_ts_float", "value": "x", "epoch": 1456485005.659},
    {"key": "custom_ts_int", "value": 1, "epoch": 1456485005},
    {"key": "bad_epoch", "value": "y", "epoch": 1795373329.3233428},
]


def test_initialstate_capture(collector, session):
    bucket_body = json.dumps(IS_BUCKET).encode()
    events_body = json.dumps(IS_EVENTS).encode()
    assert (len(bucket_body), len(events_body)) == (66, 191)  # as captured
    r = session.post(collector.url + "/api/buckets", data=bucket_body, headers=IS_HEADERS)
    assert r.status_code == 200 and r.json() == {}
    r = session.post(collector.url + "/api/events", data=events_body, headers=IS_HEADERS)
    assert r.status_code == 200
    assert collector.buckets() == [
        {
            "bucketKey": "wire_bucket_key",
            "bucketName": "Wire Test Bucket",
            "accessKey_present": True,
        }
    ]
    rows = collector.events(service="initialstate")
    assert [r["event"] for r in rows] == IS_EVENTS
    assert isinstance(rows[1]["event"]["epoch"], int)  # an int epoch stays an int
    assert {r["channel"] for r in rows} == {"wire_bucket_key"}
    assert {r["source"] for r in rows} == {None}
    seen = collector.requests(service="initialstate")
    assert [s["path"] for s in seen] == ["/api/buckets", "/api/events"]
    assert seen[1]["headers"]["X-IS-AccessKey"] == "ist_TESTKEY"


def test_initialstate_bucket_recreated_once(collector, session):
    for name in ("first", "second"):
        body = json.dumps({"bucketKey": "k", "bucketName": name})
        assert session.post(collector.url + "/api/buckets", data=body, headers=IS_HEADERS).ok
    assert collector.buckets() == [
        {"bucketKey": "k", "bucketName": "second", "accessKey_present": True}
    ]


def test_initialstate_events_before_bucket_and_mixed_values(collector, session):
    batch = [
        {"key": "flag", "value": True, "epoch": 1795373329.3166375},
        {"key": "nested", "value": {"a": {"b": [1, "x", None]}}, "epoch": 1795373329.3192868},
        {"key": "unicode", "value": "h\u00e9llo \u2603", "epoch": 1795373329.3193126},
    ]
    r = session.post(collector.url + "/api/events", data=json.dumps(batch), headers=IS_HEADERS)
    assert r.status_code == 200
    assert collector.buckets() == []
    assert [e["event"] for e in collector.events()] == batch


@pytest.mark.parametrize("path", ["/api/buckets", "/api/events"])
@pytest.mark.parametrize("key", [None, ""])
def test_initialstate_unauthorized(collector, session, path, key):
    headers = dict(IS_HEADERS)
    if key is None:
        del headers["X-IS-AccessKey"]
    else:
        headers["X-IS-AccessKey"] = key
    r = session.post(collector.url + path, data=json.dumps(IS_EVENTS), headers=headers)
    assert r.status_code == 401
    assert r.json() == {"message": "unauthorized"}
    assert collector.count() == 0 and collector.buckets() == []


@pytest.mark.parametrize("bucket", [None, ""])
def test_initialstate_missing_bucket_key(collector, session, bucket):
    headers = dict(IS_HEADERS)
    if bucket is None:
        del headers["X-IS-BucketKey"]
    else:
        headers["X-IS-BucketKey"] = bucket
    r = session.post(collector.url + "/api/events", data=json.dumps(IS_EVENTS), headers=headers)
    assert r.status_code == 400
    assert r.json()["message"]["error"]["type"] == "MISSING_BUCKET_KEY"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"42",
        json.dumps([{"key": "k" * 251, "value": 1, "epoch": 1}]).encode(),
        json.dumps([{"value": 1, "epoch": 1}]).encode(),
        json.dumps([{"key": "k", "epoch": 1}]).encode(),
        json.dumps([{"key": "k", "value": 1, "epoch": "soon"}]).encode(),
        json.dumps([IS_EVENTS[0], 7]).encode(),
        b'[{"key": "k", "value": 1, "epoch": 1e999}]',
    ],
)
def test_initialstate_invalid_events(collector, session, body):
    r = session.post(collector.url + "/api/events", data=body, headers=IS_HEADERS)
    assert r.status_code == 400
    error = r.json()["message"]["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str)
    assert collector.count() == 0


def test_initialstate_huge_int_epoch(collector, session):
    body = b'[{"key": "k", "value": 1, "epoch": 1' + b"0" * 400 + b"}]"
    r = session.post(collector.url + "/api/events", data=body, headers=IS_HEADERS)
    assert r.status_code == 200


def test_initialstate_key_length_limit(collector, session):
    ok = [{"key": "k" * 250, "value": 1, "epoch": 1}]
    assert (
        session.post(collector.url + "/api/events", json=ok, headers=IS_HEADERS).status_code == 200
    )
    long = [{"key": "k" * 251, "value": 1, "epoch": 1}]
    r = session.post(collector.url + "/api/events", json=long, headers=IS_HEADERS)
    assert r.status_code == 400
    assert r.json()["message"]["error"]["type"] == "KEY_TOO_LONG"


def test_initialstate_bad_bucket_body(collector, session):
    for body in (b"[]", b"{", json.dumps({"bucketKey": 5}).encode()):
        headers = dict(IS_HEADERS)
        del headers["X-IS-BucketKey"]
        r = session.post(collector.url + "/api/buckets", data=body, headers=headers)
        assert r.status_code == 400
        assert "error" in r.json()["message"]
    assert collector.buckets() == []


# ----------------------------------------------------------------------------- Panoply

PANOPLY_PATH = "/123456789012/sdk-acct1-RAND2abc"
PANOPLY_KEY = "acct1/RAND1xyz"
PANOPLY_SECRET = (
    "UkFORDJhYmMvNmYxYzJlOWEtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAxLzEyMzQ1Njc4OTAxMi91cy1lYXN0LTE="
)
PANOPLY_RECORDS = [
    {
        "count": 3,
        "ratio": 0.5,
        "level": "INFO",
        "__table": "logs",
        "missing": None,
        "nested": {"a": {"b": [1, "x", False]}},
        "unicode": "h\u00e9llo \u2603",
        "ok": True,
        "message": "hello wire",
        "special": "a&b=c+d %/?#;",
    },
    {"__table": "logs", "message": "second", "ts": 1456485005.659},
    {"__table": "other_table", "id": 1},
]
PANOPLY_HEADERS = {
    "Accept-Encoding": "identity",
    "Content-Type": "application/x-www-form-urlencoded",
    "Connection": "close",
    "User-Agent": "Python-urllib/2.7",
}


def panoply_sdk_body(records, key=PANOPLY_KEY, secret=PANOPLY_SECRET):
    """The official SDK's hand-built form: quoted records, raw LF LF, raw key and secret."""
    message = "".join(quote(json.dumps(r), safe="/") + "\n\n" for r in records)
    fields = ["Action=SendMessage", "MessageBody=" + message]
    for i, (name, value) in enumerate(
        [("key", key), ("secret", secret), ("sdk", "panoply-python-sdk-1.6.3")], 1
    ):
        fields += [
            f"MessageAttribute.{i}.Name={name}",
            f"MessageAttribute.{i}.Value.DataType=String",
            f"MessageAttribute.{i}.Value.StringValue={value}",
        ]
    return "&".join(fields).encode("ascii")


def panoply_encoded_body(records, key=PANOPLY_KEY, secret=PANOPLY_SECRET, attrs=None):
    """What a standards-following client sends: every field properly form-encoded."""
    fields = [("Action", "SendMessage"), ("MessageBody", panoply_message(records))]
    if attrs is None:
        attrs = [("key", key), ("secret", secret), ("sdk", "loghandlers")]
    for i, (name, value) in enumerate(attrs, 1):
        fields += [
            (f"MessageAttribute.{i}.Name", name),
            (f"MessageAttribute.{i}.Value.DataType", "String"),
            (f"MessageAttribute.{i}.Value.StringValue", value),
        ]
    return urlencode(fields).encode("ascii")


def panoply_message(records):
    return "".join(json.dumps(r) + "\n\n" for r in records)


def test_panoply_raw_newline_capture(collector, session):
    body = panoply_sdk_body(PANOPLY_RECORDS)
    assert len(body) == 1081  # the captured Content-Length
    assert b"\n\n%7B%22__table%22%3A%20%22logs%22" in body
    r = session.post(collector.url + PANOPLY_PATH, data=body, headers=PANOPLY_HEADERS)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/xml")
    text = r.text
    assert "<SendMessageResponse" in text
    message_id = re.search(r"<MessageId>([^<]+)</MessageId>", text).group(1)
    assert uuid.UUID(message_id).version == 4
    md5 = hashlib.md5(panoply_message(PANOPLY_RECORDS).encode()).hexdigest()
    assert f"<MD5OfMessageBody>{md5}</MD5OfMessageBody>" in text
    rows = collector.events(service="panoply")
    assert [r["event"] for r in rows] == PANOPLY_RECORDS
    assert [r["channel"] for r in rows] == ["logs", "logs", "other_table"]
    assert rows[0]["event"]["special"] == "a&b=c+d %/?#;"
    assert collector.requests(service="panoply")[-1]["body"] == body
    stored = json.dumps([r["event"] for r in rows])
    assert PANOPLY_SECRET not in stored and PANOPLY_SECRET[:20] not in stored


def test_panoply_encoded_with_plus_in_secret(collector, session):
    secret = base64.b64encode(b"\xfb\xef\xbeRAND2/uuid/123456789012/us-east-1").decode()
    assert "+" in secret
    records = [dict(PANOPLY_RECORDS[0], sourceId="host:42"), *PANOPLY_RECORDS[1:]]
    body = panoply_encoded_body(records, secret=secret)
    assert b"%0A%0A" in body and b"\n" not in body and b"%2B" in body
    r = session.post(collector.url + PANOPLY_PATH, data=body, headers=PANOPLY_HEADERS)
    assert r.status_code == 200
    md5 = hashlib.md5(panoply_message(records).encode()).hexdigest()
    assert md5 in r.text
    rows = collector.events(service="panoply")
    assert [r["event"] for r in rows] == records
    assert rows[0]["source"] == "host:42"
    assert secret not in json.dumps([r["event"] for r in rows])


def test_panoply_raw_and_encoded_decode_alike(collector, session):
    for body in (panoply_sdk_body(PANOPLY_RECORDS), panoply_encoded_body(PANOPLY_RECORDS)):
        r = session.post(collector.url + PANOPLY_PATH, data=body, headers=PANOPLY_HEADERS)
        assert r.status_code == 200
    rows = [r["event"] for r in collector.events()]
    assert rows[:3] == rows[3:]


@pytest.mark.parametrize(
    "attrs",
    [
        [("secret", PANOPLY_SECRET), ("sdk", "x")],
        [("key", PANOPLY_KEY), ("sdk", "x")],
        [("key", PANOPLY_KEY), ("secret", "")],
        [],
    ],
)
def test_panoply_missing_credentials(collector, session, attrs):
    body = panoply_encoded_body(PANOPLY_RECORDS, attrs=attrs)
    r = session.post(collector.url + PANOPLY_PATH, data=body, headers=PANOPLY_HEADERS)
    assert r.status_code == 403
    assert "<Code>AccessDenied</Code>" in r.text
    assert collector.count() == 0


def test_panoply_body_over_sqs_limit(collector, session):
    records = [{"__table": "big", "blob": "x" * 10000} for _ in range(27)]
    body = panoply_sdk_body(records)
    assert len(body) > 262144
    r = session.post(collector.url + PANOPLY_PATH, data=body, headers=PANOPLY_HEADERS)
    assert r.status_code == 400
    assert "<Code>InvalidParameterValue</Code>" in r.text
    assert "262144" in r.text
    assert collector.count() == 0


@pytest.mark.parametrize(
    "message",
    [
        '{"__table": "t", "a": 1}\n\n{broken\n\n',
        '{"a": 1}\n\n',
        '{"__table": 5}\n\n',
        "[1, 2]\n\n",
        "\n\n\n\n",
    ],
)
def test_panoply_bad_records(collector, session, message):
    fields = [
        ("Action", "SendMessage"),
        ("MessageBody", message),
        ("MessageAttribute.1.Name", "key"),
        ("MessageAttribute.1.Value.StringValue", PANOPLY_KEY),
        ("MessageAttribute.2.Name", "secret"),
        ("MessageAttribute.2.Value.StringValue", PANOPLY_SECRET),
    ]
    r = session.post(collector.url + PANOPLY_PATH, data=urlencode(fields), headers=PANOPLY_HEADERS)
    assert r.status_code == 400
    assert "<ErrorResponse" in r.text
    assert collector.count() == 0


def test_panoply_other_actions_and_bad_bytes(collector, session):
    r = session.post(
        collector.url + PANOPLY_PATH, data="Action=ReceiveMessage", headers=PANOPLY_HEADERS
    )
    assert r.status_code == 400 and "InvalidAction" in r.text
    r = session.post(collector.url + PANOPLY_PATH, data="MessageBody=x", headers=PANOPLY_HEADERS)
    assert r.status_code == 400 and "MissingAction" in r.text
    r = session.post(collector.url + PANOPLY_PATH, data=b"Action=\xff", headers=PANOPLY_HEADERS)
    assert r.status_code == 400 and "<ErrorResponse" in r.text


def test_unknown_paths_are_404(collector, session):
    r = session.post(collector.url + PANOPLY_PATH, json={"Action": "SendMessage"})
    assert r.status_code == 404
    assert r.json() == {"status": "ERROR", "message": "Not found"}
    assert session.get(collector.url + PANOPLY_PATH).status_code == 404
    assert session.get(collector.url + "/").status_code == 404
    assert collector.requests()[-1]["service"] is None


# ----------------------------------------------------------------------------- Kronos

KRONOS_HEADERS = {
    "Accept-Encoding": "gzip, deflate",
    "Accept": "*/*",
    "User-Agent": "python-requests/2.3.0 CPython/2.7.18 Linux/6.18.44-fc-v669",
}
LIB = {"version": "0.6.2", "name": "pykronos"}


def kronos_post(session, collector, path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return session.post(collector.url + path, data=data, headers=KRONOS_HEADERS)


def test_kronos_put_capture(collector, session):
    body = {
        "namespace": "wire_ns",
        "events": {
            "wire.stream": [
                {
                    "@library": LIB,
                    "message": "no @time -> client stamps now",
                    "@time": 17953733883631210,
                },
                {"@library": LIB, "message": "int kronos time", "@time": 14564850056590000},
                {"@library": LIB, "message": "ISO string", "@time": 14564850056590000},
                {
                    "@library": LIB,
                    "message": "float epoch passed as @time is sent unchanged",
                    "@time": 1456485005.659,
                },
            ],
            "other_stream": [
                {
                    "count": 3,
                    "@library": LIB,
                    "ok": True,
                    "@time": 17953733883631210,
                    "missing": None,
                    "@id": "client-supplied-id",
                    "sourceId": "wire-source",
                }
            ],
        },
    }
    r = kronos_post(session, collector, "/1.0/events/put", body)
    assert r.status_code == 200
    reply = r.json()
    assert reply["wire.stream"] == {"memory": {"num_inserted": 3}}
    assert reply["other_stream"] == {"memory": {"num_inserted": 1}}
    assert reply["@success"] is False
    assert reply["@errors"] == ["InvalidEventTime(1456485005.659,)"]
    assert re.fullmatch(r"\d+\.\d+ms", reply["@took"])
    assert "Content-Type" not in collector.requests(service="kronos")[-1]["headers"]
    rows = collector.events(service="kronos")
    assert {r["namespace"] for r in rows} == {"wire_ns"}
    assert [r["channel"] for r in rows] == ["wire.stream"] * 3 + ["other_stream"]
    assert rows[-1]["source"] == "wire-source"
    for row in rows:
        event_id = uuid.UUID(row["event"]["@id"])
        assert event_id.version == 1
        assert event_id.time == row["event"]["@time"] + UUID_EPOCH_OFFSET
    assert rows[-1]["event"]["@id"] != "client-supplied-id"


def test_kronos_put_all_good_and_stamps_now(collector, session):
    body = {"events": {"s": [{"a": 1}, {"@time": 0}]}}
    reply = kronos_post(session, collector, "/1.0/events/put", body).json()
    assert reply["s"] == {"memory": {"num_inserted": 2}}
    assert reply["@success"] is True and "@errors" not in reply
    stamped, zero = (r["event"] for r in collector.events())
    assert isinstance(stamped["@time"], int) and stamped["@time"] > 14e15  # after 2016
    assert zero["@time"] == 0
    assert {r["namespace"] for r in collector.events()} == {"kronos"}


def test_kronos_invalid_json(collector, session):
    for body in (b"{nope", b"\xff", b""):
        r = kronos_post(session, collector, "/1.0/events/put", body)
        assert r.status_code == 400
        reply = r.json()
        assert reply["@errors"] == ["Request body must be valid JSON."]
        assert reply["@success"] is False and reply["@took"].endswith("ms")


def test_kronos_stream_names_and_times(collector, session):
    body = {
        "events": {
            "bad stream": [{"@time": 1}],
            "x" * 2049: [{"@time": 1}],
            "x" * 2048: [{"@time": 1}],
            "ok-Name_1.v2": [
                {"@time": 1},
                {"@time": True},
                {"@time": "2016-02-26"},
                {"@time": None},
                {"@time": 10**40},
                {"@time": -(10**18)},
            ],
            "trailing\n": [{"@time": 1}],
        }
    }
    reply = kronos_post(session, collector, "/1.0/events/put", body).json()
    assert reply["@success"] is False
    assert "InvalidStreamName('bad stream',)" in reply["@errors"]
    assert reply["x" * 2048] == {"memory": {"num_inserted": 1}}
    assert "x" * 2049 not in reply and "bad stream" not in reply
    assert reply["ok-Name_1.v2"] == {"memory": {"num_inserted": 1}}
    time_errors = [e for e in reply["@errors"] if e.startswith("InvalidEventTime(")]
    assert len(time_errors) == 5
    assert "InvalidEventTime(True,)" in time_errors
    assert len([e for e in reply["@errors"] if e.startswith("InvalidStreamName(")]) == 3
    assert collector.count("kronos") == 2


def test_kronos_put_bad_shapes(collector, session):
    for body in ([], {"events": []}, {"namespace": 5, "events": {}}, {}):
        r = kronos_post(session, collector, "/1.0/events/put", body)
        assert r.status_code == 400
        assert r.json()["@success"] is False
    reply = kronos_post(session, collector, "/1.0/events/put", {"events": {"s": {"a": 1}}}).json()
    assert reply["@success"] is False and reply["@errors"]
    reply = kronos_post(session, collector, "/1.0/events/put", {"events": {"s": [1, {}]}}).json()
    assert reply["s"] == {"memory": {"num_inserted": 1}}


def kronos_lines(response):
    assert response.status_code == 200
    text = response.content.decode()
    assert text == "" or text.endswith("\r\n")
    return [json.loads(line) for line in text.split("\r\n") if line]


def test_kronos_read_side_round_trip(collector, session):
    put = {"namespace": "ns1", "events": {"s": [{"@time": t, "n": t} for t in (300, 100, 200)]}}
    assert kronos_post(session, collector, "/1.0/events/put", put).json()["@success"]
    other = {"namespace": "ns2", "events": {"s": [{"@time": 150}], "t": [{"@time": 1}]}}
    assert kronos_post(session, collector, "/1.0/events/put", other).json()["@success"]

    def get(**query):
        query.setdefault("namespace", "ns1")
        query.setdefault("stream", "s")
        return kronos_lines(kronos_post(session, collector, "/1.0/events/get", query))

    events = get(start_time=100, end_time=300)
    assert [e["n"] for e in events] == [100, 200, 300]  # both bounds inclusive
    assert all("@id" in e and "@time" in e for e in events)
    assert [e["n"] for e in get(start_time=200, end_time=200)] == [200]
    assert [e["n"] for e in get(start_time=101, end_time=299)] == [200]
    assert [e["n"] for e in get(start_time=0, end_time=1000, order="descending")] == [300, 200, 100]
    assert [e["n"] for e in get(start_time=0, end_time=1000, limit=2)] == [100, 200]
    assert get(start_time=0, end_time=1000, limit=0) == []
    assert [e["n"] for e in get(start_id=events[0]["@id"], end_time=1000)] == [200, 300]
    assert get(start_id=events[2]["@id"], end_time=1000) == []
    assert [e["@time"] for e in get(namespace="ns2", start_time=0, end_time=1000)] == [150]
    assert get(namespace=None, start_time=0, end_time=1000) == []  # default namespace "kronos"

    r = kronos_post(session, collector, "/1.0/streams", {"namespace": "ns2"})
    assert r.status_code == 200 and r.content == b"s\r\nt\r\n"
    assert kronos_post(session, collector, "/1.0/streams", {"namespace": "ns1"}).content == b"s\r\n"
    assert kronos_post(session, collector, "/1.0/streams", {}).content == b""

    r = kronos_post(
        session,
        collector,
        "/1.0/events/delete",
        {"namespace": "ns1", "stream": "s", "start_id": events[1]["@id"], "end_time": 1000},
    )
    assert r.status_code == 200
    reply = r.json()
    assert reply["s"] == {"memory": {"num_deleted": 2}}  # start_id is inclusive for delete
    assert reply["@success"] is True
    assert [e["n"] for e in get(start_time=0, end_time=1000)] == [100]
    assert collector.count("kronos") == 3


@pytest.mark.parametrize(
    "query",
    [
        {"stream": "bad name", "start_time": 0, "end_time": 1},
        {"start_time": 0, "end_time": 1},
        {"stream": "s", "end_time": 1},
        {"stream": "s", "start_time": 0},
        {"stream": "s", "start_id": "not-a-uuid", "end_time": 1},
        {"stream": "s", "start_time": 0, "end_time": 1, "order": "sideways"},
        {"stream": "s", "start_time": 0, "end_time": 1, "limit": "ten"},
        {"stream": "s", "start_time": 0.5, "end_time": 1},
    ],
)
def test_kronos_get_rejects(collector, session, query):
    paths = ["/1.0/events/get"]
    if "order" not in query and "limit" not in query:  # delete ignores those
        paths.append("/1.0/events/delete")
    for path in paths:
        r = kronos_post(session, collector, path, query)
        assert r.status_code == 400
        reply = r.json()
        assert reply["@success"] is False and reply["@errors"]


def test_kronos_invalid_stream_name_error(collector, session):
    query = {"stream": "bad name", "start_time": 0, "end_time": 1}
    reply = kronos_post(session, collector, "/1.0/events/get", query).json()
    assert reply["@errors"] == ["InvalidStreamName('bad name',)"]


def test_kronos_index_and_methods(collector, session):
    r = session.get(collector.url + "/1.0/index")
    assert r.status_code == 200 and r.json()["@success"] is True
    assert session.get(collector.url + "/1.0/events/put").status_code == 405
    assert session.post(collector.url + "/1.0/index", data=b"{}").status_code == 405


# ----------------------------------------------------------------------------- generic JSON


def test_json_shapes(collector, session):
    url = collector.url + "/json"
    r = session.post(url, json=[{"sourceId": "a", "msg": 1}, {"msg": 2}])
    assert r.status_code == 200 and r.json() == {"accepted": 2}
    assert session.post(url, json={"msg": 3}).json() == {"accepted": 1}
    ndjson = b'{"msg": 4}\n\n{"msg": 5, "sourceId": "b"}\n'
    headers = {"Content-Type": "application/x-ndjson"}
    assert session.post(url, data=ndjson, headers=headers).json() == {"accepted": 2}
    gz = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert session.post(url, data=gzip.compress(b'[{"msg": 6}]'), headers=gz).json() == {
        "accepted": 1
    }
    r = session.post(collector.url + "/json/my%20app", json=[{"msg": 7}])
    assert r.json() == {"accepted": 1}
    rows = collector.events(service="json")
    assert [r["event"]["msg"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["source"] for r in rows] == ["a", None, None, None, "b", None, None]
    assert rows[-1]["channel"] == "my app" and rows[0]["channel"] is None


@pytest.mark.parametrize(
    "body, headers, status",
    [
        (b"[]", {"Content-Type": "text/plain"}, 415),
        (b"[]", {}, 415),
        (b"[]", {"Content-Type": "application/json", "Content-Encoding": "br"}, 415),
        (b"[1, 2]", {"Content-Type": "application/json"}, 400),
        (b"[{]", {"Content-Type": "application/json"}, 400),
        (b'{"a": 1}\n[2]\n', {"Content-Type": "application/json"}, 400),
        (b"\xc3\x28", {"Content-Type": "application/json"}, 400),
        (b"oops", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 400),
    ],
)
def test_json_rejects(collector, session, body, headers, status):
    r = session.post(collector.url + "/json", data=body, headers=headers)
    assert r.status_code == status
    assert r.json()["status"] == "ERROR"
    assert collector.count() == 0


def test_chunked_body(collector, session):
    def chunks():
        yield b'[{"msg": "chunk'
        yield b'ed"}, {"msg": 2}]'

    r = session.post(
        collector.url + "/json", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200 and r.json() == {"accepted": 2}
    assert collector.requests()[-1]["body"] == b'[{"msg": "chunked"}, {"msg": 2}]'


# ----------------------------------------------------------------------------- framing


def test_binds_loopback_by_default():
    with Collector() as c:
        assert c.url.startswith("http://127.0.0.1:")
        assert not c.url.endswith("/")
        assert urlsplit(c.url).hostname == "127.0.0.1"


def test_oversized_body_refused_without_reading():
    with Collector(max_body_bytes=1024) as c:
        head = (
            b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n["
        )
        status, head_text, _ = raw_exchange(c.url, head)
        assert status == 413
        assert "Connection: close" in head_text
        r = requests.post(
            c.url + "/json",
            data=b"[" + b" " * 5000 + b"]",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413
        assert r.json()["status"] == "ERROR"

        def chunks():
            for _ in range(4):
                yield b" " * 600

        r = requests.post(
            c.url + "/json", data=chunks(), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413
        assert requests.get(c.url + "/v1/api-status").status_code == 200
        assert c.count() == 0


def test_oversized_with_expect_continue():
    with Collector(max_body_bytes=1024) as c:
        head = (
            b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        )
        status, _, _ = raw_exchange(c.url, head)
        assert status == 413


@pytest.mark.parametrize(
    "lengths, status",
    [
        ([], 411),
        (["abc"], 400),
        (["-1"], 400),
        (["1e3"], 400),
        (["\u00b2".encode("latin-1").decode("latin-1")], 400),
        (["2", "3"], 400),
    ],
)
def test_content_length_framing(collector, lengths, status):
    head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "".join(f"Content-Length: {v}\r\n" for v in lengths)
    got, _, _ = raw_exchange(collector.url, (head + "\r\n[]").encode("latin-1"))
    assert got == status
    assert requests.get(collector.url + "/v1/api-status").status_code == 200


def test_transfer_encoding_errors(collector):
    for head in (
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
    ):
        data = f"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\n"
        status, _, _ = raw_exchange(collector.url, data.encode() + b"3\r\n[]]\r\n0\r\n\r\n")
        assert status == 400
    bad_chunk = b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    status, _, _ = raw_exchange(collector.url, bad_chunk)
    assert status == 400


def test_truncated_body(collector):
    parts = urlsplit(collector.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n[{}]"
        )
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        for _ in range(100):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert collector.count() == 0


def test_stop_cuts_idle_keep_alive_connections():
    c = Collector().start()
    parts = urlsplit(c.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", "/v1/api-status")
        conn.getresponse().read()
        c.stop()
        conn.auto_open = 0  # no silent reconnect: the same socket must be dead
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/v1/api-status")
            conn.getresponse().read()
    finally:
        conn.close()
        c.stop()


def test_keep_alive_reuses_connection(collector):
    host, port = urlsplit(collector.url).hostname, urlsplit(collector.url).port
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        sockets = set()
        for i in range(3):
            body = json.dumps([{"msg": i}])
            conn.request("POST", "/json", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.version == 11
            assert not resp.will_close
            resp.read()
            sockets.add(id(conn.sock))
        conn.request("GET", "/nope")  # an error reply keeps the connection too
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404 and not resp.will_close
        sockets.add(id(conn.sock))
        assert len(sockets) == 1
    finally:
        conn.close()


def test_unexpected_error_is_500_and_server_survives(tmp_path, session):
    """A store that fails for real (its table renamed behind the collector's back)."""
    path = str(tmp_path / "broken.db")
    with Collector(db=path) as collector:
        with sqlite3.connect(path) as other:
            other.execute("ALTER TABLE events RENAME TO elsewhere")
        r = session.post(collector.url + "/json", json=[{"a": 1}])
        assert r.status_code == 500
        assert r.json() == {"status": "ERROR", "message": "internal error: OperationalError"}
        with sqlite3.connect(path) as other:
            other.execute("ALTER TABLE elsewhere RENAME TO events")
        assert session.post(collector.url + "/json", json=[{"a": 1}]).json() == {"accepted": 1}


ROUTES = [
    ("POST", "/v1/events"),
    ("POST", "/api/buckets"),
    ("POST", "/api/events"),
    ("POST", PANOPLY_PATH),
    ("POST", "/1.0/events/put"),
    ("POST", "/1.0/events/get"),
    ("POST", "/1.0/events/delete"),
    ("POST", "/1.0/streams"),
    ("POST", "/json"),
]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain", None]


def test_garbage_never_crashes():
    """Arbitrary bodies, headers and encodings on every route: never a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
    bodies = st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(
                ["Action", "MessageBody", "MessageAttribute.1.Name", "events", "stream"]
            ),
            st.text(max_size=30),
        ).map(lambda d: urlencode(d).encode()),
    )

    with Collector() as c, requests.Session() as s:

        @settings(
            max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(
            route=st.sampled_from(ROUTES),
            body=bodies,
            content_type=st.sampled_from(CONTENT_TYPES),
            gzip_it=st.booleans(),
            extra=st.dictionaries(
                st.sampled_from(
                    ["X-IS-AccessKey", "X-IS-BucketKey", "X-Samsara-publishedTimestamp"]
                ),
                st.from_regex(r"[A-Za-z0-9_+-]{0,12}", fullmatch=True),
            ),
        )
        def check(route, body, content_type, gzip_it, extra):
            headers = dict(extra)
            if content_type:
                headers["Content-Type"] = content_type
            if gzip_it:
                headers["Content-Encoding"] = "gzip"
            r = s.request(route[0], c.url + route[1], data=body, headers=headers, timeout=10)
            assert r.status_code < 500, (route, body, headers, r.text)

        check()
        assert s.get(c.url + "/v1/api-status").status_code == 200


def test_lone_surrogates_are_storable(collector, session):
    body = b'[{"eventName": "\\ud800", "sourceId": "\\udfff", "timestamp": 1, "x": "\\ud83d"}]'
    r = session.post(collector.url + "/v1/events", data=body, headers=samsara_headers("identity"))
    assert r.status_code == 202
    assert collector.events()[0]["event"]["x"] == "\ud83d"


def test_no_per_request_stderr_logging(collector, session, capfd):
    session.get(collector.url + "/v1/api-status")
    session.post(collector.url + "/json", data=b"[", headers={"Content-Type": "application/json"})
    session.get(collector.url + "/missing")
    captured = capfd.readouterr()
    assert captured.err == ""


def test_method_not_allowed_everywhere(collector, session):
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        r = session.request(method, collector.url + "/api/events", data=b"{}")
        assert r.status_code == 405
        assert r.json()["status"] == "ERROR"
    assert session.head(collector.url + "/v1/events").status_code == 405


def test_concurrent_writers():
    with Collector() as c, ThreadPoolExecutor(max_workers=8) as pool:

        def post(i):
            with requests.Session() as s:
                for j in range(10):
                    body = [{"msg": f"{i}-{j}", "sourceId": f"w{i}"}]
                    assert s.post(c.url + "/json", json=body).status_code == 200

        list(pool.map(post, range(8)))
        assert c.count("json") == 80
        assert len(c.events(source="w3")) == 10


def test_api_paging_requests_log_and_stop(tmp_path):
    path = tmp_path / "collector.db"
    c = Collector(db=path).start()
    with requests.Session() as s:
        for i in range(5):
            s.post(c.url + "/json", json={"n": i})
    first = c.events(limit=2)
    assert [e["event"]["n"] for e in first] == [0, 1]
    rest = c.events(after_id=first[-1]["id"])
    assert [e["event"]["n"] for e in rest] == [2, 3, 4]
    assert set(rest[0]) >= {"id", "service", "source", "channel", "received_at", "event"}
    entry = c.requests("json")[0]
    assert set(entry) == {"service", "method", "path", "status", "headers", "body"}
    assert isinstance(entry["headers"], dict) and isinstance(entry["body"], bytes)
    url = c.url
    c.stop()
    c.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v1/api-status", timeout=5)
    with Collector(db=str(path)) as again:
        assert again.count() == 5


def test_requests_log_is_bounded_in_count():
    with Collector(request_log_size=3) as c, requests.Session() as s:
        for _ in range(5):
            s.get(c.url + "/v1/api-status")
        assert len(c.requests()) == 3


def test_requests_log_is_bounded_in_bytes():
    """issue 15: the in-memory request log is bounded in bytes, not only in count (30 x 8 MB
    requests used to keep 240 MB); the newest request is always kept."""
    with Collector(request_log_bytes=100_000) as c, requests.Session() as s:
        for i in range(10):
            s.post(c.url + "/json", json=[{"n": i, "pad": "x" * 30_000}])
        kept = c.requests()
        assert 1 <= len(kept) <= 3
        assert sum(len(e["body"]) for e in kept) <= 100_000
        assert json.loads(kept[-1]["body"])[0]["n"] == 9
        huge = [{"pad": "y" * 200_000}]
        assert s.post(c.url + "/json", json=huge).status_code == 200
        assert [json.loads(e["body"]) for e in c.requests()] == [huge]
        assert c.count("json") == 11  # the log forgets requests, never stored events


# ----------------------------------------------------------------------------- CLI


def cli(*argv):
    parser = argparse.ArgumentParser(prog="loghandlers")
    sub = parser.add_subparsers(dest="command")
    add_collect_parser(sub)
    add_events_parser(sub)
    return parser.parse_args(argv)


@pytest.fixture
def filled_db(tmp_path):
    path = str(tmp_path / "events.db")
    with Collector(db=path) as c, requests.Session() as s:
        s.post(
            c.url + "/v1/events",
            data=json.dumps(SAMSARA_EVENTS),
            headers=samsara_headers("identity"),
        )
        s.post(c.url + "/api/events", json=IS_EVENTS[:1], headers=IS_HEADERS)
        s.post(c.url + "/json", json={"message": "line one\nline two", "sourceId": "w" * 40})
        kronos_post(s, c, "/1.0/events/put", {"namespace": "ns", "events": {"st": [{"a": 1}]}})
    return path


def test_cli_events_table(filled_db):
    out = io.StringIO()
    assert run_events(cli("events", "--db", filled_db), out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    header = lines[0]
    assert header.split() == ["ID", "RECEIVED", "SERVICE", "SOURCE", "CHANNEL", "EVENT"]
    col = header.index("SERVICE")
    assert [line[col:].split()[0] for line in lines[1:]] == [
        "samsara",
        "samsara",
        "initialstate",
        "json",
        "kronos",
    ]
    assert "hello wire" in lines[1]
    assert "custom_ts_float = x" in lines[3]
    assert "line one line two" in lines[4] and "..." in lines[4]  # long source truncated
    assert "ns/st" in lines[5]


def test_cli_events_filters_and_json(filled_db):
    out = io.StringIO()
    args = cli("events", "--db", filled_db, "--service", "samsara", "--json", "--limit", "1")
    assert run_events(args, out=out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == 1
    assert rows[0]["service"] == "samsara" and rows[0]["source"] == "other-source"
    assert rows[0]["event"]["eventName"] == "log.custom_ts"
    out = io.StringIO()
    run_events(cli("events", "--db", filled_db, "--source", "wire-source", "--json"), out=out)
    assert [json.loads(x)["channel"] for x in out.getvalue().splitlines()] == ["log.info"]


def test_cli_events_follow(filled_db):
    out = io.StringIO()
    stop = threading.Event()
    args = cli("events", "--db", filled_db, "--follow", "--json", "--service", "json")
    result = []
    t = threading.Thread(target=lambda: result.append(run_events(args, out=out, stop=stop)))
    t.start()
    try:
        with Collector(db=filled_db) as c:
            requests.post(c.url + "/json", json={"message": "fresh"})
            for _ in range(100):
                if "fresh" in out.getvalue():
                    break
                stop.wait(0.05)
    finally:
        stop.set()
        t.join(timeout=10)
    assert not t.is_alive() and result == [0]
    messages = [json.loads(x)["event"]["message"] for x in out.getvalue().splitlines()]
    assert messages == ["line one\nline two", "fresh"]


def test_cli_events_missing_db(tmp_path, capsys):
    assert run_events(cli("events", "--db", str(tmp_path / "nope.db"))) == 1
    assert "no collector database" in capsys.readouterr().err


def test_cli_default_db_is_one_per_user_file(monkeypatch, tmp_path):
    """issue 15: `collect` and `events` agree on one per-user database from any directory."""
    monkeypatch.delenv("LOGHANDLERS_COLLECTOR_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = str(tmp_path / "data" / "loghandlers" / "collector.db")
    monkeypatch.chdir(tmp_path)
    assert default_db() == expected
    monkeypatch.chdir(ROOT)
    assert default_db() == expected
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db() == str(
        tmp_path / "home" / ".local" / "share" / "loghandlers" / "collector.db"
    )
    monkeypatch.setenv("LOGHANDLERS_COLLECTOR_DB", "/tmp/x.db")
    assert default_db() == "/tmp/x.db"
    args = cli("collect")
    assert (args.host, args.port, args.db) == ("127.0.0.1", 8787, None)


def test_cli_events_missing_default_db_says_where_it_looked(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("LOGHANDLERS_COLLECTOR_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert run_events(cli("events")) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "loghandlers" / "collector.db") in err
    assert "loghandlers collect" in err and "--db" in err


def test_summary_shapes():
    assert summary("initialstate", {"key": "t", "value": {"a": 1}}) == 't = {"a":1}'
    assert summary("kronos", {"@id": "x", "@library": {}, "a": 1}) == '{"a":1}'
    assert summary("json", {"msg": "a\tb"}) == "a b"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery")
def test_cli_collect_serves_until_ctrl_c(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("LOGHANDLERS_COLLECTOR_DB", None)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loghandlers", "collect", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(tmp_path / "a"),
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        lines = []
        for _ in range(20):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        url = re.search(r"http://127\.0\.0\.1:\d+", lines[0]).group(0)
        text = "".join(lines)
        for path in ("/v1/events", "/api/events", "/1.0/events/put", "/json"):
            assert url + path in text
        assert requests.post(url + "/json", json={"message": "via cli"}).status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in out
    # `events` run from another directory reads the same default database (issue 15).
    shown = subprocess.run(
        [sys.executable, "-m", "loghandlers", "events", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path / "b"),
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["event"]["message"] == "via cli"
