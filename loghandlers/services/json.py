"""Generic JSON over HTTP: POST events to any URL, as the receiver in front of you wants them.

Each event: ``timestamp`` (RFC 3339 UTC, ms; or epoch numbers, ``timestamp_format``),
``message``, ``level``, ``logger``, any ``exc_info``/``stack_info`` text, the ``extra=``
fields, and ``sourceId``; ``field_names`` renames or drops our own fields (never an
``extra=`` one, which also never replaces a renamed field).

The body (``format``): ``array``, a JSON array per request; ``ndjson``, one JSON object per
line (``application/x-ndjson``); ``object``, one request per record, for receivers that
take a single event per request (GELF HTTP): a batch then goes as requests back to back.

Who we are (:func:`auth_headers`, shared with OTLP): ``headers`` (extra headers, their
values secret), ``token`` (``Authorization: Bearer <token>``, or under ``token_header``
after ``token_prefix``), or Basic auth from the URL's user-info, which is taken out of the
URL we send to (and out of the spool's identity: fixing a password keeps the spool).

Any 2xx is success. 401 and 403 hold the events on disk (spooled, retried after a pause,
so a fixed token in the next configuration delivers them), reported with the status; a
redirect is followed only as :meth:`Transport.send` says (307/308, same origin), any other
is reported and held; 408/425/429/5xx retry; other 4xx reject the batch.

Threading: ``validate`` (the constructor's thread) computes the headers, the URL and the
renames once; after that the service holds no mutable state, and ``event``/``encode``/
``judge`` run on the worker thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..handler import BatchingHandler
from ..options import HTTP_AUTH, Option, choice, renames
from ..records import dumps
from ..service import HOLD, Service, Verdict, iso_utc
from ..transport import Request, split_userinfo

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..option_types import JSONOptions

FORMATS = ("array", "ndjson", "object")
TIMESTAMP_FORMATS = ("iso", "epoch_ms", "epoch_s", "epoch_ns")
#: our own fields, which ``field_names`` may rename or drop
OWN_FIELDS = ("timestamp", "message", "level", "logger", "exc_info", "stack_info", "sourceId")
CONTENT_TYPES = {"array": "application/json", "ndjson": "application/x-ndjson"}
AUTH_WHY = {401: "unauthorized: check token, headers or the url's user-info", 403: "forbidden"}


def auth_headers(settings) -> dict:
    """The headers that say who we are: Basic from the url's user-info, then ``headers``,
    then the token. Two of them setting the same header is a ValueError (which one should
    win is the user's call, not ours)."""
    out: dict = {}
    _, basic = split_userinfo(settings.url)
    if basic:
        out["Authorization"] = basic
    for name, value in (settings.headers or {}).items():
        _add_once(out, name, value, "headers")
    if settings.token:
        header = settings.token_header
        prefix = settings.token_prefix
        if prefix is None:
            prefix = "Bearer" if header.lower() == "authorization" else ""
        value = f"{prefix.strip()} {settings.token}" if prefix.strip() else settings.token
        if value != value.strip() or not value.isprintable():
            raise ValueError("token must be printable text without surrounding spaces")
        _add_once(out, header, value, "token")
    return out


def _add_once(headers: dict, name: str, value: str, option: str) -> None:
    for existing in headers:
        if existing.lower() == name.lower():
            raise ValueError(
                f"{option} sets the {name} header that another option (or the url's "
                "user-info) already sets; use one"
            )
    headers[name] = value


def epoch_ns(created: float) -> int:
    """``record.created`` in integer nanoseconds, keeping the float's sub-second digits."""
    seconds = int(created)
    return seconds * 1_000_000_000 + round((created - seconds) * 1e9)


def timestamp_formatter(kind: str):
    if kind == "epoch_ms":
        return lambda created: round(created * 1000)
    if kind == "epoch_s":
        return float
    if kind == "epoch_ns":
        return epoch_ns
    return iso_utc


class JSONService(Service):
    name = "json"
    env = "JSON"
    options = HTTP_AUTH + (
        Option("format", choice(*FORMATS), "array", "array, ndjson or object (one per request)"),
        Option(
            "field_names",
            renames,
            None,
            'renames of our fields, e.g. {"timestamp": "@timestamp"}; null drops one',
        ),
        Option("timestamp_format", choice(*TIMESTAMP_FORMATS), "iso", ", ".join(TIMESTAMP_FORMATS)),
    )
    defaults = {"batch_size": 5000, "max_batch_bytes": 5 * 1024 * 1024, "compression": "none"}

    def validate(self) -> None:
        s = self.settings
        self.require("url")
        unknown = sorted(set(s.field_names or {}) - set(OWN_FIELDS))
        if unknown:
            raise ValueError(
                f"field_names: {', '.join(unknown)} not among our fields "
                f"({', '.join(OWN_FIELDS)}); extra= fields keep their names"
            )
        self._headers = {
            "Content-Type": CONTENT_TYPES.get(s.format, "application/json"),
            **auth_headers(s),
        }
        self._url = split_userinfo(s.url)[0]
        self._stamp = timestamp_formatter(s.timestamp_format)
        self._renames = dict(s.field_names or {})
        if s.format == "object":
            # one record per request: every batch is one record, so retries, the spool and
            # its replay all work on single records (no batch is ever half sent)
            s.batch_size = 1

    def identity(self) -> str:
        """The url without user-info (fixing a password must not orphan the spool);
        ``object`` format apart, since only it can't replay a many-record batch."""
        base = split_userinfo(self.settings.url)[0]
        return base + ("\nformat=object" if self.settings.format == "object" else "")

    # ----------------------------------------------------------------- mapping
    def event(self, fields: dict, created: float, source_id: str) -> dict:
        event = {"timestamp": self._stamp(created), **fields}
        event.setdefault("sourceId", source_id)
        if not self._renames:
            return event
        ours, extras = {}, {}
        for key, value in event.items():
            if key in OWN_FIELDS:
                name = self._renames.get(key, key)
                if name is not None:
                    ours[name] = value
            else:
                extras[key] = value
        ours.update((k, v) for k, v in extras.items() if k not in ours)
        return ours

    # ----------------------------------------------------------------- wire
    def encode(self, events: list) -> Request:
        form = self.settings.format
        if form == "ndjson":
            body = "".join([dumps(event) + "\n" for event in events])
        elif form == "object":
            if len(events) != 1:
                raise ValueError("format=object sends one record per request")
            body = dumps(events[0])
        else:
            body = dumps(events)
        return Request(self._url, body.encode("ascii"), dict(self._headers))

    def judge(self, reply, events: list, policy) -> Verdict:
        status = reply.status
        if status in (401, 403):
            reason = f"HTTP {status} ({AUTH_WHY[status]}): {reply.text()}"
            return Verdict(HOLD, reason, kind=f"http_{status}")
        return super().judge(reply, events, policy)


class JSONHandler(BatchingHandler):
    """POSTs batches of JSON events to ``url``."""

    service_class = JSONService

    if TYPE_CHECKING:  # the options, for IDEs and type checkers (options table: the truth)

        def __init__(
            self, queue: Any = None, *, level: int | str = 0, **options: Unpack[JSONOptions]
        ) -> None: ...
