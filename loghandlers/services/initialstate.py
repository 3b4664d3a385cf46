"""Initial State events API: ``POST {url}/api/buckets`` once, then ``POST {url}/api/events``.

One record becomes several ``{"key", "value", "epoch"}`` events, all with the same
``epoch``: ``record.created`` (float seconds), or an ``extra={"epoch": t}`` that is a usable
time (a number is sent as given, as ISStreamer's ``log(..., epoch=t)``; a datetime is
converted, naive meaning UTC; anything else is ignored). The events are:

* the message under the record's key (``extra={"key": ...}``, else the ``key`` option,
  else the logger name), with any traceback / stack text appended after a newline as
  ``logging.Formatter`` lays it out; left out when empty and the record has other fields.
  A message that is a bare number or bool (``log.info(32)``) goes as that JSON number/bool,
  as ``streamer.log(key, 32)`` does;
* each other field (the ``extra=`` fields and ``static_fields``) under ``<key>_<field>``,
  which is ``log_object(extras, key_prefix=key)``; a field whose value is a list, a dict or
  an object with properties is itself flattened one level as ``log_object`` does
  (``<key>_<field>_0``, ``<key>_<field>_<name>``); nothing deeper is flattened.

``level``, ``logger`` and ``sourceId`` are not sent. A key over 250 characters keeps its
first 241 and ends in ``~`` plus 8 hex digits of its SHA-1. str, int, float and bool values
go as they are; others go as their JSON text (``'{"a": [1]}'``, ``"null"``), or as the string
JSON writes for them (datetime, Decimal, UUID...).

In the pipeline (and the spool) a record is one dict ``{"": epoch, key: value, ...}``; the
empty name can never be an Initial State key (:func:`pipeline_event` builds one, for the
``Streamer`` client). 401/402/403 hold the events on disk; 429 honours ``Retry-After``;
other 4xx reject the batch. Never compressed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Iterable

from ..handler import BatchingHandler
from ..options import Option, optional_text, text
from ..records import BareValue, dumps, safe_repr
from ..service import HOLD, Service, Verdict
from ..transport import Request
from ..version import __version__

MAX_KEY = 250
EPOCH = ""  # the record's slot for its epoch; Initial State keys are never empty
BASE_FIELDS = ("message", "level", "logger", "exc_info", "stack_info")
ROUTING_FIELDS = ("key", "epoch")  # choose the key and the time; never sent as fields
WHY = {401: "unauthorized, check access_key", 402: "account capped or upgrade required"}


def is_key(name: str) -> str:
    if len(name) <= MAX_KEY:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[: MAX_KEY - 9]}~{digest}"


def is_value(value):
    if isinstance(value, (str, int, float)):  # bool is an int
        return value
    encoded = dumps(value)
    return json.loads(encoded) if encoded.startswith('"') else encoded


def event_epoch(value: Any) -> float | int | None:
    """A user's ``epoch`` as ISStreamer sends it (a number stays exactly as given), or None
    when it is no usable time (ISStreamer then uses "now"). A datetime is converted (naive
    means UTC), which ISStreamer can't do."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        try:
            return value.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        if not math.isfinite(value):
            return None
        datetime.datetime.fromtimestamp(value)  # ISStreamer's own test of a usable epoch
    except (OverflowError, OSError, ValueError):
        return None
    return value


def _name_text(name: Any) -> str:
    if isinstance(name, str):
        return name
    try:
        return f"{name}"
    except Exception:
        return safe_repr(name)


def _properties(obj: Any) -> list[str]:
    """Names of the ``@property`` attributes of ``obj``'s class, sorted (as ``dir()``)."""
    cls = type(obj)
    try:
        names = dir(obj)
    except Exception:
        return []
    out = []
    for name in names:
        try:
            if isinstance(getattr(cls, name, None), property):
                out.append(name)
        except Exception:
            continue
    return out


def _read_property(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except Exception as exc:  # a property that raises costs only its own value
        return f"<unreadable property: {type(exc).__name__}>"


def log_object_items(obj: Any, key_prefix: str | None = None) -> list[tuple[str, Any]]:
    """The ``(key, value)`` pairs ISStreamer 2.0.0's ``log_object(obj, key_prefix)`` logs.

    A list gives ``<prefix>_0``, ``<prefix>_1``...; a dict ``<prefix>_<key>``; any other
    object one pair per ``@property`` (``<prefix>_<name>``, in ``dir()`` order). The default
    prefix is the type's name (``list``, ``dict``, ``Reading``); ``key_prefix=""`` means no
    prefix. Unlike ISStreamer, a tuple (or other sequence subclass of list/tuple) counts as
    a list and any mapping as a dict, where ISStreamer silently logs nothing for them; a
    property or mapping that raises costs only its own value, never the call.
    """
    if key_prefix is None:
        prefix = f"{type(obj).__name__}_"
    elif key_prefix:
        prefix = f"{key_prefix}_"
    else:
        prefix = ""
    if isinstance(obj, (list, tuple)):
        return [(f"{prefix}{i}", value) for i, value in enumerate(list(obj))]
    if isinstance(obj, Mapping):
        try:
            items = list(obj.items())
        except Exception as exc:
            return [(f"{prefix}items", f"<unreadable mapping: {type(exc).__name__}>")]
        return [(f"{prefix}{_name_text(k)}", value) for k, value in items]
    return [(f"{prefix}{name}", _read_property(obj, name)) for name in _properties(obj)]


def _flattens(value: Any) -> bool:
    """A field value that ``log_object`` would spread over several keys."""
    if isinstance(value, (str, bytes, int, float, type(None))):
        return False
    if isinstance(value, (list, tuple, Mapping)):
        return len(value) > 0  # an empty one keeps its JSON text, so the field stays visible
    if isinstance(value, type):
        return False
    return bool(_properties(value))


def pipeline_event(items: Iterable[tuple[Any, Any]], epoch: float | int) -> dict:
    """A ready-made pipeline record (``{"": epoch, key: value, ...}``) from key/value pairs,
    as ``Streamer.log``/``log_object`` submit them: keys made Initial State keys, values
    made Initial State values."""
    out: dict = {EPOCH: epoch}
    for key, value in items:
        out[is_key(_name_text(key))] = is_value(value)
    return out


def _header_safe(value: str) -> bool:
    return value == value.strip() and value.isascii() and value.isprintable()


class InitialStateService(Service):
    name = "initialstate"
    env = "INITIALSTATE"
    options = (
        Option("access_key", text, "", "streaming access key (X-IS-AccessKey)", secret=True),
        Option("bucket_key", text, "", "bucket to stream into; created once at start"),
        Option("bucket_name", optional_text, None, "the bucket's display name; default bucket_key"),
        Option("key", optional_text, None, 'message key; default logger name; extra "key" wins'),
    )
    defaults = {"url": "https://groker.init.st", "compression": "none", "batch_size": 1000}
    identity_options = ("bucket_key",)

    def validate(self) -> None:
        s = self.settings
        self.require("access_key", "bucket_key")
        for option in ("access_key", "bucket_key"):
            if not _header_safe(getattr(s, option)):
                raise ValueError(
                    f"{option} must be printable ASCII without surrounding spaces "
                    "(it is sent as an HTTP header)"
                )

    def base(self) -> str:
        return self.settings.url.rstrip("/")

    def endpoint(self) -> str:
        return self.base() + "/api/events"

    def _headers(self) -> dict:
        return {
            "Content-Type": "application/json",
            "User-Agent": f"loghandlers/{__version__}",
            "Accept-Version": "<=0.0.4",
            "X-IS-AccessKey": self.settings.access_key,
            "X-IS-BucketKey": self.settings.bucket_key,
        }

    def event(self, fields: dict, created: float, source_id: str) -> dict:
        key = fields.get("key")
        if key is None or key == "":
            key = self.settings.key or fields.get("logger") or "log"
        key = _name_text(key)
        raw = fields.get("message", "")
        message = str(raw)
        value: Any = raw.value if type(raw) is BareValue else message
        for extra in ("exc_info", "stack_info"):
            tail = fields.get(extra)
            if tail and str(tail) not in message:  # a Formatter may have added it already
                message = f"{message}\n{tail}" if message else str(tail)
                value = message
        epoch = event_epoch(fields.get("epoch")) if "epoch" in fields else None
        out = {EPOCH: created if epoch is None else epoch}
        others = [n for n in fields if n not in BASE_FIELDS and n not in ROUTING_FIELDS]
        if message or not others:
            out[is_key(key)] = value
        for name in others:
            field_value = fields[name]
            prefix = f"{key}_{_name_text(name)}"
            if _flattens(field_value):
                for sub_key, sub_value in log_object_items(field_value, prefix):
                    out[is_key(sub_key)] = is_value(sub_value)
            else:
                out[is_key(prefix)] = is_value(field_value)
        return out

    def setup_request(self) -> Request:
        s = self.settings
        body = {"bucketKey": s.bucket_key, "bucketName": s.bucket_name or s.bucket_key}
        url = self.base() + "/api/buckets"
        return Request(url, dumps(body).encode("ascii"), self._headers(), compressible=False)

    def encode(self, events: list) -> Request:
        out = []
        for record in events:
            epoch = record.get(EPOCH)
            if isinstance(epoch, (int, float)):
                out += [
                    {"key": k, "value": v, "epoch": epoch} for k, v in record.items() if k != EPOCH
                ]
            else:
                out += [{"key": k, "value": v} for k, v in record.items() if k != EPOCH]
        body = dumps(out).encode("ascii")
        return Request(self.endpoint(), body, self._headers(), compressible=False)

    def judge(self, reply, events: list, policy) -> Verdict:
        status = reply.status
        if status in (401, 402, 403):
            why = WHY.get(status, "forbidden, check access_key and bucket_key")
            return Verdict(HOLD, f"HTTP {status} ({why}): {reply.text()}", kind=f"http_{status}")
        return super().judge(reply, events, policy)


class InitialStateHandler(BatchingHandler):
    """Streams records to an Initial State bucket as key/value events."""

    service_class = InitialStateService
