"""OpenTelemetry OTLP/HTTP with JSON encoding: ``POST {url}/v1/logs`` an
``ExportLogsServiceRequest``, exactly as the OTLP specification and opentelemetry-proto
define it.

One request: one ``resourceLogs`` whose resource attributes are ``service.name`` (the
``service_name`` option, default the program's name), ``host.name``, ``process.pid`` and
the ``resource_attributes`` option; one ``scopeLogs`` per logger name (the scope's name),
in the order the loggers first appear in the batch. Each record:

* ``timeUnixNano`` (``record.created``) and ``observedTimeUnixNano`` (when the worker
  converted it), 64-bit integers as decimal strings as the protobuf JSON mapping writes them;
* ``severityNumber`` by the logs data model's mapping of Python levels (the one the
  OpenTelemetry SDK uses: DEBUG 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21, the levels
  between stepping up to the next range's top, below 10 UNSPECIFIED, above 53 FATAL4) and
  ``severityText`` (the level name; WARNING is WARN and CRITICAL is FATAL, as the data
  model displays them);
* ``body``: the message as ``stringValue``, or a ``kvlistValue`` when a dict is logged;
* ``attributes``: the ``extra=`` and ``static_fields`` fields, each typed as
  ``stringValue``, ``intValue`` (a string), ``doubleValue``, ``boolValue``, ``bytesValue``
  (base64), ``arrayValue`` or ``kvlistValue``; ``exception.type``, ``exception.message``,
  ``exception.stacktrace`` for ``exc_info``; ``code.file.path``, ``code.line.number``,
  ``code.function.name``; ``thread.id``/``thread.name``; ``code.stacktrace`` for
  ``stack_info``;
* ``traceId``/``spanId`` (hex) when the record carries ``otelTraceID``/``otelSpanID`` (as
  opentelemetry-instrumentation-logging sets them).

Answers (the specification's): 200 delivered, and a ``partialSuccess`` with
``rejectedLogRecords`` counts those as rejected (never retried); 429, 502, 503 and 504 are
retried, honouring Retry-After; 401 and 403 hold the records on disk, as for JSON (the spec
says not to retry these; we keep them so a corrected token delivers them instead of losing
them); any other 4xx or 5xx rejects the batch, since the spec says it MUST NOT be retried.

Where a record comes from (file, line, function, exception type) is only on the
``LogRecord``, so :class:`OTLPHandler` notes it in ``handle`` on a copy of the record, under
:data:`ORIGIN`, and :meth:`OTLPService.event` takes it out again; other handlers never see
it. In the pipeline and the spool a record is a flat dict (:meth:`OTLPService.event`), so
the long strings (message, traceback) can be cut like any handler's when a record is over
``max_batch_bytes``; ``encode`` builds the OTLP tree from it.

Threading: ``OTLPHandler.handle`` runs on the caller's thread and writes only to its own
copy of the record; the service is read-only after ``validate`` (the constructor's thread),
and ``event``/``encode``/``judge`` run on the worker thread.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import math
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from ..handler import BatchingHandler
from ..options import HTTP_AUTH, Option, mapping, optional_text
from ..records import dumps, json_default, safe_repr
from ..service import DELIVERED, HOLD, REJECTED, RETRY, Service, Verdict
from ..transport import Request, parse_retry_after, split_userinfo
from .json import auth_headers, epoch_ns

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..option_types import OTLPOptions

LOGS_PATH = "/v1/logs"
#: the answers the OTLP/HTTP specification says to retry
RETRYABLE = frozenset({429, 502, 503, 504})
#: key of the origin note in a record copy's attributes (see the module docstring)
ORIGIN = "loghandlers.otlp.origin"
SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}
INT64 = (-(2**63), 2**63 - 1)
_MAX_DEPTH = 16
_HEX = frozenset("0123456789abcdefABCDEF")


def severity_number(levelno: int) -> int:
    """The logs data model's SeverityNumber for a Python level number."""
    if levelno < 10:
        return 0  # SEVERITY_NUMBER_UNSPECIFIED
    if levelno > 53:
        return 24  # FATAL4
    tier, step = divmod(levelno, 10)  # DEBUG..CRITICAL are tiers 1..5 of four numbers
    return 1 + 4 * tier + min(step, 3)


def program_name() -> str:
    argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(argv0) if argv0 not in ("", "-", "-c") else ""
    return name or "unknown_service:python"


def any_value(value, depth: int = 0) -> dict:
    """A Python value as an OTLP ``AnyValue`` in protobuf JSON."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if INT64[0] <= value <= INT64[1]:
            return {"intValue": str(int(value))}
        return {"stringValue": str(int(value))}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "doubleValue": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        }
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if depth >= _MAX_DEPTH:
        return {"stringValue": "<too deep>"}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value, depth + 1)}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(item, depth + 1) for item in value]}}
    try:
        replaced = json_default(value)
    except Exception:
        replaced = value
    if replaced is value or depth >= _MAX_DEPTH - 1:
        return {"stringValue": safe_repr(value)}
    return any_value(replaced, depth + 1)


def key_values(mapping_: dict, depth: int = 0) -> list:
    """``[{"key": ..., "value": AnyValue}]``; a value that can't be read becomes its repr."""
    out = []
    for key, value in list(mapping_.items()):
        try:
            converted = any_value(value, depth)
        except Exception:
            converted = {"stringValue": safe_repr(value)}
        out.append({"key": key if isinstance(key, str) else safe_repr(key), "value": converted})
    return out


def _hex_id(value, length: int) -> str | None:
    text = value if isinstance(value, str) else ""
    if len(text) == length and set(text) <= _HEX and text.strip("0"):
        return text.lower()
    return None


def exception_identity(exc_info) -> tuple[str, str]:
    """(``exception.type``, ``exception.message``): the class's qualified name (bare for
    builtins) and ``str()`` of the exception, or a placeholder if that raises."""
    kind, value = exc_info[0], exc_info[1]
    try:
        module = getattr(kind, "__module__", "") or ""
        name = getattr(kind, "__qualname__", "") or getattr(kind, "__name__", "")
        type_name = name if module in ("builtins", "__main__", "") else f"{module}.{name}"
    except Exception:
        type_name = "<unknown>"
    try:
        message = str(value) if value is not None else ""
    except Exception as exc:
        message = f"<unprintable {type(exc).__name__}>"
    return str(type_name), message


class OTLPService(Service):
    name = "otlp"
    env = "OTLP"
    options = HTTP_AUTH + (
        Option("service_name", optional_text, None, "resource service.name; default program"),
        Option(
            "resource_attributes",
            mapping,
            None,
            "more resource attributes (a dict, or its JSON text)",
        ),
    )
    defaults = {"batch_size": 1000, "max_batch_bytes": 4 * 1024 * 1024, "compression": "none"}

    def validate(self) -> None:
        s = self.settings
        self.require("url")
        self._headers = {"Content-Type": "application/json", **auth_headers(s)}
        base = split_userinfo(s.url)[0].rstrip("/")
        self._url = base if base.endswith(LOGS_PATH) else base + LOGS_PATH
        self._resource = dict(s.resource_attributes or {})

    def endpoint(self) -> str:
        base = self.settings.url.rstrip("/")
        return base if base.endswith(LOGS_PATH) else base + LOGS_PATH

    def identity(self) -> str:
        return split_userinfo(self.endpoint())[0]

    # ----------------------------------------------------------------- mapping
    def event(self, fields: dict, created: float, source_id: str) -> dict:
        fields = dict(fields)
        origin = fields.pop(ORIGIN, None)
        origin = origin if isinstance(origin, dict) else {}
        level = str(fields.pop("level", "") or "")
        levelno = origin.get("levelno")
        if not isinstance(levelno, int):
            found = logging.getLevelName(level)
            levelno = found if isinstance(found, int) else 0
        event = {
            "timeUnixNano": str(epoch_ns(created)),
            "observedTimeUnixNano": str(time.time_ns()),
            "severityNumber": severity_number(levelno),
            "severityText": SEVERITY_TEXT.get(level, level),
            "scope": str(fields.pop("logger", "") or ""),
            "message": fields.pop("message", ""),
        }
        body_keys = origin.get("body_keys")
        if body_keys:
            event["body"] = {key: fields.pop(key) for key in body_keys if key in fields}
        exc_text = fields.pop("exc_info", None)
        if exc_text:
            event["exc_info"] = str(exc_text)
            event["exception"] = origin.get("exception") or ["", ""]
        stack = fields.pop("stack_info", None)
        if stack:
            event["stack_info"] = str(stack)
        for key, name in (("otelTraceID", "traceId"), ("otelSpanID", "spanId")):
            found = _hex_id(fields.get(key), 32 if name == "traceId" else 16)
            if found:
                event[name] = found
                fields.pop(key)
        if "traceId" in event:
            fields.pop("otelTraceSampled", None)
        event["attributes"] = fields
        if origin.get("code"):
            event["code"] = origin["code"]
        return event

    def log_record(self, event: dict) -> dict:
        """One pipeline event as an OTLP ``LogRecord``."""
        record = {
            "timeUnixNano": str(event.get("timeUnixNano", "0")),
            "observedTimeUnixNano": str(event.get("observedTimeUnixNano", "0")),
            "severityNumber": int(event.get("severityNumber") or 0),
            "severityText": str(event.get("severityText") or ""),
        }
        body = event.get("body")
        if isinstance(body, dict) and body:
            record["body"] = any_value(body)
        else:
            record["body"] = {"stringValue": str(event.get("message", ""))}
        attributes = dict(event.get("attributes") or {})
        code = event.get("code") or {}
        if isinstance(code, dict):
            for key in ("file", "line", "function", "thread_id", "thread_name"):
                if code.get(key) is not None:
                    attributes[_CODE_KEYS[key]] = code[key]
        if event.get("exc_info"):
            exc_type, exc_message = (list(event.get("exception") or []) + ["", ""])[:2]
            if exc_type:
                attributes["exception.type"] = exc_type
            if exc_message:
                attributes["exception.message"] = exc_message
            attributes["exception.stacktrace"] = event["exc_info"]
        if event.get("stack_info"):
            attributes["code.stacktrace"] = event["stack_info"]
        record["attributes"] = key_values(attributes)
        for name in ("traceId", "spanId"):
            if event.get(name):
                record[name] = event[name]
        return record

    def resource(self) -> dict:
        attributes = {
            "service.name": self.settings.service_name or program_name(),
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
        }
        attributes.update(self._resource)
        if self.settings.service_name:
            attributes["service.name"] = self.settings.service_name
        return {"attributes": key_values(attributes)}

    # ----------------------------------------------------------------- wire
    def encode(self, events: list) -> Request:
        scopes: dict = {}
        for event in events:
            scopes.setdefault(str(event.get("scope", "")), []).append(self.log_record(event))
        request = {
            "resourceLogs": [
                {
                    "resource": self.resource(),
                    "scopeLogs": [
                        {"scope": {"name": name}, "logRecords": records}
                        for name, records in scopes.items()
                    ],
                }
            ]
        }
        return Request(self._url, dumps(request).encode("ascii"), dict(self._headers))

    def judge(self, reply, events: list, policy) -> Verdict:
        status = reply.status
        if 200 <= status < 300:
            rejected, message = partial_success(reply.body)
            if rejected or message:
                rejected = min(rejected, len(events))
                why = f"partial success: {rejected} log records rejected: {message}".strip()
                return Verdict(DELIVERED, why, rejected=rejected, kind="partial_success")
            return Verdict(DELIVERED)
        reason = f"HTTP {status}: {status_message(reply)}".strip()
        if status in RETRYABLE:
            retry_after = parse_retry_after(reply.headers.get("Retry-After"))
            return Verdict(RETRY, reason, retry_after=retry_after, kind=f"http_{status}")
        if status in (401, 403):
            return Verdict(HOLD, reason, kind=f"http_{status}")
        if 300 <= status < 400:
            return super().judge(reply, events, policy)
        return Verdict(REJECTED, reason, kind=f"http_{status}")


_CODE_KEYS = {
    "file": "code.file.path",
    "line": "code.line.number",
    "function": "code.function.name",
    "thread_id": "thread.id",
    "thread_name": "thread.name",
}


def partial_success(body: bytes) -> tuple[int, str]:
    """``(rejectedLogRecords, errorMessage)`` of an ``ExportLogsServiceResponse``."""
    try:
        answer = json.loads(body or b"{}")
        partial = answer.get("partialSuccess") or answer.get("partial_success") or {}
        rejected = partial.get("rejectedLogRecords", partial.get("rejected_log_records", 0))
        message = partial.get("errorMessage", partial.get("error_message", ""))
        return max(0, int(rejected or 0)), str(message or "")
    except (ValueError, TypeError, AttributeError):
        return 0, ""  # not JSON (a protobuf answer, or none): nothing to read


def status_message(reply) -> str:
    """A failure's ``Status.message`` when the body is a JSON ``Status``, else its text."""
    try:
        answer = json.loads(reply.body)
        if isinstance(answer, dict) and isinstance(answer.get("message"), str):
            return answer["message"]
    except (ValueError, TypeError):
        pass
    return reply.text()


class OTLPHandler(BatchingHandler):
    """Ships records to an OpenTelemetry Collector (or any OTLP/HTTP logs receiver)."""

    service_class = OTLPService

    if TYPE_CHECKING:  # the options, for IDEs and type checkers (options table: the truth)

        def __init__(
            self, queue: Any = None, *, level: int | str = 0, **options: Unpack[OTLPOptions]
        ) -> None: ...

    def handle(self, record: logging.LogRecord):
        """Note where the record comes from on a copy of it (see the module docstring)."""
        try:
            noted = copy.copy(record)
            setattr(noted, ORIGIN, origin_of(record))
        except Exception:
            noted = record  # a record we can't copy still ships, without its origin
        return super().handle(noted)


def origin_of(record: logging.LogRecord) -> dict:
    """What OTLP wants from a record that the shared snapshot doesn't keep."""
    origin: dict = {
        "levelno": record.levelno if isinstance(record.levelno, int) else 0,
        "code": {
            "file": record.pathname,
            "line": record.lineno,
            "function": record.funcName,
            "thread_id": record.thread,
            "thread_name": record.threadName,
        },
    }
    if isinstance(record.msg, dict):
        origin["body_keys"] = [key for key in record.msg if isinstance(key, str)]
    if record.exc_info and isinstance(record.exc_info, tuple) and record.exc_info[0]:
        origin["exception"] = list(exception_identity(record.exc_info))
    return origin
