"""PanoplyHandler on the wire: docs/protocols.md section 3."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import pytest

from loghandlers import PanoplyHandler, __version__
from loghandlers.service import iso_utc
from tests.helpers import attach, spool_text
from tests.loopback import status

API_KEY = "acct1/RAND1xyz"
UUID = "6f1c2e9a-0000-4000-8000-000000000001"
CAPTURED_SECRET = base64.b64encode(f"RAND2abc/{UUID}/123456789012/us-east-1".encode()).decode()
# decodes to "RAND2>>>/...": its base64 holds a "+", which the official SDK garbles
PLUS_SECRET = base64.b64encode(f"RAND2>>>/{UUID}/123456789012/us-east-1".encode()).decode()
QUEUE_PATH = "/123456789012/sdk-acct1-RAND2abc"
FIELD_ORDER = [
    "Action",
    "MessageBody",
    "MessageAttribute.1.Name",
    "MessageAttribute.1.Value.DataType",
    "MessageAttribute.1.Value.StringValue",
    "MessageAttribute.2.Name",
    "MessageAttribute.2.Value.DataType",
    "MessageAttribute.2.Value.StringValue",
    "MessageAttribute.3.Name",
    "MessageAttribute.3.Value.DataType",
    "MessageAttribute.3.Value.StringValue",
]
SQS_OK = status(200, {"Content-Type": "text/xml"}, b"<SendMessageResponse/>")


@pytest.fixture
def server_default():
    return SQS_OK


@pytest.fixture
def handler_class():
    return PanoplyHandler


def form(req) -> list:
    return parse_qsl(req.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)


def records(req) -> list:
    body = dict(form(req))["MessageBody"]
    assert body.endswith("\n\n")
    return [json.loads(chunk) for chunk in body[:-2].split("\n\n")]


def test_queue_url_is_derived_from_the_credentials(make):
    handler = make(api_key=API_KEY, api_secret=CAPTURED_SECRET)
    assert handler.service.endpoint() == "https://sqs.us-east-1.amazonaws.com" + QUEUE_PATH


def test_send_message_form_matches_the_official_sdk(server, make):
    handler = make(
        url=server.url + QUEUE_PATH, api_key=API_KEY, api_secret=PLUS_SECRET, source_id="src"
    )
    log, caught = attach(handler, "app.pan")
    data = {
        "count": 3,
        "ratio": 0.5,
        "missing": None,
        "nested": {"a": {"b": [1, "x", False]}},
        "unicode": "h\u00e9llo \u2603",
        "ok": True,
        "special": "a&b=c+d %/?#;",
    }
    log.info("hello wire", extra=data)
    log.info("second", extra={"ts": 1456485005.659})
    log.info("third", extra={"table": "other_table", "id": 1})
    assert handler.flush(timeout=5)
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", QUEUE_PATH)
    assert req.header("Content-Type") == "application/x-www-form-urlencoded"
    assert req.header("Content-Encoding") is None
    assert int(req.header("Content-Length")) == len(req.body)
    fields = form(req)
    assert [name for name, _ in fields] == FIELD_ORDER
    values = dict(fields)
    assert values["Action"] == "SendMessage"
    assert [values[f"MessageAttribute.{i}.Name"] for i in (1, 2, 3)] == ["key", "secret", "sdk"]
    assert {values[f"MessageAttribute.{i}.Value.DataType"] for i in (1, 2, 3)} == {"String"}
    assert values["MessageAttribute.1.Value.StringValue"] == API_KEY
    assert values["MessageAttribute.2.Value.StringValue"] == PLUS_SECRET  # the "+" survived
    assert values["MessageAttribute.3.Value.StringValue"] == f"loghandlers-{__version__}"
    assert b"%2B" in req.body and b"\n" not in req.body
    one, two, three = caught.records
    base = {"level": "INFO", "logger": "app.pan"}
    expected = [
        {"timestamp": iso_utc(one.created), "message": "hello wire", **base, **data},
        {"timestamp": iso_utc(two.created), "message": "second", **base, "ts": 1456485005.659},
        {"timestamp": iso_utc(three.created), "message": "third", **base, "id": 1},
    ]
    tables = ["logs", "logs", "other_table"]
    for record, table in zip(expected, tables):
        record.update(sourceId="src", __table=table)
    # what the official SDK puts in MessageBody for the same dicts: json.dumps + "\n\n" each
    assert values["MessageBody"] == "".join(json.dumps(r) + "\n\n" for r in expected)


def test_requests_stay_under_the_sqs_limit(server, make):
    handler = make(url=server.url + QUEUE_PATH, api_key=API_KEY, api_secret=CAPTURED_SECRET)
    log, _ = attach(handler)
    filler = "word & more/stuff " * 560  # ~10 KB, grows when form-encoded
    for i in range(30):
        log.info("%d %s", i, filler)
    assert handler.flush(timeout=10)
    assert len(server.requests) >= 2
    assert all(len(r.body) <= 262_144 for r in server.requests)
    sent = [int(rec["message"].split()[0]) for r in server.requests for rec in records(r)]
    assert sent == list(range(30))
    assert handler.stats()["sent"] == 30


def test_one_giant_record_is_cut_to_fit(server, make):
    handler = make(url=server.url + QUEUE_PATH, api_key=API_KEY, api_secret=CAPTURED_SECRET)
    log, _ = attach(handler)
    log.info("x" * 400_000)
    assert handler.flush(timeout=10)
    (req,) = server.requests
    assert len(req.body) <= 262_144
    assert handler.stats()["truncated"] == 1


@pytest.mark.parametrize(
    "api_key, api_secret, option",
    [
        ("no-slash", CAPTURED_SECRET, "api_key"),
        ("/RAND1", CAPTURED_SECRET, "api_key"),
        (API_KEY, "not base64!", "api_secret"),
        (API_KEY, base64.b64encode(b"three/parts/only").decode(), "api_secret"),
        (API_KEY, base64.b64encode(b"a/b/c/bad region").decode(), "api_secret"),
        (API_KEY, base64.b64encode(b"a//c/us-east-1").decode(), "api_secret"),
        (API_KEY, "", "api_secret"),
    ],
)
def test_malformed_credentials_name_the_option_not_the_secret(api_key, api_secret, option):
    with pytest.raises(ValueError) as info:
        PanoplyHandler(api_key=api_key, api_secret=api_secret or None, spool_dir="")
    message = str(info.value)
    assert option in message
    assert not api_secret or api_secret not in message


@pytest.mark.parametrize(
    "http_status, code",
    [(403, "AccessDenied"), (400, "AWS.SimpleQueueService.NonExistentQueue")],
)
def test_refused_credentials_or_queue_hold_and_spool(
    server, make, tmp_path, capsys, http_status, code
):
    xml = f"<ErrorResponse><Error><Code>{code}</Code></Error></ErrorResponse>".encode()
    server.push(status(http_status, {"Content-Type": "text/xml"}, xml))
    handler = make(url=server.url + QUEUE_PATH, api_key=API_KEY, api_secret=PLUS_SECRET)
    log, _ = attach(handler)
    log.info("keep me")
    assert handler.flush(timeout=5)
    assert len(server.requests) == 1
    assert handler.stats()["spooled"] == 1
    spooled = spool_text(tmp_path / "spool")
    assert "keep me" in spooled and PLUS_SECRET not in spooled
    assert PLUS_SECRET not in capsys.readouterr().err


def test_throttling_and_5xx_are_retried(server, make):
    throttled = b"<ErrorResponse><Error><Code>RequestThrottled</Code></Error></ErrorResponse>"
    server.push(status(400, {}, throttled), status(503, {}, b""))
    handler = make(
        url=server.url + QUEUE_PATH, api_key=API_KEY, api_secret=CAPTURED_SECRET, retries=2
    )
    log, _ = attach(handler)
    log.info("persist")
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(3)
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1
    assert handler.stats()["sent"] == 1


def test_other_400_rejects(server, make):
    bad = b"<ErrorResponse><Error><Code>InvalidParameterValue</Code></Error></ErrorResponse>"
    server.push(status(400, {}, bad))
    handler = make(url=server.url + QUEUE_PATH, api_key=API_KEY, api_secret=CAPTURED_SECRET)
    log, _ = attach(handler)
    log.info("no")
    assert handler.flush(timeout=5)
    assert len(server.requests) == 1 and handler.stats()["rejected"] == 1
