"""The worker thread: take records from the buffer, convert them a batch at a time, export.

A ``QueueListener`` subclass whose queue is the handler's bounded deque. It ships a batch
when ``batch_size`` records are waiting (the caller wakes it only then), when
``flush_interval`` has passed and at least ``min_batch_size`` are waiting, when someone
calls ``flush()``, and at close. A deep buffer is drained in full-size batches back to
back, so per-request costs (and GIL hand-offs around the socket) stay rare under load.
"""

from __future__ import annotations

import logging.handlers
import math
import threading
import time
from collections import deque
from typing import Callable

from .exporter import Exporter, ExportResult
from .records import dumps, minimal_fields

#: seconds between looks at a spool that another sender is replaying
SPOOL_POLL = 0.25
#: thread idents of every worker in this process: records they log are never shipped
WORKER_IDENTS: set = set()


class ExportJob:
    """Events handed straight to the worker by ``export_now``; the caller may wait on it."""

    def __init__(self, events: list):
        self.events = events
        self.done = threading.Event()
        self.result: ExportResult | None = None


def combine(results: list) -> ExportResult:
    """One result for a batch that went out as several requests."""
    delivered = sum(r.delivered for r in results)
    rejected = sum(r.rejected for r in results)
    outcomes = {r.outcome for r in results}
    for worst in ("spooled", "failed"):
        if worst in outcomes:
            outcome = worst
            break
    else:
        if rejected and delivered:
            outcome = "partial"
        elif rejected:
            outcome = "rejected"
        else:
            outcome = "delivered"
    last = results[-1] if results else ExportResult("delivered")
    reasons = tuple(reason for r in results for reason in r.reasons)
    return ExportResult(outcome, delivered, rejected, reasons, last.status, last.reply_json)


class BatchWorker(logging.handlers.QueueListener):
    """One thread per handler; see the module docstring."""

    def __init__(
        self, buffer, wake: threading.Event, exporter: Exporter, convert: Callable, config
    ):
        super().__init__(buffer)
        self.buffer = buffer
        self.wake = wake
        self.exporter = exporter
        self.convert = convert
        self.batch_size = config.batch_size
        self.min_batch_size = config.min_batch_size
        self.flush_interval = config.flush_interval
        self.max_batch_bytes = config.max_batch_bytes
        self.wake_at = max(1, min(config.batch_size, config.max_queue_size // 4))
        self.stopping = threading.Event()
        self.taken = 0  # records popped from the buffer (read by the handler for stats)
        self.settled = 0  # popped records whose fate is decided
        self._flush_requests: list = []
        self._requests_lock = threading.Lock()
        self._handoff = threading.RLock()  # guards the batch in flight against close()
        self._inflight: list | None = None
        self._inflight_copy: str | None = None
        self.abandoned = False
        self._thread = None
        self.jobs: deque = deque()

    def export_job(self, events: list) -> ExportJob:
        """Ship ``events`` as their own batch, before the next buffered one."""
        job = ExportJob(events)
        self.taken += len(events)
        self.jobs.append(job)
        self.wake.set()
        return job

    def _run_jobs(self) -> None:
        while self.jobs:
            job = self.jobs.popleft()
            try:
                job.result = self._ship_events(job.events, len(job.events))
            finally:
                job.done.set()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._monitor, name="loghandlers-worker", daemon=True
        )
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _monitor(self) -> None:
        WORKER_IDENTS.add(threading.get_ident())
        try:
            self._run()
        except BaseException as exc:  # the worker must never die silently
            self.exporter.reporter.error("worker", f"worker stopped: {type(exc).__name__}: {exc}")
            raise
        finally:
            WORKER_IDENTS.discard(threading.get_ident())
            self._answer_flushes(force=True)

    def request_flush(self, target: int) -> threading.Event:
        done = threading.Event()
        with self._requests_lock:
            self._flush_requests.append((target, done))
        self.wake.set()
        return done

    def begin_stop(self, deadline: float) -> None:
        """Start draining; every wait and retry from now on ends by ``deadline``."""
        self.exporter.deadline = deadline
        self.exporter.wakeup.set()
        self.stopping.set()
        self.wake.set()

    def finish_stop(self, deadline: float) -> bool:
        """Wait for the drain; at ``deadline`` spool whatever is left from this thread."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self.is_alive():
            self._abandon()
            return False
        return True

    def stop(self) -> None:  # QueueListener's name for it
        deadline = time.monotonic()
        self.begin_stop(deadline)
        self.finish_stop(deadline)

    # ----------------------------------------------------------------- loop
    def _run(self) -> None:
        if self.exporter.spool_pending:
            self.exporter.replay()
        self._next_timed = time.monotonic() + self.flush_interval
        while not self._step():
            pass

    def _step(self) -> bool:
        """One wake-up's work; True when the worker is done. A bug here is reported, and
        the loop goes on: a dead worker would silently drop everything after it."""
        try:
            if (
                not self.stopping.is_set()
                and len(self.buffer) < self.wake_at
                and not self._flush_requests
                and not self.jobs
            ):
                until = self._next_timed
                if self.exporter.spool_pending and not self.exporter._held():
                    until = min(until, time.monotonic() + SPOOL_POLL)  # others' claims end soon
                self.wake.wait(max(0.0, until - time.monotonic()))
            self.wake.clear()
            if self.jobs:
                self._run_jobs()
            if self.stopping.is_set():
                self._drain(until=None)
                return True
            timed = time.monotonic() >= self._next_timed
            if self._flush_requests:
                with self._requests_lock:
                    target = max(t for t, _ in self._flush_requests)
                self._drain(until=target)
            elif len(self.buffer) >= self.wake_at:
                while len(self.buffer) >= self.wake_at and not self._interrupted():
                    self._ship()
            elif timed and len(self.buffer) >= self.min_batch_size:
                self._drain(until=None)
            if timed:
                self._next_timed = time.monotonic() + self.flush_interval
            if self.exporter.spool_pending and not self.exporter._held():
                self.exporter.replay()
        except Exception as exc:
            self.exporter.reporter.error("worker", f"{type(exc).__name__}: {exc}")
            self.stopping.wait(0.1)  # don't spin on a persistent fault
        return False

    def _interrupted(self) -> bool:
        return self.stopping.is_set() or bool(self._flush_requests) or bool(self.jobs)

    def _drain(self, until: int | None) -> None:
        """Ship until the buffer is empty, or until every record up to ``until`` has left it."""
        while self.buffer and not self.abandoned:
            if until is not None and self._left_buffer() >= until:
                break
            self._ship()
        self._answer_flushes()

    def _left_buffer(self) -> int:
        """How many records emitted so far are no longer in the buffer (taken or dropped)."""
        return self.emitted() - len(self.buffer)

    def emitted(self) -> int:  # replaced by the handler with its counter
        return self.taken

    def _answer_flushes(self, force: bool = False) -> None:
        with self._requests_lock:
            if not self._flush_requests:
                return
            done_up_to = self._left_buffer() if self.settled == self.taken else -1
            keep = []
            for target, event in self._flush_requests:
                if force or target <= done_up_to:
                    event.set()
                else:
                    keep.append((target, event))
            self._flush_requests = keep

    # ----------------------------------------------------------------- one batch
    def _take(self) -> list:
        snapshots = []
        popleft = self.buffer.popleft
        for _ in range(self.batch_size):
            try:
                snapshots.append(popleft())
            except IndexError:
                break
        self.taken += len(snapshots)
        return snapshots

    def _ship(self) -> None:
        with self._handoff:
            if self.abandoned:
                return
            snapshots = self._take()
            if not snapshots:
                return
            events = [self._convert_one(s) for s in snapshots]
        self._ship_events(events, len(snapshots))
        self._answer_flushes()

    def _ship_events(self, events: list, count: int) -> ExportResult:
        with self._handoff:
            if self.abandoned:
                return ExportResult("failed")
            self._inflight, self._inflight_copy = events, None
        results = []
        try:
            for part, request in self._fit(events):
                results.append(self.exporter.export(part, request))
        finally:
            with self._handoff:
                if self._inflight_copy is not None and self.exporter.last_delivered:
                    self.exporter.forget_spooled(self._inflight_copy, len(events))
                self._inflight, self._inflight_copy = None, None
                self.settled += count
        return combine(results)

    def _convert_one(self, snapshot) -> dict:
        try:
            return self.convert(snapshot)
        except Exception as exc:  # the service's mapping failed: ship what we can say
            self.exporter.reporter.error("convert", f"{type(exc).__name__}: {exc}")
            return minimal_fields(snapshot, exc)

    def _fit(self, events: list):
        """Requests within ``max_batch_bytes`` (the service packs); shrink lone giants."""
        service = self.exporter.service
        for part, request in service.pack(events, self.max_batch_bytes):
            if request is None:  # one event alone is over the limit
                part = [shrink(part[0], service, self.max_batch_bytes, self.exporter)]
            yield part, request

    # ----------------------------------------------------------------- close() ran out of time
    def _abandon(self) -> None:
        """Spool the batch in flight and the rest of the buffer; the worker stops taking."""
        with self._handoff:
            if self.abandoned:
                return  # re-entered (a signal during the first abandon)
            self.abandoned = True
            if self._inflight:
                self._inflight_copy = self.exporter.keep(self._inflight, in_flight=True)
            kept = 0
            while self.jobs:  # export_now batches the worker never reached
                job = self.jobs.popleft()
                name = self.exporter.keep(job.events)
                self.settled += len(job.events)
                kept += len(job.events)
                job.result = ExportResult("spooled" if name else "failed")
                job.done.set()
            while True:  # the whole buffer, a batch at a time
                left = self._take()
                if not left:
                    break
                self.exporter.keep([self._convert_one(s) for s in left])
                self.settled += len(left)
                kept += len(left)
        if kept or self._inflight:
            self.exporter.reporter.error(
                "close_timeout", f"close() ran out of time: {kept} records kept on disk", kept
            )
        self._answer_flushes(force=True)


TRUNCATED = "...[truncated {} chars]"


def shrink(event: dict, service, limit: int, exporter: Exporter) -> dict:
    """Cut the longest string fields of an event until its request fits ``limit`` bytes."""
    exporter.stats.add(truncated=1)
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
