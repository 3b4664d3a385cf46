"""OpenTelemetry OTLP/HTTP logs, JSON encoding: ``POST /v1/logs``.

The body is an ``ExportLogsServiceRequest`` in the protobuf JSON mapping (lowerCamelCase
keys, 64-bit integers as strings or numbers, enums as integers, unknown fields ignored),
optionally gzip-encoded. Each log record is stored as one event: its ``message`` (the body:
text, or the value a structured body decodes to), ``timestamp`` (RFC 3339, from
``timeUnixNano``), ``severityNumber``/``severityText``, ``attributes``, and the ``resource``
and ``scope`` it came with; the source column is the resource's ``service.name``, the
channel the scope's name. Answers as the specification says a server does: 200 with an
empty ``ExportLogsServiceResponse`` (``{}``); 400 with a JSON ``Status`` for a body that is
not a valid request; 415 for binary protobuf, which this collector does not decode.
"""

import base64
import binascii
import datetime
import math
import re
from typing import Any, Dict, List, Optional

from .base import ServiceReply, ServiceRequest, gunzip, is_int, json_reply, loads
from .store import Row, Store

__all__ = ["OTLP"]

_JSON = re.compile(r"application/json\s*(;.*)?", re.IGNORECASE | re.DOTALL)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1
_DOUBLE_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_VALUE_KINDS = (
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
)
_MAX_DEPTH = 64


class Invalid(ValueError):
    """The body is not an ExportLogsServiceRequest (answered 400 with its message)."""


def status_reply(status: int, message: str) -> ServiceReply:
    """A failure's body: a ``google.rpc.Status`` in JSON (code 3 is INVALID_ARGUMENT)."""
    return json_reply(status, {"code": 3 if status == 400 else 0, "message": message})


class OTLP:
    """``POST /v1/logs``: an OTLP/HTTP JSON ``ExportLogsServiceRequest``."""

    name = "otlp"
    routes = {"/v1/logs": {"POST": "post_logs"}}

    def __init__(self, store: Store) -> None:
        self.store = store

    def post_logs(self, req: ServiceRequest) -> ServiceReply:
        content_type = (req.headers.get("Content-Type") or "").strip()
        if not _JSON.fullmatch(content_type):
            return status_reply(
                415, "this collector takes OTLP/HTTP with JSON encoding (application/json)"
            )
        body = req.body
        encoding = (req.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = gunzip(body, req.max_decoded_bytes)
            except ValueError as exc:
                return status_reply(400, str(exc))
        elif encoding != "identity":
            return status_reply(415, f"unsupported Content-Encoding: {encoding}")
        try:
            rows = list(self._rows(loads(body) if body.strip() else {}))
        except ValueError as exc:  # Invalid, and malformed JSON
            return status_reply(400, f"invalid ExportLogsServiceRequest: {exc}")
        self.store.insert(rows)
        return json_reply(200, {})

    def _rows(self, request: Any):
        for r, resource_logs in enumerate(_list(_object(request, "request"), "resourceLogs")):
            where = f"resourceLogs[{r}]"
            resource_logs = _object(resource_logs, where)
            resource = _key_values(
                _object(resource_logs.get("resource") or {}, f"{where}.resource"), where
            )
            service = resource.get("service.name")
            source = service if isinstance(service, str) and service else None
            for s, scope_logs in enumerate(_list(resource_logs, "scopeLogs", where)):
                at = f"{where}.scopeLogs[{s}]"
                scope_logs = _object(scope_logs, at)
                scope = _object(scope_logs.get("scope") or {}, f"{at}.scope")
                scope_name = _string(scope.get("name", ""), f"{at}.scope.name")
                for n, record in enumerate(_list(scope_logs, "logRecords", at)):
                    event = _event(_object(record, f"{at}.logRecords[{n}]"), f"{at}[{n}]")
                    event["scope"] = scope_name
                    event["resource"] = resource
                    yield Row(self.name, source, scope_name or None, None, event)


def _event(record: Dict[str, Any], where: str) -> Dict[str, Any]:
    time_ns = _uint64(record.get("timeUnixNano", 0), f"{where}.timeUnixNano")
    observed = _uint64(record.get("observedTimeUnixNano", 0), f"{where}.observedTimeUnixNano")
    severity = record.get("severityNumber", 0)
    if not is_int(severity) or not 0 <= severity <= 24:
        raise Invalid(f"{where}.severityNumber must be an integer 0-24, got {severity!r}")
    event: Dict[str, Any] = {
        "timestamp": _iso(time_ns or observed),
        "message": _any_value(record.get("body") or {}, f"{where}.body"),
        "severityNumber": severity,
        "severityText": _string(record.get("severityText", ""), f"{where}.severityText"),
        "attributes": _key_values(record, where),
        "timeUnixNano": str(time_ns),
        "observedTimeUnixNano": str(observed),
    }
    for name, size in (("traceId", 32), ("spanId", 16)):
        value = record.get(name)
        if value:
            if not isinstance(value, str) or not re.fullmatch(f"[0-9a-fA-F]{{{size}}}", value):
                raise Invalid(f"{where}.{name} must be {size} hex digits")
            event[name] = value.lower()
    return event


def _object(value: Any, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be a JSON object")
    return value


def _list(parent: Dict[str, Any], key: str, where: str = "") -> List[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"{where + '.' if where else ''}{key} must be an array")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where} must be a string")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    """A 64-bit integer as the protobuf JSON mapping allows: a number or a decimal string."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value, re.ASCII):
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not is_int(value) or not low <= value <= high:
        raise Invalid(f"{where} must be an integer in [{low}, {high}]")
    return value


def _uint64(value: Any, where: str) -> int:
    return _int(value, where, 0, _UINT64_MAX)


def _iso(time_ns: int) -> Optional[str]:
    if not time_ns:
        return None
    try:
        moment = datetime.datetime.fromtimestamp(time_ns / 1e9, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _key_values(parent: Dict[str, Any], where: str, depth: int = 0) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for i, item in enumerate(_list(parent, "attributes" if depth == 0 else "values", where)):
        item = _object(item, f"{where}.attributes[{i}]")
        key = _string(item.get("key", ""), f"{where}.attributes[{i}].key")
        out[key] = _any_value(item.get("value") or {}, f"{where}.{key}", depth + 1)
    return out


def _any_value(value: Any, where: str, depth: int = 0) -> Any:
    """An ``AnyValue`` as the Python value it stands for (bytes as their base64 text)."""
    if depth > _MAX_DEPTH:
        raise Invalid(f"{where} nests too deeply")
    value = _object(value, where)
    kinds = [kind for kind in _VALUE_KINDS if kind in value]
    if len(kinds) > 1:
        raise Invalid(f"{where} sets more than one of {', '.join(kinds)}")
    if not kinds:
        return None
    kind = kinds[0]
    item = value[kind]
    if kind == "stringValue":
        return _string(item, where)
    if kind == "boolValue":
        if not isinstance(item, bool):
            raise Invalid(f"{where}.boolValue must be true or false")
        return item
    if kind == "intValue":
        return _int(item, f"{where}.intValue", *_INT64)
    if kind == "doubleValue":
        if isinstance(item, str) and item in _DOUBLE_WORDS:
            return item  # NaN/Infinity: kept as the word (the store holds strict JSON)
        if is_int(item) or isinstance(item, float):
            return float(item)
        raise Invalid(f"{where}.doubleValue must be a number")
    if kind == "bytesValue":
        try:
            base64.b64decode(_string(item, where), validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"{where}.bytesValue must be base64") from None
        return item
    if kind == "arrayValue":
        values = _list(_object(item, where), "values", where)
        return [_any_value(v or {}, f"{where}[{i}]", depth + 1) for i, v in enumerate(values)]
    return _key_values(_object(item, where), where, depth + 1)
