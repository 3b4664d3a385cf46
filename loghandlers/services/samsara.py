"""Samsara ingestion-api: ``POST {scheme://host[:port]}/v1/events``, a JSON array of events.

Each event: ``eventName`` (``extra={"eventName": ...}``, else the ``event_name`` template),
``message``, ``level``, ``logger``, any ``exc_info``/``stack_info`` text, the ``extra=``
fields, then ``sourceId`` (an extra ``sourceId``, else the handler's source id) and
``timestamp`` (int ms since epoch from ``record.created``; an extra ``timestamp`` is kept
only if it is an int >= 0, any other value is replaced by the record's time). Like the
official client's ``urljoin(url, "/v1/events")``, any path in ``url`` is dropped.

202 is success. A 400 whose body is the per-event array (``"OK"`` or an error string for
each event) means nothing was stored: the OK events are resent at once and the others are
counted as rejected with the server's reasons. Any other 400 rejects the batch.
"""

from __future__ import annotations

import json
import re
import string
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..handler import BatchingHandler
from ..options import Option, text
from ..records import dumps
from ..service import REJECTED, RETRY, Service, Verdict
from ..transport import Request

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..option_types import SamsaraOptions

DEFAULT_EVENT_NAME = "log.{level}"
#: at most this many levels' event names are remembered (custom levels are few)
_NAME_CACHE_SIZE = 64


class _Blank(dict):
    """Template fields: a name the record lacks formats as an empty string."""

    def __missing__(self, key):
        return ""


def _published_ms() -> str:
    return str(int(time.time() * 1000))


def depends_on_level_only(template: str) -> bool:
    """True when the template's text can differ only with the record's level (the default
    ``log.{level}`` does), so the event name can be formatted once per level."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError:
        return False
    return all(re.split(r"[.\[]", name, maxsplit=1)[0] == "level" for name in names)


class SamsaraService(Service):
    name = "samsara"
    env = "SAMSARA"
    options = (
        Option(
            "event_name",
            text,
            DEFAULT_EVENT_NAME,
            'eventName template over the record\'s fields ({level} is lower case); "eventName" '
            "in extra= wins",
        ),
    )
    defaults = {"compression": "gzip", "batch_size": 5000}
    #: level -> event name, when the template depends on nothing else (False: it does)
    _names_by_level: dict | bool | None = None

    def validate(self) -> None:
        if not urlsplit(self.settings.url).netloc:
            raise ValueError("SamsaraHandler needs url= (or LOGHANDLERS_SAMSARA_URL)")
        try:
            self.settings.event_name.format_map(_Blank())
        except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"invalid event_name template: {exc}") from None

    def endpoint(self) -> str:
        parts = urlsplit(self.settings.url)
        return urlunsplit((parts.scheme, parts.netloc, "/v1/events", "", ""))

    def event_name(self, fields: dict) -> str:
        if self._names_by_level is None:
            by_level = depends_on_level_only(self.settings.event_name)
            self._names_by_level = {} if by_level else False
        if self._names_by_level is False:
            return self._format_event_name(fields)
        names = self._names_by_level
        assert isinstance(names, dict)  # set just above
        level = fields.get("level", "")
        name = names.get(level) if type(level) is str else None
        if name is None:
            name = self._format_event_name(fields)
            if type(level) is str and len(names) < _NAME_CACHE_SIZE:
                names[level] = name
        return name

    def _format_event_name(self, fields: dict) -> str:
        values = _Blank(fields)
        values["level"] = str(fields.get("level", "")).lower()
        try:
            return self.settings.event_name.format_map(values)
        except Exception:  # a field whose value does not fit the template's format spec
            return DEFAULT_EVENT_NAME.format_map(values)

    def event(self, fields: dict, created: float, source_id: str) -> dict:
        name = fields.get("eventName")
        event: dict[str, Any] = {"eventName": ""}
        event.update(fields)
        event["eventName"] = self.event_name(fields) if name is None else str(name)
        source = fields.get("sourceId")
        event["sourceId"] = source_id if source is None else str(source)
        stamp = fields.get("timestamp")
        if not (isinstance(stamp, int) and not isinstance(stamp, bool) and stamp >= 0):
            event["timestamp"] = int(created * 1000)
        return event

    def attempt_headers(self, request: Request) -> dict:
        return {"X-Samsara-publishedTimestamp": _published_ms()}

    def encode(self, events: list) -> Request:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Content-Encoding": "identity",  # the transport replaces it when it gzips
            "X-Samsara-publishedTimestamp": _published_ms(),
        }
        return Request(self.endpoint(), dumps(events).encode("ascii"), headers)

    def judge(self, reply, events: list, policy) -> Verdict:
        if reply.status != 400:
            return super().judge(reply, events, policy)
        try:
            results = json.loads(reply.body)
        except ValueError:
            results = None
        if not isinstance(results, list) or len(results) != len(events):
            return Verdict(REJECTED, f"HTTP 400: {reply.text()}", kind="http_400")
        bad = [(i, r) for i, r in enumerate(results) if r != "OK"]
        if not bad:  # a 400 that blames no event: retry the whole batch, bounded
            return Verdict(RETRY, f"HTTP 400: {reply.text()}", kind="http_400")
        shown = "; ".join(f"event {i}: {r}" for i, r in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        reason = f"HTTP 400: {len(bad)} of {len(events)} events invalid: {shown}{more}"
        keep = [event for event, result in zip(events, results) if result == "OK"]
        return Verdict(RETRY, reason, resend=keep, kind="invalid_event")


class SamsaraHandler(BatchingHandler):
    """POSTs batches of events to a Samsara ingestion-api."""

    service_class = SamsaraService

    if TYPE_CHECKING:  # the options, for IDEs and type checkers (options table: the truth)

        def __init__(
            self, queue: Any = None, *, level: int | str = 0, **options: Unpack[SamsaraOptions]
        ) -> None: ...
