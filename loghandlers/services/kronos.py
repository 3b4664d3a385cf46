"""Kronos (kronosd): ``POST {url}/1.0/events/put``, events grouped by stream.

Body: ``{"namespace": ns, "events": {stream: [event, ...]}}``; the ``namespace`` key is left
out when none is configured (the server then uses its default). No Content-Type header, no
compression, as the official pykronos client.

Each event: ``@time`` (int kronos time: 100 ns units since the epoch, from
``record.created``; an ``@time`` extra is kept if it is an int, converted if it is a datetime
(naive = UTC) or an ISO 8601 string, and otherwise replaced), ``@library`` (naming
loghandlers, as pykronos names itself), the message, level, logger, any traceback text, the
``extra=`` fields and ``sourceId``. The stream is ``extra={"stream": ...}``, else the
``stream`` option, else the logger name; any character outside ``[A-Za-z0-9_.-]`` becomes
``_`` and it is cut to 2048 characters. In the pipeline the stream rides in the event as
``@stream`` and is removed before sending.

Success is 200 with ``@success`` true. 200 with ``@success`` false means the other events
were stored: the events the server did not insert are counted as rejected (with its
``@errors``), the rest are not resent. 400 (not JSON) rejects the batch; 5xx retries.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..handler import BatchingHandler
from ..options import Option, optional_text
from ..records import dumps, json_constant
from ..service import DELIVERED, RETRY, Service, Verdict
from ..transport import Request
from ..version import __version__

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..option_types import KronosOptions

MAX_STREAM = 2048
STREAM = "@stream"
_NOT_STREAM = re.compile(r"[^\w\-.]", re.ASCII)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
LIBRARY = json_constant({"version": __version__, "name": "loghandlers"})  # shared: read-only
_NONE = object()  # an event without a stream


@functools.lru_cache(maxsize=1024)
def stream_name(name) -> str:
    return _NOT_STREAM.sub("_", str(name))[:MAX_STREAM]


def kronos_time(value, created: float) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 10**7 + delta.microseconds * 10
    return int(created * 1e7)


class KronosService(Service):
    name = "kronos"
    env = "KRONOS"
    options = (
        Option("namespace", optional_text, None, "kronos namespace; default the server's"),
        Option("stream", optional_text, None, 'default the logger name; extra "stream" wins'),
    )
    defaults = {"compression": "none", "batch_size": 5000}
    identity_options = ("namespace",)

    def validate(self) -> None:
        self.require("url")
        if self.settings.namespace == "":
            raise ValueError("namespace must not be empty (leave it unset for the default)")

    def endpoint(self) -> str:
        return self.settings.url.rstrip("/") + "/1.0/events/put"

    def default_stream(self, fields: dict) -> str:
        return stream_name(self.settings.stream or fields.get("logger") or "log")

    def event(self, fields: dict, created: float, source_id: str) -> dict:
        stream = fields.get("stream")
        event = {"@time": 0, "@library": LIBRARY}
        event.update(fields)  # an "@time" field keeps the first place, converted below
        event["@time"] = kronos_time(fields.get("@time"), created)
        if "stream" in event:
            del event["stream"]
        event.setdefault("sourceId", source_id)
        event[STREAM] = self.default_stream(fields) if stream in (None, "") else stream_name(stream)
        return event

    def _stream_of(self, event: dict) -> str:
        stream = event.get(STREAM)
        return stream if isinstance(stream, str) and stream else self.default_stream(event)

    def encode(self, events: list) -> Request:
        # the stream rides in the event until now; lift it out for the wire
        lifted = [event.pop(STREAM, _NONE) for event in events]
        try:
            first = lifted[0] if lifted else None
            if isinstance(first, str) and first and lifted.count(first) == len(lifted):
                streams = {first: events}  # one stream, as a logger's records usually are
            else:
                streams = {}
                for event, stream in zip(events, lifted):
                    if not (isinstance(stream, str) and stream):
                        stream = self.default_stream(event)
                    streams.setdefault(stream, []).append(event)
            body = {"events": streams}
            if self.settings.namespace is not None:
                body = {"namespace": self.settings.namespace, **body}
            text = dumps(body)
        finally:
            for event, stream in zip(events, lifted):  # put it back: a retry or the spool
                if stream is not _NONE:
                    event[STREAM] = stream
        return Request(self.endpoint(), text.encode("ascii"), {}, compressible=False)

    def judge(self, reply, events: list, policy) -> Verdict:
        if reply.status != 200:
            return super().judge(reply, events, policy)
        try:
            answer = json.loads(reply.body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "@success" not in answer:
            return Verdict(RETRY, f"HTTP 200 but not a kronos reply: {reply.text()}", kind="reply")
        if answer["@success"] is True:
            return Verdict(DELIVERED)
        inserted = 0
        for stream, count in Counter(self._stream_of(e) for e in events).items():
            backends = answer.get(stream)
            backends = backends.values() if isinstance(backends, dict) else ()
            numbers = [b.get("num_inserted") for b in backends if isinstance(b, dict)]
            inserted += min(count, max([n for n in numbers if isinstance(n, int)] + [0]))
        errors = answer.get("@errors") or []
        errors = errors if isinstance(errors, list) else [errors]
        reason = "kronos @success false: " + "; ".join(str(e) for e in errors[:5])
        return Verdict(DELIVERED, reason, rejected=len(events) - inserted, kind="kronos_errors")


class KronosHandler(BatchingHandler):
    """Puts records into Kronos streams."""

    service_class = KronosService

    if TYPE_CHECKING:  # the options, for IDEs and type checkers (options table: the truth)

        def __init__(
            self, queue: Any = None, *, level: int | str = 0, **options: Unpack[KronosOptions]
        ) -> None: ...
