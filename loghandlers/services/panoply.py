"""Panoply: an unsigned SQS ``SendMessage`` to the queue named by the credentials.

``api_key`` is ``ACCOUNT/RAND1``; ``api_secret`` is base64 of ``RAND2/UUID/AWSACCOUNT/REGION``;
the queue is ``https://sqs.<REGION>.amazonaws.com/<AWSACCOUNT>/sdk-<ACCOUNT>-<RAND2>``
(``url`` replaces that whole URL, e.g. for a local collector). The form fields go in the
official SDK's order; ``MessageBody`` is each record's JSON followed by two newlines, and
the key, the secret and ``loghandlers-<version>`` travel as message attributes. Unlike the
SDK, every field is form-encoded (a ``+`` in the secret survives) and a request never
exceeds SQS's 262,144-byte limit (``max_batch_bytes``: records are packed into requests
by size, each encoded once).

Each record: ``timestamp`` (RFC 3339 UTC, ms), the message, level, logger, any traceback
text, the ``extra=`` fields, ``sourceId``, then ``__table`` (``extra={"table": ...}``, else
the ``table`` option). 401/403 and queue or credential errors hold the events on disk;
throttling and 5xx retry; other 4xx reject the batch.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from ..handler import BatchingHandler
from ..options import Option, text
from ..records import dumps, json_default
from ..service import HOLD, RETRY, Service, Verdict, iso_utc, pack_chunks
from ..transport import Request, form_quote
from ..version import __version__

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..option_types import PanoplyOptions

SQS_MAX_BYTES = 262_144
FORM_HEAD = "Action=SendMessage&MessageBody="
_CODE = re.compile(rb"<Code>\s*([^<\s]+)\s*</Code>")
HOLD_CODES = ("AccessDenied", "InvalidClientTokenId", "NonExistentQueue", "QueueDoesNotExist")
THROTTLED = ("Throttling", "ThrottlingException", "RequestThrottled")
_REGION = re.compile(r"[A-Za-z0-9-]+")

#: one record's end in the form: "\n\n", form-encoded
RECORD_END = "%0A%0A"
#: the same encoder as :func:`loghandlers.records.dumps` uses on its fast path
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, default=json_default)
#: a string put between the events of a batch so one encoder call writes them all; as JSON
#: it sits between two ", " separators, where no event's own text can hold it whole
_MARK = "\x00"
_MARK_TEXT = ", " + json.dumps(_MARK) + ", "
#: a \\uXXXX high surrogate not followed by a low one, or a low one not preceded by a high
#: one (the test :func:`loghandlers.records.dumps` makes before it mends them)
_LONE_SURROGATE = re.compile(
    r"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
)
_FORM_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
#: what quote_plus(safe="") does to each other character of ASCII JSON text (and "\n"):
#: "%" first (later escapes add some), "+" before " " becomes "+"
_FORM_ESCAPES = (
    ("%", "%25"),
    *((c, f"%{ord(c):02X}") for c in map(chr, range(33, 128)) if c not in _FORM_SAFE + "%"),
    ("\n", "%0A"),
    (" ", "+"),
)


def form_quote_json(text: str) -> str:
    """``quote_plus(text, safe="")`` for ASCII JSON text with "\\n" separators, one C-level
    ``str.replace`` per character that occurs (a long batch costs a few passes, not a
    Python step per byte). Other control characters never occur in such text."""
    for char, escaped in _FORM_ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return text


def parse_credentials(api_key: str, api_secret: str) -> tuple[str, str, str, str]:
    """(ACCOUNT, RAND2, AWSACCOUNT, REGION); a ValueError never shows a value."""
    account, slash, rand1 = api_key.strip().partition("/")
    if not (account and slash and rand1):
        raise ValueError("api_key must look like ACCOUNT/KEY (as Panoply issues it)")
    try:
        decoded = base64.b64decode(api_secret.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        decoded = ""
    parts = decoded.split("/")
    if len(parts) != 4 or not all(parts) or not _REGION.fullmatch(parts[3]):
        raise ValueError(
            "api_secret is not a Panoply API secret (base64 of four /-separated parts)"
        )
    return account, parts[0], parts[2], parts[3]


class PanoplyService(Service):
    name = "panoply"
    env = "PANOPLY"
    options = (
        Option("api_key", text, "", "Panoply API key (ACCOUNT/KEY)"),
        Option("api_secret", text, "", "Panoply API secret (base64)", secret=True),
        Option("table", text, "logs", 'destination table; "table" in extra= wins'),
    )
    defaults = {"compression": "none", "batch_size": 5000, "max_batch_bytes": SQS_MAX_BYTES}
    identity_options = ("table",)
    _queue_url: str | None = None
    _form_tail: str | None = None

    def validate(self) -> None:
        s = self.settings
        self.require("api_key", "api_secret")
        parse_credentials(s.api_key, s.api_secret)
        if not s.table:
            raise ValueError("table must not be empty")

    def endpoint(self) -> str:
        if self.settings.url:
            return self.settings.url
        if self._queue_url is None:
            account, rand2, aws_account, region = parse_credentials(
                self.settings.api_key, self.settings.api_secret
            )
            path = "/".join(quote(p, safe="") for p in (aws_account, f"sdk-{account}-{rand2}"))
            self._queue_url = f"https://sqs.{region}.amazonaws.com/{path}"
        return self._queue_url

    def event(self, fields: dict, created: float, source_id: str) -> dict:
        table = fields.get("table")
        event = {"timestamp": iso_utc(created)}
        event.update(fields)
        if "table" in event:
            del event["table"]
        event.setdefault("sourceId", source_id)
        event["__table"] = self.settings.table if table in (None, "") else str(table)
        return event

    def _chunk(self, event: dict) -> str:
        """One record as it stands in the form: its JSON, %-encoded, then two newlines."""
        if "__table" not in event:
            event = {**event, "__table": self.settings.table}
        return form_quote(dumps(event)) + RECORD_END

    def quoted_records(self, events: list) -> list | None:
        """Every event's form-encoded JSON (without its RECORD_END), from one encoder call
        and one form-encoding of the whole batch; byte for byte what :meth:`_chunk` makes.
        None when the batch needs :meth:`_chunk`'s care: an event without ``__table``, a
        value the plain encoder refuses, a possible lone surrogate, or a value that happens
        to hold the batch's mark."""
        count = len(events)
        if not count or not all("__table" in event for event in events):
            return None
        marked = [_MARK] * (2 * count - 1)
        marked[::2] = events
        try:
            text = _ENCODER.encode(marked)
        except Exception:  # NaN, a cycle, an odd key: dumps repairs them one record at a time
            return None
        if "\\ud" in text and _LONE_SURROGATE.search(text):  # dumps mends those
            return None
        body = text[1:-1]
        if body.count(_MARK_TEXT) != count - 1:
            return None
        quoted = form_quote_json(body.replace(_MARK_TEXT, "\n\n"))
        return quoted.split(RECORD_END)

    def _tail(self) -> str:
        """The form after the records: the credentials and the sdk attribute (made once)."""
        if self._form_tail is None:
            attributes = urlencode(
                [
                    ("MessageAttribute.1.Name", "key"),
                    ("MessageAttribute.1.Value.DataType", "String"),
                    ("MessageAttribute.1.Value.StringValue", self.settings.api_key),
                    ("MessageAttribute.2.Name", "secret"),
                    ("MessageAttribute.2.Value.DataType", "String"),
                    ("MessageAttribute.2.Value.StringValue", self.settings.api_secret),
                    ("MessageAttribute.3.Name", "sdk"),
                    ("MessageAttribute.3.Value.DataType", "String"),
                    ("MessageAttribute.3.Value.StringValue", f"loghandlers-{__version__}"),
                ]
            )
            self._form_tail = "&" + attributes
        return self._form_tail

    def _request(self, chunks: list) -> Request:
        body = "".join([FORM_HEAD, *chunks, self._tail()]).encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return Request(self.endpoint(), body, headers, compressible=False)

    def encode(self, events: list) -> Request:
        quoted = self.quoted_records(events)
        if quoted is None:
            return self._request([self._chunk(e) for e in events])
        return self._request([RECORD_END.join(quoted), RECORD_END])

    def pack(self, events: list, max_bytes: int):
        """Requests of at most ``max_bytes``, packed by :func:`pack_chunks`; each record is
        encoded once, the whole batch in one encoder call when it can be (see
        :meth:`quoted_records`)."""
        overhead = len(FORM_HEAD) + len(self._tail())
        quoted = self.quoted_records(events)
        if quoted is None:
            yield from pack_chunks(events, max_bytes, overhead, self._chunk, self._request)
            return
        if overhead + sum(map(len, quoted)) + len(RECORD_END) * len(events) <= max_bytes:
            yield events, self._request([RECORD_END.join(quoted), RECORD_END])
            return
        chunks = iter([text + RECORD_END for text in quoted[: len(events)]])
        yield from pack_chunks(events, max_bytes, overhead, lambda _: next(chunks), self._request)

    def judge(self, reply, events: list, policy) -> Verdict:
        status = reply.status
        if status < 400:
            return super().judge(reply, events, policy)
        found = _CODE.search(reply.body)
        code = found.group(1).decode("ascii", "replace") if found else ""
        reason = f"HTTP {status} {code}: {reply.text()}".strip()
        if status in (401, 403) or any(c in code for c in HOLD_CODES):
            return Verdict(HOLD, reason, kind=f"http_{status}")
        if code in THROTTLED:
            return Verdict(RETRY, reason, kind="throttled")
        return super().judge(reply, events, policy)


class PanoplyHandler(BatchingHandler):
    """Sends records to Panoply through its SQS queue."""

    service_class = PanoplyService

    if TYPE_CHECKING:  # the options, for IDEs and type checkers (options table: the truth)

        def __init__(
            self, queue: Any = None, *, level: int | str = 0, **options: Unpack[PanoplyOptions]
        ) -> None: ...
