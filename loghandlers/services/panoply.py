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
import re
from urllib.parse import quote, urlencode

from ..handler import BatchingHandler
from ..options import Option, text
from ..records import dumps
from ..service import HOLD, RETRY, Service, Verdict, iso_utc, pack_chunks
from ..transport import Request, form_quote
from ..version import __version__

SQS_MAX_BYTES = 262_144
FORM_HEAD = "Action=SendMessage&MessageBody="
_CODE = re.compile(rb"<Code>\s*([^<\s]+)\s*</Code>")
HOLD_CODES = ("AccessDenied", "InvalidClientTokenId", "NonExistentQueue", "QueueDoesNotExist")
THROTTLED = ("Throttling", "ThrottlingException", "RequestThrottled")
_REGION = re.compile(r"[A-Za-z0-9-]+")


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
        event.update((k, v) for k, v in fields.items() if k != "table")
        event.setdefault("sourceId", source_id)
        event["__table"] = self.settings.table if table in (None, "") else str(table)
        return event

    def _chunk(self, event: dict) -> str:
        """One record as it stands in the form: its JSON, %-encoded, then two newlines."""
        if "__table" not in event:
            event = {**event, "__table": self.settings.table}
        return form_quote(dumps(event)) + "%0A%0A"

    def _request(self, chunks: list) -> Request:
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
        body = "".join([FORM_HEAD, *chunks, self._form_tail]).encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return Request(self.endpoint(), body, headers, compressible=False)

    def encode(self, events: list) -> Request:
        return self._request([self._chunk(e) for e in events])

    def pack(self, events: list, max_bytes: int):
        self._request([])  # computes the fixed part of the form
        overhead = len(FORM_HEAD) + len(self._form_tail)
        return pack_chunks(events, max_bytes, overhead, self._chunk, self._request)

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
