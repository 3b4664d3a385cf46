"""Deliver one batch: pack it into requests, send each, read the service's verdict, retry.

``Exporter.export(events) -> ExportResult`` returns what became of the batch as a value
(as OpenTelemetry's exporters do): how many events were stored, how many refused for good,
and which are still unsent (not tried, or out of tries). It keeps nothing itself: what to
do with unsent events (spool them, count them) is the spool policy's one decision
(:class:`loghandlers.spool.Keeper`). It knows nothing of buffers or triggers (the
worker's job) nor of any one service's wire (the service's).

When the endpoint fails for good the exporter opens a *hold* (``held()``): until it ends,
a keeper with a spool sends nothing new and keeps batches on disk, so events still arrive
in the order they were logged once the endpoint is back.

Threading: an exporter is used by its handler's worker thread only, with two exceptions
written by a closing thread: ``deadline`` (one float assignment, read before every wait and
request) and ``wakeup`` (an Event that ends a backoff wait early). ``hold_until`` is the
worker's; ``resume()`` from another thread just zeroes it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from .records import dumps
from .service import DELIVERED, HOLD, REJECTED, RETRY, Verdict
from .status import Reporter, Stats
from .transport import RetryPolicy, Transport, redact_url

AUTH_HOLD_SECONDS = 60.0

OUTCOMES = ("delivered", "partial", "rejected", "spooled", "failed", "pending")


@dataclass(frozen=True)
class ExportResult:
    """What became of one batch: a value, like OpenTelemetry's ``ExportResult``.

    ``outcome`` is one of :data:`OUTCOMES`: "delivered" (all stored), "partial" (some
    stored, the rest refused for good), "rejected" (none stored, never will be), "spooled"
    (what could not be delivered is on disk for a later replay), "failed" (what could not
    be delivered is lost, and counted), "pending" (``export_now`` stopped waiting; the
    batch is still in flight and keeps exactly one fate). ``reasons`` are the server's
    reasons, secrets scrubbed; ``status`` the last HTTP status; ``reply_json`` the last
    reply body when it was JSON, as the server wrote it (not scrubbed, so not in the repr). ``unsent``: events neither stored nor refused (the
    exporter's answer to the spool policy; empty once the policy has kept them).
    """

    outcome: str
    delivered: int = 0
    rejected: int = 0
    reasons: tuple = ()
    status: Any = None
    reply_json: Any = field(default=None, repr=False)  # the server's words: may echo secrets
    unsent: tuple = field(default=(), repr=False, compare=False)


def reply_json_of(body: bytes) -> Any:
    """The reply body parsed as JSON, or None when it isn't JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


class _Tally:
    """What one export has found out so far."""

    __slots__ = ("delivered", "rejected", "reasons", "status", "body", "unsent", "stopped")

    def __init__(self) -> None:
        self.delivered = 0
        self.rejected = 0
        self.reasons: list = []
        self.status: int | None = None
        self.body = b""
        self.unsent: list = []
        self.stopped = False  # out of tries: the rest of the batch is not tried

    def cut_short(self, events: list) -> None:
        """A bug stopped the export: parts go out in order, so everything after what was
        stored or refused (and not already unsent) is unsent too."""
        done = self.delivered + self.rejected + len(self.unsent)
        self.unsent.extend(events[done:])

    def result(self) -> ExportResult:
        if self.unsent:
            outcome = "failed"
        elif self.rejected and self.delivered:
            outcome = "partial"
        elif self.rejected:
            outcome = "rejected"
        else:
            outcome = "delivered"
        return ExportResult(
            outcome,
            self.delivered,
            self.rejected,
            tuple(self.reasons),
            self.status,
            reply_json_of(self.body),
            tuple(self.unsent),
        )


class Exporter:
    def __init__(
        self,
        service,
        transport: Transport,
        policy: RetryPolicy,
        stats: Stats,
        reporter: Reporter,
        max_batch_bytes: int,
    ):
        self.service = service
        self.transport = transport
        self.policy = policy
        self.stats = stats
        self.reporter = reporter
        self.max_batch_bytes = max_batch_bytes
        self.wakeup = threading.Event()  # set by close(): backoff waits end early
        self.deadline: float | None = None  # a close() in progress: no wait may pass it
        self.hold_until = 0.0
        self.setup_done = service.setup_request() is None

    # ----------------------------------------------------------------- public
    def held(self) -> bool:
        """Is a hold open (the endpoint failed for good a moment ago)?"""
        return time.monotonic() < self.hold_until

    def resume(self) -> None:
        """End a hold now: the next batch is tried at once."""
        self.hold_until = 0.0

    def past_deadline(self) -> bool:
        deadline = self.deadline
        return deadline is not None and time.monotonic() >= deadline

    def export(self, events: list, replay: bool = False) -> ExportResult:
        """Send ``events`` in as many requests as ``max_batch_bytes`` needs; never raises."""
        tally = _Tally()
        if not events:
            return tally.result()
        if not replay:
            self.stats.add(batches=1)
        try:
            if not self._ensure_setup(tally):
                tally.unsent.extend(events)
                return tally.result()
            for part, request in self._fit(events):
                if tally.stopped:
                    tally.unsent.extend(part)
                else:
                    self._deliver(part, request, tally)
        except Exception as exc:  # a bug in packing or encoding: keep what is not stored
            self.reporter.error("internal", f"{type(exc).__name__}: {exc}", len(events))
            tally.cut_short(events)
        return tally.result()

    # ----------------------------------------------------------------- internals
    def _fit(self, events: list):
        """Requests within ``max_batch_bytes`` (the service packs); shrink lone giants."""
        limit = self.max_batch_bytes
        for part, request in self.service.pack(events, limit):
            if request is None:  # one event alone is over the limit
                self.stats.add(truncated=1)
                part = [shrink(part[0], self.service, limit)]
            yield part, request

    def _timeout(self) -> float:
        """The configured timeout, cut short by a close() deadline."""
        deadline = self.deadline
        if deadline is None:
            return self.transport.timeout
        return max(0.05, min(self.transport.timeout, deadline - time.monotonic()))

    def _hold(self, seconds: float) -> None:
        self.hold_until = max(self.hold_until, time.monotonic() + seconds)

    def _ensure_setup(self, tally: _Tally) -> bool:
        if self.setup_done:
            return True
        request = self.service.setup_request()
        verdict = self._attempts(
            request, 0, lambda reply: self.service.judge_setup(reply, self.policy), tally
        )
        if verdict.outcome == DELIVERED:
            self.setup_done = True
            return True
        if verdict.outcome == REJECTED:
            self._hold(AUTH_HOLD_SECONDS)
        return False

    def _deliver(self, events: list, request, tally: _Tally) -> None:
        """One request's worth of events: stored, refused, or (out of tries) unsent.
        After a partial refusal only the good events are sent again, at once."""
        while events:
            if request is None:
                request = self.service.encode(events)
            verdict = self._attempts(
                request,
                len(events),
                lambda reply, ev=events: self.service.judge(reply, ev, self.policy),
                tally,
            )
            if verdict.outcome == DELIVERED:
                tally.delivered += len(events) - verdict.rejected
                tally.rejected += verdict.rejected
                return
            if verdict.resend is not None:
                tally.rejected += len(events) - len(verdict.resend)
                events, request = list(verdict.resend), None
                continue
            if verdict.outcome == REJECTED:
                tally.rejected += len(events)
                return
            tally.unsent.extend(events)  # out of tries, or on hold
            tally.stopped = True
            return

    def _attempts(self, request, count: int, judge, tally: _Tally) -> Verdict:
        """Send ``request`` until a final verdict; a RETRY or HOLD verdict means give up."""
        body, headers = self.transport.compress(request)
        retry = 0
        while True:
            self.reporter.fire(
                "send", {"url": redact_url(request.url), "events": count, "bytes": len(body)}
            )
            started = time.monotonic()
            try:
                fresh = self.service.attempt_headers(request)
                if fresh:
                    headers = {**headers, **fresh}
                reply = self.transport.send(request, body, headers, self._timeout())
                tally.status, tally.body = reply.status, reply.body
                verdict = judge(reply)
            except requests.RequestException as exc:
                verdict = Verdict(RETRY, f"{type(exc).__name__}: {exc}", kind="network")
            except Exception as exc:  # a bug in encoding or reading: keep the data
                self.reporter.error("internal", f"{type(exc).__name__}: {exc}", count)
                return Verdict(HOLD, "internal error")
            if verdict.reason and (verdict.outcome != DELIVERED or verdict.rejected):
                tally.reasons.append(self.reporter.scrub(verdict.reason))
            if verdict.outcome == DELIVERED:
                if verdict.rejected:
                    self.reporter.error(
                        verdict.kind or "rejected", verdict.reason, verdict.rejected
                    )
                self.reporter.fire(
                    "flush",
                    {
                        "events": count,
                        "status": reply.status,
                        "seconds": time.monotonic() - started,
                    },
                )
                return verdict
            if verdict.resend is not None:
                self.reporter.error(
                    verdict.kind or "rejected", verdict.reason, count - len(verdict.resend)
                )
                return verdict
            if verdict.outcome == REJECTED:
                self.reporter.error(verdict.kind or "rejected", verdict.reason, count)
                return verdict
            if verdict.outcome == HOLD:
                self.reporter.error(verdict.kind or "hold", verdict.reason, count)
                self._hold(AUTH_HOLD_SECONDS)
                return verdict
            retry += 1
            delay = self.policy.delay(retry, verdict.retry_after)
            too_long = delay > self.policy.max_backoff
            deadline = self.deadline
            past_deadline = deadline is not None and time.monotonic() + delay > deadline
            if retry > self.policy.retries or too_long or past_deadline:
                self.reporter.error(verdict.kind or "unavailable", verdict.reason, count)
                self._hold(delay if too_long else self.policy.delay(retry))
                return verdict
            self.stats.add(retried=count)
            wait_ends = time.monotonic() + delay
            if self.wakeup.wait(delay):  # close() began: the deadline check above still holds
                time.sleep(max(0.0, wait_ends - time.monotonic()))


TRUNCATED = "...[truncated {} chars]"


def shrink(event: dict, service, limit: int) -> dict:
    """Cut the longest string fields of an event until its request fits ``limit`` bytes."""
    event = dict(event)
    for _ in range(8):
        size = len(service.encode([event]).body)
        if size <= limit:
            return event
        longest = max(
            (key for key, value in event.items() if isinstance(value, str)),
            key=lambda key: len(event[key]),
            default=None,
        )
        if longest is None or len(event[longest]) < 64:
            break
        value = event[longest]
        bytes_per_char = len(dumps(value)) / max(1, len(value))  # escapes make some wider
        keep = max(0, len(value) - math.ceil((size - limit + 128) / bytes_per_char))
        event[longest] = value[:keep] + TRUNCATED.format(len(value) - keep)
    return {
        key: value
        for key, value in event.items()
        if len(dumps(value)) < 256 or key in ("message", "sourceId", "timestamp")
    }
