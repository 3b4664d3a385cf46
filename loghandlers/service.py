"""What a service is: the few things that differ between ingestion APIs.

A service turns fields into its event, a batch of events into a :class:`Request`, and a
:class:`Reply` into a :class:`Verdict`. It knows nothing of threads, buffers, retries or
spools; those are shared (see :mod:`loghandlers.worker` and :mod:`loghandlers.exporter`).

Threading: a service is built with its handler and then used by that handler's worker
thread only (``event`` during conversion, ``pack``/``encode``/``judge`` in the exporter);
its settings are never written after construction. Anything it caches (a form tail, a
queue URL) is written by the worker alone.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from .options import Option
from .records import dumps
from .transport import (
    Reply,
    Request,
    RetryPolicy,
    parse_retry_after,
    redact_userinfo,
    url_credentials,
)

DELIVERED = "delivered"  # the whole batch is stored
RETRY = "retry"  # nothing stored; the same request may succeed later
REJECTED = "rejected"  # nothing stored and never will be: count, don't keep
HOLD = "hold"  # nothing stored until a person acts (bad credentials): keep on disk


@dataclass
class Verdict:
    """The service's reading of one reply."""

    outcome: str
    reason: str = ""
    retry_after: float | None = None
    #: with DELIVERED: events the server turned down for good (count them as rejected)
    rejected: int = 0
    #: with RETRY: send only these next time (the server accepted nothing, some were bad)
    resend: list | None = None
    kind: str = ""


_second_cache: list = [(None, "")]  # one slot, replaced whole: safe across worker threads


def iso_utc(created: float) -> str:
    """RFC 3339 UTC with milliseconds; the per-second prefix is cached (logs come in bursts)."""
    second = int(created)
    cached = _second_cache[0]
    if cached[0] != second:
        moment = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
        cached = (second, moment.strftime("%Y-%m-%dT%H:%M:%S."))
        _second_cache[0] = cached
    return f"{cached[1]}{int((created - second) * 1000):03d}Z"


def pack_chunks(events: list, max_bytes: int, overhead: int, chunk, request_of):
    """Pack events into requests by bytes in one pass, for encodings made per event:
    ``chunk(event)`` is its text on the wire, ``request_of(chunks)`` the request around
    them, ``overhead`` that request's size without any chunk."""
    part: list = []
    chunks: list = []
    size = overhead
    for event in events:
        text = chunk(event)
        if overhead + len(text) > max_bytes:
            yield [event], None  # alone over the limit: the worker shrinks it
            continue
        if size + len(text) > max_bytes:
            yield part, request_of(chunks)
            part, chunks, size = [], [], overhead
        part.append(event)
        chunks.append(text)
        size += len(text)
    if part:
        yield part, request_of(chunks)


def unfollowed_redirect(reply: Reply) -> str:
    """Why a 3xx was not followed (see ``Transport.send``), without any user-info."""
    location = redact_userinfo(str(reply.headers.get("Location") or "nowhere"))
    return (
        f"HTTP {reply.status} redirect to {location} not followed (only a 307/308 to the "
        "same scheme, host and port is): records kept; fix the url"
    )


class Service:
    """Base of every service; subclasses override only what their wire differs in."""

    name: ClassVar[str] = "json"
    env: ClassVar[str] = "JSON"
    options: ClassVar[tuple[Option, ...]] = ()
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: options that, with the url, name this handler's spool
    identity_options: ClassVar[tuple[str, ...]] = ()
    content_type: ClassVar[str] = "application/json"

    def __init__(self, settings):
        self.settings = settings

    def validate(self) -> None:
        """Raise ValueError for settings this service can't work with."""

    def require(self, *names: str) -> None:
        """A clear error for each required option left empty, naming its variable."""
        handler = type(self).__name__.replace("Service", "Handler")
        for name in names:
            if not getattr(self.settings, name):
                variable = f"LOGHANDLERS_{self.env}_{name.upper()}"
                raise ValueError(f"{handler} needs {name}= (or {variable})")

    # ----------------------------------------------------------------- identity
    def endpoint(self) -> str:
        return self.settings.url

    def identity(self) -> str:
        parts = [self.endpoint()]
        parts += [f"{name}={getattr(self.settings, name, '')}" for name in self.identity_options]
        return "\n".join(parts)

    def secrets(self) -> list[str]:
        """Values that must never appear in output (used to scrub error text): secret
        options, and the user-info of the URL (as written, decoded, and as Basic auth)."""
        found = []
        for spec in self.options:
            value = getattr(self.settings, spec.name, None) if spec.secret else None
            if isinstance(value, Mapping):  # e.g. headers: each value is a secret
                found += [str(item) for item in value.values() if item]
            elif value:
                found.append(value)
        return found + url_credentials(self.settings.url) + url_credentials(self.endpoint())

    # ----------------------------------------------------------------- mapping
    def event(self, fields: dict, created: float, source_id: str) -> dict:
        """Fields of one record -> this service's event."""
        event = {"timestamp": iso_utc(created), **fields}
        event.setdefault("sourceId", source_id)
        return event

    # ----------------------------------------------------------------- wire
    def setup_request(self) -> Request | None:
        """A request that must succeed once before any batch (e.g. bucket creation)."""
        return None

    def encode(self, events: list) -> Request:
        """The whole batch in one encoder call: a JSON array, as most services take."""
        return Request(
            self.endpoint(), dumps(events).encode("ascii"), {"Content-Type": self.content_type}
        )

    def pack(self, events: list, max_bytes: int):
        """Yield ``(events, request)`` pairs whose bodies fit ``max_bytes``.

        Encodes the whole batch in one call (cheapest when it fits, as it usually does) and
        splits it only when it doesn't; a lone event over the limit comes back with
        ``request=None`` for the worker to shrink. A service whose encoding is per event
        (Panoply) packs by bytes in one pass instead.
        """
        request = self.encode(events)
        size = len(request.body)
        if size <= max_bytes:
            yield events, request
        elif len(events) == 1:
            yield events, None
        else:
            parts = min(len(events), math.ceil(size / max_bytes * 1.1))
            step = math.ceil(len(events) / parts)
            for start in range(0, len(events), step):
                yield from self.pack(events[start : start + step], max_bytes)

    def attempt_headers(self, request: Request) -> Mapping[str, str]:
        """Headers that must be fresh on every attempt (e.g. a send-time clock).

        ``encode`` already sets them once; the exporter merges these over the request's
        headers right before each try, because one encoded request may be re-sent later.
        """
        return {}

    def judge(self, reply: Reply, events: list, policy: RetryPolicy) -> Verdict:
        """Default reading: 2xx stored, 408/429/5xx retry, a redirect the transport did
        not follow is held (the records are kept until a person fixes the url), any other
        answer final."""
        status = reply.status
        if 200 <= status < 300:
            return Verdict(DELIVERED)
        if 300 <= status < 400:
            return Verdict(HOLD, unfollowed_redirect(reply), kind="redirect")
        reason = f"HTTP {status}: {reply.text()}".strip()
        if policy.is_retryable(status):
            retry_after = parse_retry_after(reply.headers.get("Retry-After"))
            return Verdict(RETRY, reason, retry_after=retry_after, kind=f"http_{status}")
        return Verdict(REJECTED, reason, kind=f"http_{status}")

    def judge_setup(self, reply: Reply, policy: RetryPolicy) -> Verdict:
        """A refused setup call means bad credentials or config: keep the events, hold."""
        verdict = self.judge(reply, [], policy)
        if verdict.outcome == REJECTED:
            verdict.outcome = HOLD
        return verdict
