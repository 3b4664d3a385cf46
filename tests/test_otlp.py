"""OTLPHandler: every body we send is decoded by the official protobuf definitions
(opentelemetry-proto's ``ExportLogsServiceRequest`` through ``json_format.Parse``, which
refuses unknown or mistyped fields) on a real loopback receiver (issue 13)."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import socket

import pytest

pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2")

from google.protobuf import json_format  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: E402
    ExportLogsServiceRequest,
)

from loghandlers import OTLPHandler  # noqa: E402
from loghandlers.services.otlp import severity_number  # noqa: E402
from tests.loopback import Answer, LoopbackServer, refuse  # noqa: E402

TOKEN = "otlp-5ecr3t+Tok/9Zq"


def otlp_receiver(token: str | None = None, reply=None):
    """A collector's OTLP/HTTP JSON logs endpoint: POST /v1/logs, application/json, the
    body an ExportLogsServiceRequest (decoded strictly); ``reply(request)`` may answer
    instead once the request is known to be well-formed."""

    def answer(request):
        # every body we send is decoded, refused or not: a malformed one fails the test
        decoded = json_format.Parse(request.decoded(), ExportLogsServiceRequest())
        if token is not None and request.header("Authorization") != f"Bearer {token}":
            return refuse(401, "unauthenticated")
        if request.path != "/v1/logs" or request.method != "POST":
            return refuse(404, f"no {request.method} {request.path}")
        if request.header("Content-Type") != "application/json":
            return refuse(415, "want application/json")
        records = [
            (scope.scope.name, record)
            for resource in decoded.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]
        if reply is not None:
            custom = reply(request)
            if custom is not None:
                custom.records = records if 200 <= custom.status < 300 else []
                return custom
        return Answer(200, b"{}", {"Content-Type": "application/json"}, records)

    return answer


def quiet_logger(name: str) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(1)
    for old in list(log.handlers):
        log.removeHandler(old)
    return log


def attributes(record) -> dict:
    return {kv.key: json_format.MessageToDict(kv.value) for kv in record.attributes}


def make(receiver, tmp_path, **options) -> OTLPHandler:
    options.setdefault("spool_dir", str(tmp_path / "spool"))
    options.setdefault("flush_interval", 3600)
    return OTLPHandler(url=receiver.url, **options)


# ----------------------------------------------------------------------------- the wire
def test_a_batch_is_one_resource_with_one_scope_per_logger(tmp_path):
    """issue 13: resource attributes (service.name, host.name, process.pid, the
    resource_attributes option), one scopeLogs per logger name in first-seen order."""
    with LoopbackServer(respond=otlp_receiver()) as receiver:
        handler = make(
            receiver,
            tmp_path,
            service_name="checkout",
            resource_attributes={"deployment.environment": "test", "service.version": "1.2"},
        )
        a, b = quiet_logger("otlp.a"), quiet_logger("otlp.b")
        for log in (a, b):
            log.addHandler(handler)
        try:
            a.info("a1")
            b.info("b1")
            a.info("a2")
            assert handler.flush(timeout=20)
        finally:
            for log in (a, b):
                log.removeHandler(handler)
            handler.close(timeout=2)
        (request,) = receiver.requests
        decoded = json_format.Parse(request.decoded(), ExportLogsServiceRequest())
        (resource_logs,) = decoded.resource_logs
        resource = {
            kv.key: json_format.MessageToDict(kv.value) for kv in resource_logs.resource.attributes
        }
        assert resource["service.name"] == {"stringValue": "checkout"}
        assert resource["host.name"] == {"stringValue": socket.gethostname()}
        assert resource["process.pid"] == {"intValue": str(os.getpid())}
        assert resource["deployment.environment"] == {"stringValue": "test"}
        assert [s.scope.name for s in resource_logs.scope_logs] == ["otlp.a", "otlp.b"]
        bodies = [[r.body.string_value for r in s.log_records] for s in resource_logs.scope_logs]
        assert bodies == [["a1", "a2"], ["b1"]]


def test_int64_fields_are_decimal_strings_and_enums_integers(tmp_path):
    """issue 13: the protobuf JSON mapping as OTLP uses it: timeUnixNano,
    observedTimeUnixNano and intValue as strings, severityNumber an integer,
    lowerCamelCase keys."""
    with LoopbackServer(respond=otlp_receiver()) as receiver:
        handler = make(receiver, tmp_path)
        log = quiet_logger("otlp.types")
        log.addHandler(handler)
        try:
            log.warning("typed", extra={"count": 3})
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        raw = receiver.requests[0].json()
        record = raw["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        assert isinstance(record["timeUnixNano"], str) and record["timeUnixNano"].isdigit()
        assert isinstance(record["observedTimeUnixNano"], str)
        assert int(record["observedTimeUnixNano"]) >= int(record["timeUnixNano"])
        assert record["severityNumber"] == 13 and record["severityText"] == "WARN"
        count = [a for a in record["attributes"] if a["key"] == "count"][0]
        assert count["value"] == {"intValue": "3"}
        assert set(record) <= {
            "timeUnixNano",
            "observedTimeUnixNano",
            "severityNumber",
            "severityText",
            "body",
            "attributes",
            "traceId",
            "spanId",
            "flags",
            "droppedAttributesCount",
            "eventName",
        }


@pytest.mark.parametrize(
    "levelno, number, text",
    [
        (5, 0, "Level 5"),
        (10, 5, "DEBUG"),
        (15, 8, "Level 15"),
        (20, 9, "INFO"),
        (21, 10, "Level 21"),
        (30, 13, "WARN"),
        (40, 17, "ERROR"),
        (42, 19, "Level 42"),
        (50, 21, "FATAL"),
        (53, 24, "Level 53"),
        (60, 24, "Level 60"),
    ],
)
def test_severity_follows_the_data_models_mapping_of_python_levels(levelno, number, text, tmp_path):
    """issue 13: severityNumber per the logs data model (the SDK's std_to_otel) and
    severityText as the data model displays WARNING/CRITICAL."""
    assert severity_number(levelno) == number
    with LoopbackServer(respond=otlp_receiver()) as receiver:
        handler = make(receiver, tmp_path)
        log = quiet_logger("otlp.levels")
        log.addHandler(handler)
        try:
            log.log(levelno, "at %d", levelno)
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        ((_, record),) = receiver.records
        assert record.severity_number == number
        assert record.severity_text == text


def test_attributes_are_typed_and_the_exception_and_code_location_are_attributes(tmp_path):
    """issue 13: extra= values typed (string, int as string, double, bool, bytes, array,
    kvlist, empty for None); exception.type/message/stacktrace; code.* for file, line,
    function."""

    class Boom(Exception):
        pass

    with LoopbackServer(respond=otlp_receiver()) as receiver:
        handler = make(receiver, tmp_path)
        log = quiet_logger("otlp.attrs")
        log.addHandler(handler)
        extra = {
            "s": "text",
            "i": 7,
            "huge": 2**80,
            "f": 0.25,
            "nan": float("nan"),
            "yes": True,
            "raw": b"\x00\xff",
            "items": [1, "two", None],
            "nested": {"k": {"deep": [1.5]}},
            "nothing": None,
        }
        try:
            try:
                raise Boom("it broke\nbadly")
            except Boom:
                log.exception("failed", extra=extra)
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        ((_, record),) = receiver.records
        found = attributes(record)
        assert found["s"] == {"stringValue": "text"}
        assert found["i"] == {"intValue": "7"}
        assert found["huge"] == {"stringValue": str(2**80)}  # beyond int64
        assert found["f"] == {"doubleValue": 0.25}
        assert found["nan"] == {"doubleValue": "NaN"}
        assert found["yes"] == {"boolValue": True}
        # bytes: bytesValue, or their text if the snapshot already made them JSON-safe
        assert found["raw"] in ({"bytesValue": "AP8="}, {"stringValue": "\x00\\xff"})
        assert found["items"] == {
            "arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "two"}, {}]}
        }
        assert found["nested"]["kvlistValue"]["values"][0]["key"] == "k"
        assert found["nothing"] == {}
        assert found["exception.type"]["stringValue"].endswith(".Boom")
        assert found["exception.message"] == {"stringValue": "it broke\nbadly"}
        stack = found["exception.stacktrace"]["stringValue"]
        assert stack.startswith("Traceback") and "it broke" in stack
        assert found["code.file.path"] == {"stringValue": __file__}
        assert found["code.function.name"] == {
            "stringValue": "test_attributes_are_typed_and_the_exception_and_code_location_are_attributes"
        }
        assert int(found["code.line.number"]["intValue"]) > 0
        assert record.body.string_value == "failed"


def test_a_logged_dict_is_a_kvlist_body(tmp_path):
    """issue 13: ``log.info({...})`` becomes a ``kvlistValue`` body, not attributes."""
    with LoopbackServer(respond=otlp_receiver()) as receiver:
        handler = make(receiver, tmp_path)
        log = quiet_logger("otlp.dict")
        log.addHandler(handler)
        try:
            log.info({"event": "login", "user": 42}, extra={"tenant": "blue"})
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        ((_, record),) = receiver.records
        body = json_format.MessageToDict(record.body)
        assert body == {
            "kvlistValue": {
                "values": [
                    {"key": "event", "value": {"stringValue": "login"}},
                    {"key": "user", "value": {"intValue": "42"}},
                ]
            }
        }
        found = attributes(record)
        assert found["tenant"] == {"stringValue": "blue"}
        assert "event" not in found and "user" not in found


def test_trace_context_from_the_logging_instrumentation_becomes_trace_and_span_ids(tmp_path):
    """issue 13: ``otelTraceID``/``otelSpanID`` (hex) become traceId/spanId."""
    trace, span = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    with LoopbackServer(respond=otlp_receiver()) as receiver:
        handler = make(receiver, tmp_path)
        log = quiet_logger("otlp.trace")
        log.addHandler(handler)
        try:
            log.info("traced", extra={"otelTraceID": trace, "otelSpanID": span})
            log.info("untraced", extra={"otelTraceID": "0" * 32, "otelSpanID": "0" * 16})
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        raw = receiver.requests[0].json()["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        assert (raw[0]["traceId"], raw[0]["spanId"]) == (trace, span)
        assert "traceId" not in raw[1]


# ----------------------------------------------------------------------------- answers
def test_partial_success_counts_the_rejected_records_and_is_not_retried(tmp_path, capfd):
    """issue 13: 200 with partialSuccess.rejectedLogRecords: those are rejected, the rest
    sent, nothing retried, the server's errorMessage reported."""
    partial = {"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "too old"}}

    def reply(request):
        return Answer(200, json.dumps(partial).encode(), {"Content-Type": "application/json"})

    with LoopbackServer(respond=otlp_receiver(reply=reply)) as receiver:
        handler = make(receiver, tmp_path)
        log = quiet_logger("otlp.partial")
        log.addHandler(handler)
        try:
            for i in range(5):
                log.info("p%d", i)
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        assert len(receiver.requests) == 1
    stats = handler.stats()
    assert (stats["sent"], stats["rejected"], stats["retried"]) == (3, 2, 0), stats
    assert "too old" in capfd.readouterr().err


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_the_specs_retryable_statuses_are_retried(status, tmp_path):
    """issue 13: 429/502/503/504 are retried (the spec's list)."""
    answers = iter([status, status])

    def reply(request):
        code = next(answers, 200)
        return Answer(code, b'{"message": "busy"}') if code != 200 else None

    with LoopbackServer(respond=otlp_receiver(reply=reply)) as receiver:
        handler = make(receiver, tmp_path, retries=3, backoff=0.01)
        log = quiet_logger(f"otlp.retry{status}")
        log.addHandler(handler)
        try:
            log.info("eventually")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        assert len(receiver.requests) == 3
    stats = handler.stats()
    assert (stats["sent"], stats["retried"], stats["spooled"]) == (1, 2, 0)


@pytest.mark.parametrize("status", [400, 404, 500, 501])
def test_other_failures_are_not_retried(status, tmp_path, capfd):
    """issue 13: every other 4xx/5xx MUST NOT be retried (500 included, unlike the other
    handlers); the Status message is reported."""

    def reply(request):
        return Answer(status, b'{"code": 3, "message": "bad data here"}')

    with LoopbackServer(respond=otlp_receiver(reply=reply)) as rcv:
        handler = make(rcv, tmp_path, retries=3, backoff=0.01)
        log = quiet_logger(f"otlp.final{status}")
        log.addHandler(handler)
        try:
            log.info("refused")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        assert len(rcv.requests) == 1
    stats = handler.stats()
    assert (stats["sent"], stats["rejected"], stats["retried"]) == (0, 1, 0)
    assert "bad data here" in capfd.readouterr().err


def test_a_wrong_token_holds_the_records_and_a_fixed_one_delivers_them(tmp_path, capfd):
    """issue 13: token as for JSON: 401 keeps the records; the fixed handler replays."""
    with LoopbackServer(respond=otlp_receiver(token=TOKEN)) as receiver:
        spool = str(tmp_path / "spool")
        wrong = OTLPHandler(url=receiver.url, token="wr0ng-" + TOKEN, spool_dir=spool)
        log = quiet_logger("otlp.token")
        log.addHandler(wrong)
        try:
            for i in range(3):
                log.info("t%d", i)
            assert wrong.flush(timeout=20)
        finally:
            log.removeHandler(wrong)
            wrong.close(timeout=2)
        assert wrong.stats()["spooled"] == 3
        fixed = OTLPHandler(url=receiver.url + "/", token=TOKEN, spool_dir=spool)
        try:
            assert receiver.wait_for_records(3)
        finally:
            fixed.close(timeout=2)
        assert sorted(r.body.string_value for _, r in receiver.records) == ["t0", "t1", "t2"]
    assert TOKEN not in capfd.readouterr().err


def test_gzip_and_a_url_that_already_ends_in_v1_logs(tmp_path):
    """issue 13: gzip is optional (Content-Encoding: gzip); ``{url}/v1/logs`` is not
    doubled when the url names the path already."""
    with LoopbackServer(respond=otlp_receiver()) as receiver:
        handler = OTLPHandler(
            url=receiver.url + "/v1/logs",
            compression="gzip",
            spool_dir=str(tmp_path),
            flush_interval=3600,
        )
        log = quiet_logger("otlp.gzip")
        log.addHandler(handler)
        try:
            log.info("zipped")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        assert receiver.requests[0].header("Content-Encoding") == "gzip"
        assert [r.body.string_value for _, r in receiver.records] == ["zipped"]


def test_every_option_works_from_dictconfig_strings_and_the_environment(tmp_path, monkeypatch):
    """issue 13: LOGHANDLERS_OTLP_* variables and dictConfig strings, JSON text for
    resource_attributes and headers."""
    with LoopbackServer(respond=otlp_receiver(token=TOKEN)) as receiver:
        monkeypatch.setenv("LOGHANDLERS_OTLP_URL", receiver.url)
        monkeypatch.setenv("LOGHANDLERS_OTLP_TOKEN", TOKEN)
        monkeypatch.setenv("LOGHANDLERS_OTLP_SERVICE_NAME", "from-env")
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "otel": {
                        "class": "loghandlers.OTLPHandler",
                        "spool_dir": str(tmp_path),
                        "resource_attributes": '{"deployment.environment": "prod"}',
                        "headers": '{"X-Scope-OrgID": "tenant-1"}',
                        "compression": "gzip",
                        "batch_size": "10",
                    }
                },
                "loggers": {"otlp.dictconfig": {"handlers": ["otel"], "level": "INFO"}},
            }
        )
        log = logging.getLogger("otlp.dictconfig")
        log.propagate = False
        (handler,) = log.handlers
        try:
            log.info("configured")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        (request,) = receiver.requests
        assert request.header("X-Scope-OrgID") == "tenant-1"
        resource = request.json()["resourceLogs"][0]["resource"]["attributes"]
        found = {a["key"]: a["value"] for a in resource}
        assert found["service.name"] == {"stringValue": "from-env"}
        assert found["deployment.environment"] == {"stringValue": "prod"}


# ----------------------------------------------------------------------------- the collector
@pytest.fixture
def collector(tmp_path):
    from loghandlers.collector import Collector

    with Collector(db=tmp_path / "collector.db") as running:
        yield running


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_the_collector_accepts_otlp_json_and_shows_it_in_events(compression, collector, tmp_path):
    """issue 13: ``POST /v1/logs`` on the collector stores each log record as an event
    (message, severity, attributes, resource, scope), which ``events`` prints."""
    import argparse
    import io

    from loghandlers.cli_collect import run_events

    handler = OTLPHandler(
        url=collector.url,
        service_name="shop",
        compression=compression,
        spool_dir=str(tmp_path),
        flush_interval=3600,
    )
    log = quiet_logger("otlp.collector")
    log.addHandler(handler)
    try:
        log.warning("paid %s", 12, extra={"order": 7})
        log.info({"event": "login"})
        assert handler.flush(timeout=20)
    finally:
        log.removeHandler(handler)
        handler.close(timeout=2)
    assert handler.stats()["sent"] == 2
    rows = collector.events(service="otlp")
    assert [row["source"] for row in rows] == ["shop", "shop"]
    assert [row["channel"] for row in rows] == ["otlp.collector"] * 2
    first, second = (row["event"] for row in rows)
    assert first["message"] == "paid 12" and first["severityText"] == "WARN"
    assert first["severityNumber"] == 13 and first["attributes"]["order"] == 7
    assert first["resource"]["service.name"] == "shop"
    assert first["timestamp"].endswith("Z")
    assert second["message"] == {"event": "login"}
    out = io.StringIO()
    args = argparse.Namespace(
        db=collector.db_path, service="otlp", source=None, limit=10, json=False, follow=False
    )
    run_events(args, out)
    assert "paid 12" in out.getvalue()


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        (b'{"resourceLogs": {}}', "application/json", 400),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": 99}]}]}]}',
            "application/json",
            400,
        ),
        (
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}',
            "application/json",
            400,
        ),
        (b"not json", "application/json", 400),
        (b"\x0a\x00", "application/x-protobuf", 415),
        (b'{"resourceLogs": [], "someFutureField": 1}', "application/json", 200),
    ],
)
def test_the_collector_answers_bad_otlp_bodies_as_the_spec_says(
    body, content_type, status, collector
):
    """issue 13: 400 with a JSON Status for a body that is not a request; 415 for binary
    protobuf; unknown fields are ignored (the spec's MUST)."""
    import requests

    reply = requests.post(
        collector.url + "/v1/logs", data=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert reply.status_code == status, reply.text
    answer = reply.json()
    if status == 200:
        assert answer == {}
    else:
        assert isinstance(answer["message"], str) and answer["message"]
    assert collector.events(service="otlp") == []
