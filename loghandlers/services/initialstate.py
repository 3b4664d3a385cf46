"""Initial State events API: ``POST {url}/api/buckets`` once, then ``POST {url}/api/events``.

One record becomes several ``{"key", "value", "epoch"}`` events, all with the same float
``epoch`` (``record.created`` in seconds):

* the message under the record's key (``extra={"key": ...}``, else the ``key`` option,
  else the logger name), with any traceback / stack text appended after a newline as
  ``logging.Formatter`` lays it out; left out when empty and the record has other fields;
* each other field (the ``extra=`` fields and ``static_fields``) under ``<key>_<field>``,
  which is ``log_object(extras, key_prefix=key)``: one level, nothing deeper is flattened.

``level``, ``logger`` and ``sourceId`` are not sent. A key over 250 characters keeps its
first 241 and ends in ``~`` plus 8 hex digits of its SHA-1. str, int, float and bool values
go as they are; others go as their JSON text (``'{"a": [1]}'``, ``"null"``), or as the string
JSON writes for them (datetime, Decimal, UUID...).

In the pipeline (and the spool) a record is one dict ``{"": epoch, key: value, ...}``; the
empty name can never be an Initial State key. 401/402/403 hold the events on disk; 429
honours ``Retry-After``; other 4xx reject the batch. Never compressed.
"""

from __future__ import annotations

import hashlib
import json

from ..handler import BatchingHandler
from ..options import Option, optional_text, text
from ..records import dumps
from ..service import HOLD, Service, Verdict
from ..transport import Request
from ..version import __version__

MAX_KEY = 250
EPOCH = ""  # the record's slot for its epoch; Initial State keys are never empty
BASE_FIELDS = ("message", "level", "logger", "exc_info", "stack_info")
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
        key = str(key)
        message = str(fields.get("message", ""))
        for extra in ("exc_info", "stack_info"):
            tail = fields.get(extra)
            if tail and str(tail) not in message:  # a Formatter may have added it already
                message = f"{message}\n{tail}" if message else str(tail)
        out = {EPOCH: created}
        others = [name for name in fields if name not in BASE_FIELDS and name != "key"]
        if message or not others:
            out[is_key(key)] = message
        for name in others:
            out[is_key(f"{key}_{name}")] = is_value(fields[name])
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
