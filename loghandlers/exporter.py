"""Deliver one batch: encode, send, read the verdict, retry or keep it on disk.

The exporter knows nothing of buffers or timing triggers (that is the worker's job) and
nothing of any one service's wire (that is the service's). When the endpoint fails for
good, it opens a *hold*: until the hold ends, new batches go straight to the spool instead
of each waiting out its own retries, and the spool is replayed oldest-first before any new
batch is sent, so events arrive in the order they were logged.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from .service import DELIVERED, HOLD, REJECTED, RETRY, Verdict
from .spool import Spool, SpoolError
from .status import Reporter, Stats
from .transport import RetryPolicy, Transport, redact_url

AUTH_HOLD_SECONDS = 60.0

OUTCOMES = ("delivered", "partial", "rejected", "spooled", "failed", "pending")


@dataclass(frozen=True)
class ExportResult:
    """What became of one batch: a value, like OpenTelemetry's ``ExportResult``.

    ``outcome`` is one of :data:`OUTCOMES`: "delivered" (all stored), "partial" (some
    stored, the rest rejected for good), "rejected" (none stored, never will be),
    "spooled" (kept on disk for a later replay), "failed" (neither delivered nor kept:
    counted as failed), "pending" (``export_now`` stopped waiting; the batch is still in
    flight and keeps exactly one fate). ``reasons`` are the server's reasons, secrets
    scrubbed; ``reply_json`` is the last reply body when it was JSON.
    """

    outcome: str
    delivered: int = 0
    rejected: int = 0
    reasons: tuple = ()
    status: Any = None
    reply_json: Any = None


def reply_json_of(body: bytes) -> Any:
    """The reply body parsed as JSON, or None when it isn't JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


class Exporter:
    def __init__(
        self,
        service,
        transport: Transport,
        policy: RetryPolicy,
        spool: Spool | None,
        spool_always: bool,
        stats: Stats,
        reporter: Reporter,
        wakeup: threading.Event,
    ):
        self.service = service
        self.transport = transport
        self.policy = policy
        self.spool = spool
        self.spool_always = spool_always and spool is not None
        self.stats = stats
        self.reporter = reporter
        self.wakeup = wakeup  # set by close(): waits end early
        self.hold_until = 0.0
        self.setup_done = service.setup_request() is None
        self.deadline: float | None = None  # a close() in progress: no wait may pass it
        self.spool_pending = bool(spool and spool.has_pending())
        self.last_delivered = False
        self._reasons = []
        self._last_status = None
        self._last_body = b""
        self.abandoned = False
        self._current_on_disk = False

    # ----------------------------------------------------------------- public
    def export(self, events: list, request=None) -> ExportResult:
        """Deliver, spool or count ``events``; never raises. ``request``: already encoded."""
        before = self.stats.snapshot()
        self._reasons: list = []
        self._last_status = None
        self._last_body = b""
        self._export(events, request)
        after = self.stats.snapshot()
        delta = {k: after[k] - before[k] for k in ("sent", "rejected", "spooled", "failed")}
        if delta["spooled"]:
            outcome = "spooled"
        elif delta["failed"]:
            outcome = "failed"
        elif delta["rejected"] and delta["sent"]:
            outcome = "partial"
        elif delta["rejected"]:
            outcome = "rejected"
        else:
            outcome = "delivered"
        return ExportResult(
            outcome,
            delta["sent"],
            delta["rejected"],
            tuple(self._reasons),
            self._last_status,
            reply_json_of(self._last_body),
        )

    def _export(self, events: list, request=None) -> None:
        self.last_delivered = False
        if not events:
            return
        self.stats.add(batches=1)
        spooled_name = None
        if self.spool_always:
            spooled_name = self._write_spool(events, count=False)
        self._current_on_disk = spooled_name is not None
        if self.spool_pending and not self.replay(exclude=spooled_name):
            self._settle_unsent(events, spooled_name)
            return
        if self._held():
            self._settle_unsent(events, spooled_name)
            return
        outcome, pending = self._send(events, request)
        if outcome == DELIVERED:
            self.last_delivered = True
            if spooled_name:
                self.spool.remove(spooled_name)
            return
        if spooled_name and len(pending) != len(events):  # keep only what is still good
            self.spool.remove(spooled_name)
            spooled_name = None
        self._settle_unsent(pending, spooled_name, outcome)

    def keep(self, events: list, in_flight: bool = False):
        """Spool ``events`` now, without trying (close() ran out of time); returns the file.
        The batch in flight is skipped if ``spool_mode="always"`` already wrote it."""
        self.abandoned = True
        if not events or (in_flight and self._current_on_disk):
            return None
        return self._write_spool(events, count=True)

    def forget_spooled(self, name: str, count: int) -> None:
        """A batch spooled by close() was delivered after all: don't replay it."""
        if self.spool is not None:
            self.spool.remove(name)
            self.stats.add(spooled=-count)

    def replay(self, exclude: str | None = None) -> bool:
        """Send spooled batches oldest-first; True once the spool is empty."""
        if self.spool is None:
            self.spool_pending = False
            return True
        for name, busy in self.spool.queue():
            if busy:
                return False  # an older batch is being sent by another sender: stay behind
            if name == exclude:
                continue
            if self._held():
                return False
            try:
                claimed = self.spool.claim(name)
            except SpoolError as exc:
                self.reporter.error("spool_corrupt", str(exc))
                continue
            if claimed is None:
                continue
            path, events = claimed
            outcome, pending = self._send(events, replay=True)
            if outcome == DELIVERED:
                self.spool.remove(path)
            elif outcome == REJECTED:
                self.spool.remove(path)  # counted as rejected by _send
            else:
                if len(pending) != len(events):
                    self.spool.rewrite(path, pending)
                self.spool.release(path)
                return False
        if self.spool.claimed_elsewhere():
            return False  # another process is sending older batches: stay behind them
        self.spool_pending = False
        return True

    # ----------------------------------------------------------------- internals
    def _timeout(self) -> float:
        """The configured timeout, cut short by a close() deadline."""
        if self.deadline is None:
            return self.transport.timeout
        return max(0.05, min(self.transport.timeout, self.deadline - time.monotonic()))

    def _held(self) -> bool:
        """Without a spool there is nowhere to hold batches: every batch gets its tries."""
        return self.spool is not None and time.monotonic() < self.hold_until

    def _hold(self, seconds: float) -> None:
        self.hold_until = max(self.hold_until, time.monotonic() + seconds)

    def _settle_unsent(self, events: list, spooled_name, outcome: str = RETRY) -> None:
        if self.abandoned:
            return  # close() already kept this batch on disk
        if outcome == REJECTED:
            if spooled_name:
                self.spool.remove(spooled_name)
            return
        if spooled_name:
            self.stats.add(spooled=len(events))
            self.spool_pending = True
            return
        self._write_spool(events, count=True)

    def _write_spool(self, events: list, count: bool):
        if self.spool is None:
            self.stats.add(failed=len(events))
            self.reporter.error("failed", "no spool_dir: undeliverable batch lost", len(events))
            return None
        try:
            name, dropped = self.spool.write(events)
        except (OSError, ValueError) as exc:
            self.stats.add(failed=len(events))
            self.reporter.error("spool_write", f"cannot write spool: {exc}", len(events))
            return None
        if dropped:
            self.stats.add(spool_dropped=dropped)
            self.reporter.error("spool_full", f"spool over its size cap: {dropped} oldest dropped")
        if count:
            self.stats.add(spooled=len(events))
            self.spool_pending = True
        return name

    def _ensure_setup(self) -> str:
        if self.setup_done:
            return DELIVERED
        request = self.service.setup_request()
        outcome = self._attempts(
            request, [], lambda reply: self.service.judge_setup(reply, self.policy), {}
        )
        if outcome == DELIVERED:
            self.setup_done = True
        return outcome

    def _send(self, events: list, request=None, replay: bool = False) -> tuple:
        """Try until delivered, rejected, or out of retries.

        Returns the outcome and the events it applies to: after a partial rejection only
        the good events are still pending, and only they may be spooled. Fresh batches
        count as sent/rejected, spooled ones as replayed/replay_rejected, so that
        ``emitted == sent + rejected + failed + spooled + dropped + queued + in_flight``.
        """
        setup = self._ensure_setup()
        if setup != DELIVERED:
            return (HOLD if setup == REJECTED else setup), events
        counts = {"delivered": 0, "rejected": 0}
        try:
            while True:
                if request is None:
                    request = self.service.encode(events)
                outcome = self._attempts(
                    request,
                    events,
                    lambda reply, ev=events: self.service.judge(reply, ev, self.policy),
                    counts,
                )
                if isinstance(outcome, list):  # some events were bad: resend the rest now
                    events, request = outcome, None
                    if not events:
                        return DELIVERED, events
                    continue
                return outcome, events
        finally:
            if replay:
                self.stats.add(replayed=counts["delivered"], replay_rejected=counts["rejected"])
            else:
                self.stats.add(sent=counts["delivered"], rejected=counts["rejected"])

    def _attempts(self, request, events: list, judge, counts: dict):
        body, headers = self.transport.compress(request)
        retry = 0
        while True:
            self.reporter.fire(
                "send", {"url": redact_url(request.url), "events": len(events), "bytes": len(body)}
            )
            started = time.monotonic()
            try:
                fresh = self.service.attempt_headers(request)
                if fresh:
                    headers = {**headers, **fresh}
                reply = self.transport.send(request, body, headers, self._timeout())
                self._last_status, self._last_body = reply.status, reply.body
                verdict = judge(reply)
            except requests.RequestException as exc:
                verdict = Verdict(RETRY, f"{type(exc).__name__}: {exc}", kind="network")
            except Exception as exc:  # a bug in encoding or reading: keep the data
                self.reporter.error("internal", f"{type(exc).__name__}: {exc}", len(events))
                return HOLD
            if verdict.reason and verdict.outcome != DELIVERED or verdict.rejected:
                self._reasons.append(self.reporter.scrub(verdict.reason))
            if verdict.outcome == DELIVERED:
                if verdict.rejected:
                    counts["rejected"] = counts.get("rejected", 0) + verdict.rejected
                    self.reporter.error(
                        verdict.kind or "rejected", verdict.reason, verdict.rejected
                    )
                counts["delivered"] = counts.get("delivered", 0) + len(events) - verdict.rejected
                self.reporter.fire(
                    "flush",
                    {
                        "events": len(events),
                        "status": reply.status,
                        "seconds": time.monotonic() - started,
                    },
                )
                return DELIVERED
            if verdict.resend is not None:
                counts["rejected"] = counts.get("rejected", 0) + len(events) - len(verdict.resend)
                self.reporter.error(
                    verdict.kind or "rejected", verdict.reason, len(events) - len(verdict.resend)
                )
                return list(verdict.resend)
            if verdict.outcome == REJECTED:
                counts["rejected"] = counts.get("rejected", 0) + len(events)
                self.reporter.error(verdict.kind or "rejected", verdict.reason, len(events))
                return REJECTED
            if verdict.outcome == HOLD:
                self.reporter.error(verdict.kind or "hold", verdict.reason, len(events))
                self._hold(AUTH_HOLD_SECONDS)
                return HOLD
            retry += 1
            delay = self.policy.delay(retry, verdict.retry_after)
            too_long = delay > self.policy.max_backoff
            past_deadline = self.deadline is not None and time.monotonic() + delay > self.deadline
            if retry > self.policy.retries or too_long or past_deadline:
                self.reporter.error(verdict.kind or "unavailable", verdict.reason, len(events))
                self._hold(delay if too_long else self.policy.delay(retry))
                return RETRY
            self.stats.add(retried=len(events))
            wait_ends = time.monotonic() + delay
            if self.wakeup.wait(delay):  # close() began: the deadline check above still holds
                time.sleep(max(0.0, wait_ends - time.monotonic()))
