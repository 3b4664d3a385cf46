"""The README's "Shipping to ..." snippets, run as written (issue 13).

Each snippet is read from README.md, its host swapped for a loopback receiver and its
``<placeholders>`` filled in, configured through ``logging.config.dictConfig``, and used
to log; the receiver checks the path, headers and body shape the product expects (and
answers 401 without the credential), so a snippet that drifts from what the product takes
fails here.
"""

from __future__ import annotations

import ast
import base64
import logging
import logging.config
import pathlib
import re
from urllib.parse import quote

import pytest

from tests.loopback import Answer, LoopbackServer, refuse

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET = "readme-5ecr3t+Key/9Q"
PRODUCTS = (
    "Vector",
    "Fluent Bit",
    "Logstash",
    "OpenTelemetry Collector",
    "Datadog",
    "Splunk",
    "Grafana Loki",
    "Elasticsearch",
    "Seq",
)


def snippets() -> dict:
    """``{section title: (handler name, handler config)}`` from the README section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Shipping to ")
    end = text.index("\n## ", start + 1)
    found = {}
    for part in text[start:end].split("\n### ")[1:]:
        title = part.splitlines()[0].strip()
        block = re.search(r"```python\n(.*?)```", part, re.DOTALL)
        assert block, f"no python snippet under {title!r}"
        ((name, config),) = ast.literal_eval("{" + block.group(1) + "}").items()
        found[title] = (name, config)
    return found


def fill(value, port: int):
    """The snippet's value pointed at the loopback receiver, placeholders filled."""
    if isinstance(value, dict):
        return {key: fill(item, port) for key, item in value.items()}
    if not isinstance(value, str):
        return value
    value = re.sub(
        r"^https?://([^/@]*@)?[^/:?#]+(:\d+)?",
        lambda m: f"http://{m.group(1) or ''}127.0.0.1:{port}",
        value,
    )
    if value.startswith("http://"):  # a secret in a URL's user-info goes %-encoded
        return re.sub(r"<[^<>]+>", quote(SECRET, safe=""), value)
    return re.sub(r"<[^<>]+>", SECRET, value)


def is_rfc3339(text) -> bool:
    return isinstance(text, str) and bool(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ----------------------------------------------------------------------------- products
def vector(request):
    if request.header("Authorization") != basic("shipper", SECRET):
        return refuse(401, "auth")
    assert request.path == "/logs"
    records = request.ndjson()
    assert all("message" in r and is_rfc3339(r["timestamp"]) for r in records)
    return Answer(200, records=records)


def fluent_bit(request):
    assert request.path == "/app.logs"  # the tag
    assert request.header("Content-Type") == "application/json"
    records = request.json()
    assert isinstance(records, list) and all(isinstance(r, dict) for r in records)
    return Answer(201, records=records)


def logstash(request):
    if request.header("Authorization") != basic("shipper", SECRET):
        return refuse(401, "auth")
    assert request.header("Content-Type") == "application/json"
    records = request.json()
    assert isinstance(records, list) and all("message" in r for r in records)
    return Answer(200, b"ok", records=records)


def otlp(resource_check):
    def answer(request):
        assert request.path == "/v1/logs"
        assert request.header("Content-Type") == "application/json"
        body = request.json()
        try:
            from google.protobuf import json_format
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
                ExportLogsServiceRequest,
            )
        except ImportError:  # pragma: no cover (the [test] extra installs them)
            pass
        else:
            json_format.Parse(request.decoded(), ExportLogsServiceRequest())
        (resource_logs,) = body["resourceLogs"]
        resource = {a["key"]: a["value"] for a in resource_logs["resource"]["attributes"]}
        resource_check(resource)
        records = [r for s in resource_logs["scopeLogs"] for r in s["logRecords"]]
        assert all(r["body"] and r["severityNumber"] for r in records)
        return Answer(200, b"{}", {"Content-Type": "application/json"}, records)

    return answer


def otel_resource(resource):
    assert resource["service.name"] == {"stringValue": "checkout"}


def loki_resource(resource):
    assert resource["service.name"] == {"stringValue": "checkout"}
    assert resource["deployment.environment"] == {"stringValue": "prod"}


def datadog(request):
    if request.header("DD-API-KEY") != SECRET:
        return refuse(403, "Forbidden")
    assert request.path == "/api/v2/logs"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Content-Encoding") == "gzip"
    records = request.json()
    assert isinstance(records, list) and len(records) <= 1000
    for r in records:
        assert r["ddsource"] == "python" and r["service"] == "checkout"
        assert r["status"] in ("WARNING", "ERROR") and r["hostname"] and r["message"]
        assert is_rfc3339(r["timestamp"]) and "level" not in r and "sourceId" not in r
    return Answer(202, b"{}", records=records)


def splunk(request):
    if request.header("Authorization") != f"Splunk {SECRET}":
        return refuse(401, '{"text":"Invalid token","code":4}')
    assert request.path == "/services/collector/raw"
    assert request.query == {"sourcetype": ["_json"]}
    records = request.ndjson()
    return Answer(200, b'{"text":"Success","code":0}', records=records)


def elasticsearch(request):
    records = request.json()
    for r in records:
        assert is_rfc3339(r["@timestamp"]) and "timestamp" not in r
        assert r["log.level"] in ("WARNING", "ERROR") and r["log.logger"] and r["host.name"]
    return Answer(200, b"ok", records=records)


def seq(request):
    if request.header("X-Seq-ApiKey") != SECRET:
        return refuse(401, "api key")
    assert request.path == "/ingest/clef"
    assert request.header("Content-Type") == "application/vnd.serilog.clef"
    records = request.ndjson()
    for r in records:
        assert is_rfc3339(r["@t"]) and isinstance(r["@m"], str) and r["@l"]
    assert any(r.get("@x", "").startswith("Traceback") for r in records)
    return Answer(201, b"{}", records=records)


RECEIVERS = {
    "Vector": vector,
    "Fluent Bit": fluent_bit,
    "Logstash": logstash,
    "OpenTelemetry Collector": otlp(otel_resource),
    "Datadog": datadog,
    "Splunk": splunk,
    "Grafana Loki": otlp(loki_resource),
    "Elasticsearch": elasticsearch,
    "Seq": seq,
}


def product_of(title: str) -> str:
    matches = [p for p in PRODUCTS if title.startswith(p)]
    assert len(matches) == 1, title
    return matches[0]


def test_the_readme_has_a_snippet_for_each_receiver_people_run():
    """issue 13: one tested snippet per product the issue names."""
    assert sorted(product_of(title) for title in snippets()) == sorted(PRODUCTS)


@pytest.mark.parametrize("title", sorted(snippets()))
def test_a_readme_snippet_ships_what_its_product_takes(title, tmp_path, capfd):
    """issue 13: the README snippet, configured by dictConfig as written, reaches a
    receiver that checks that product's path, credential header and body shape."""
    name, config = snippets()[title]
    with LoopbackServer(respond=RECEIVERS[product_of(title)]) as receiver:
        handler_config = {
            **fill(config, receiver.port),
            "spool_dir": str(tmp_path / "spool"),
            "flush_interval": 3600,
            "retries": 0,
        }
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {name: handler_config},
                "loggers": {f"readme.{name}": {"handlers": [name], "level": "INFO"}},
            }
        )
        log = logging.getLogger(f"readme.{name}")
        log.propagate = False
        (handler,) = log.handlers
        try:
            log.warning("order %s paid", 1001, extra={"user": 7, "amount": 12.5})
            try:
                raise RuntimeError("card declined")
            except RuntimeError:
                log.exception("payment failed", extra={"user": 7})
            assert handler.flush(timeout=20)
            stats = handler.stats()
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        answers = [(r.status, r.outcome) for r in receiver.requests]
        assert all(200 <= status < 300 for status, _ in answers), answers
        assert len(receiver.records) == 2 and stats["sent"] == 2, (answers, stats)
    assert SECRET not in capfd.readouterr().err
