"""Initial State events API: ``POST {url}/api/buckets`` once, then ``POST {url}/api/events``.

A record becomes ``{"key", "value", "epoch"}`` events with one ``epoch`` (``record.created``,
or a usable ``extra={"epoch": t}``, sent as given): the message under the record's key
(``extra={"key": ...}``, the ``key`` option, or the logger name; a traceback appended; a bare
number or bool message stays one), and each other field under ``<key>_<field>`` (a list,
dict or object flattened one level more, as ``log_object`` does). ``level``, ``logger`` and
``sourceId`` are not sent. Keys over 250 characters end in ``~`` + 8 hex digits of their
SHA-1; str, int, float and bool values go as they are, others as their JSON text.

In the pipeline (and the spool) a record is one dict ``{"": epoch, key: value, ...}``; the
empty name is never an Initial State key. 401/402/403 hold the events on disk; 429 honours
``Retry-After``; other 4xx reject the batch. Never compressed.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from ..handler import BatchingHandler
from ..options import Option, optional_text, text
from ..records import BareValue, dumps
from ..service import HOLD, Service, Verdict
from ..transport import Request
from ..version import __version__
from .initialstate_objects import event_epoch, field_items, name_text

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..option_types import InitialStateOptions

MAX_KEY = 250
EPOCH = ""  # the record's slot for its epoch; Initial State keys are never empty
BASE_FIELDS = ("message", "level", "logger", "exc_info", "stack_info")
ROUTING_FIELDS = ("key", "epoch")  # choose the key and the time; never sent as fields
PLAIN = frozenset((str, int, float, bool))  # sent as they are
WHY = {401: "unauthorized, check access_key", 402: "account capped or upgrade required"}


def is_key(name: str) -> str:
    if len(name) <= MAX_KEY:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[: MAX_KEY - 9]}~{digest}"


def is_value(value):
    if issubclass(type(value), (str, int, float)):  # bool is an int; no __class__ lookup
        return value
    encoded = dumps(value)
    return json.loads(encoded) if encoded.startswith('"') else encoded


#: what ends an event written with an epoch slot; no string's JSON text holds it (its
#: quotes would be escaped), only a value's nested ``"epoch": 0`` could
_EPOCH_SLOT = '"epoch": 0}'


def _number_text(value) -> str:
    """An epoch's JSON text, as the batch's ``dumps`` would write it."""
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    if type(value) is int:
        return int.__repr__(value)
    return dumps(value)


def _wire_events(events: list, slots: bool) -> tuple[list, list]:
    """Each record's ``{"key", "value", "epoch"}`` events; with ``slots`` every epoch is a 0
    and the second list holds the text that ends each such event instead."""
    out: list = []
    epochs: list = []
    for record in events:
        epoch = record.get(EPOCH)
        if isinstance(epoch, (int, float)):
            mark = 0 if slots else epoch
            out += [{"key": k, "value": v, "epoch": mark} for k, v in record.items() if k != EPOCH]
            if slots:
                epochs += [f'"epoch": {_number_text(epoch)}}}'] * (len(record) - 1)
        else:
            out += [{"key": k, "value": v} for k, v in record.items() if k != EPOCH]
    return out, epochs


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
        key = name_text(key)
        raw = fields.get("message", "")
        message = str(raw)
        value = raw.value if type(raw) is BareValue else message
        for extra in ("exc_info", "stack_info"):
            tail = fields.get(extra)
            if tail and str(tail) not in message:  # a Formatter may have added it already
                message = f"{message}\n{tail}" if message else str(tail)
                value = message
        epoch = event_epoch(fields.get("epoch")) if "epoch" in fields else None
        out: dict[str, Any] = {EPOCH: created if epoch is None else epoch}
        others = [n for n in fields if n not in BASE_FIELDS and n not in ROUTING_FIELDS]
        if message or not others:
            out[is_key(key)] = value
        for name in others:
            value, prefix = fields[name], f"{key}_{name if type(name) is str else name_text(name)}"
            if type(value) in PLAIN:  # the common case, without the flattening's calls
                out[is_key(prefix)] = value
                continue
            for sub_key, sub_value in field_items(prefix, value):
                out[is_key(sub_key)] = is_value(sub_value)
        return out

    def setup_request(self) -> Request:
        s = self.settings
        body = {"bucketKey": s.bucket_key, "bucketName": s.bucket_name or s.bucket_key}
        url = self.base() + "/api/buckets"
        return Request(url, dumps(body).encode("ascii"), self._headers(), compressible=False)

    def encode(self, events: list) -> Request:
        """One JSON array of every record's events. A record's epoch is written once (its
        float's text costs more than the rest of an event), not once per field: each event
        carries a 0 in its place, and one split and one join put the texts in."""
        out, epochs = _wire_events(events, slots=True)
        text = dumps(out)
        pieces = text.split(_EPOCH_SLOT)
        if len(pieces) == len(epochs) + 1:
            merged = [""] * (2 * len(epochs) + 1)
            merged[0::2], merged[1::2] = pieces, epochs
            text = "".join(merged)
        else:  # a value's own text holds the slot (a nested "epoch": 0): write them all out
            text = dumps(_wire_events(events, slots=False)[0])
        return Request(self.endpoint(), text.encode("ascii"), self._headers(), compressible=False)

    def judge(self, reply, events: list, policy) -> Verdict:
        status = reply.status
        if status in (401, 402, 403):
            why = WHY.get(status, "forbidden, check access_key and bucket_key")
            return Verdict(HOLD, f"HTTP {status} ({why}): {reply.text()}", kind=f"http_{status}")
        return super().judge(reply, events, policy)


class InitialStateHandler(BatchingHandler):
    """Streams records to an Initial State bucket as key/value events."""

    service_class = InitialStateService

    if TYPE_CHECKING:  # the options, for IDEs and type checkers (options table: the truth)

        def __init__(
            self, queue: Any = None, *, level: int | str = 0, **options: Unpack[InitialStateOptions]
        ) -> None: ...
