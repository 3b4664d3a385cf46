"""The worker thread: the buffer and its triggers, nothing else.

A ``QueueListener`` subclass (exposed as ``handler.listener``, as Python 3.12's
``QueueHandler.listener`` is) whose queue is the handler's bounded deque. It takes a batch
when ``batch_size`` records are waiting (the caller wakes it only then), when
``flush_interval`` has passed and at least ``min_batch_size`` are waiting, when someone
calls ``flush()`` or ``export_now()``, and at close. Each batch is converted by the
handler's ``convert`` (user code: formatters, templates, ``repr()`` of extras) and handed to
the spool policy's ``ship`` (:class:`loghandlers.spool.Keeper`), which returns its
:class:`~loghandlers.exporter.ExportResult`. A deep buffer is drained in full-size batches
back to back, so per-request costs stay rare under load.

At close the worker drains until the deadline, then keeps (spools) the rest without trying,
closes the handler's intake (``close_intake``: later records go to the handler's late
path), drains what slipped in, and ends.

Threading: only this thread takes from the buffer (through the ledger, under its lock) and
calls ``convert`` and ``ship``, never under any lock, so user code that blocks costs
only this thread. ``wake`` and ``stopping`` are Events anyone may set. ``jobs`` (a deque)
gets ``export_now`` batches from callers; ``_flush_requests`` is guarded by
``_requests_lock``. ``deadline`` is written once by the closing thread.
"""

from __future__ import annotations

import logging.handlers
import threading
import time
from collections import deque
from typing import Callable

from .exporter import ExportResult
from .ledger import Ledger

#: thread idents of every worker in this process: records they log are never shipped
WORKER_IDENTS: set = set()


class ExportJob:
    """Events handed straight to the worker by ``export_now``; the caller may wait on it."""

    def __init__(self, events: list):
        self.events = events
        self.done = threading.Event()
        self.result: ExportResult | None = None


class BatchWorker(logging.handlers.QueueListener):
    """One thread per handler; see the module docstring."""

    def __init__(
        self,
        buffer: deque,
        wake: threading.Event,
        ledger: Ledger,
        convert: Callable[[list], list],
        keeper,
        emitted: Callable[[], int],
        close_intake: Callable[[], None],
        config,
    ):
        super().__init__(buffer)  # type: ignore[arg-type]  # a deque: dequeue() is ours
        self.buffer = buffer
        self.wake = wake
        self.ledger = ledger
        self.convert = convert
        self.keeper = keeper
        self.emitted = emitted
        self.close_intake = close_intake
        self.batch_size = config.batch_size
        self.min_batch_size = config.min_batch_size
        self.flush_interval = config.flush_interval
        self.wake_at = max(1, min(config.batch_size, config.max_queue_size // 4))
        self.stopping = threading.Event()
        self.deadline: float | None = None
        self.linger = False
        self.jobs: deque = deque()
        self._flush_requests: list = []
        self._requests_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._next_timed = 0.0

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._monitor, name="loghandlers-worker", daemon=True
        )
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; True if it did (or never started)."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return not self.is_alive() or thread is threading.current_thread()
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def begin_stop(self, deadline: float, linger: bool = False) -> None:
        """Start draining; every wait and request from now on ends by ``deadline``.
        ``linger``: keep taking records (batched by ``flush_interval``) until the deadline,
        for a handler closed by a reload while loggers may still point at it."""
        self.linger = linger
        self.deadline = deadline
        self.stopping.set()
        self.wake.set()

    def end_linger(self) -> None:
        self.linger = False
        self.wake.set()

    def stop(self) -> None:  # QueueListener's name for it: stop now, keep the rest
        self.begin_stop(time.monotonic())
        self.join(5.0)

    def export_job(self, events: list) -> ExportJob:
        """Ship ``events`` as their own batch, before the next buffered one."""
        job = ExportJob(events)
        self.jobs.append(job)
        self.wake.set()
        return job

    def request_flush(self, target: int) -> threading.Event:
        done = threading.Event()
        with self._requests_lock:
            self._flush_requests.append((target, done))
        self.wake.set()
        return done

    # ----------------------------------------------------------------- loop
    def _monitor(self) -> None:
        WORKER_IDENTS.add(threading.get_ident())
        try:
            if self.keeper.replay_due():  # batches an earlier process left on disk
                self.keeper.replay()
            self._next_timed = time.monotonic() + self.flush_interval
            while not self._step():
                pass
        except BaseException as exc:  # the worker must never die silently
            self.keeper.reporter.error("worker", f"worker stopped: {type(exc).__name__}: {exc}")
            raise
        finally:
            WORKER_IDENTS.discard(threading.get_ident())
            self._answer_flushes(force=True)
            self._answer_jobs()

    def _step(self) -> bool:
        """One wake-up's work; True when the worker is done. A bug here is reported, and
        the loop goes on: a dead worker would silently drop everything after it."""
        try:
            if not self._due():
                until = self._next_timed
                poll = self.keeper.poll_after()
                if poll is not None:
                    until = min(until, time.monotonic() + poll)
                self.wake.wait(max(0.0, until - time.monotonic()))
            self.wake.clear()
            self._run_jobs()
            if self.stopping.is_set():
                self._drain_for_close()
                return True
            timed = time.monotonic() >= self._next_timed
            if self._flush_requests:
                with self._requests_lock:
                    target = max(t for t, _ in self._flush_requests)
                self._drain(until=target)
            elif len(self.buffer) >= self.wake_at:
                while len(self.buffer) >= self.wake_at and not self._interrupted():
                    self._ship_one()
            elif timed and len(self.buffer) >= self.min_batch_size:
                self._drain(until=None)
            if timed:
                self._next_timed = time.monotonic() + self.flush_interval
            if self.keeper.replay_due():
                self.keeper.replay()
        except Exception as exc:
            self.keeper.reporter.error("worker", f"{type(exc).__name__}: {exc}")
            self.stopping.wait(0.1)  # don't spin on a persistent fault
        return False

    def _due(self) -> bool:
        return (
            self.stopping.is_set()
            or len(self.buffer) >= self.wake_at
            or bool(self._flush_requests)
            or bool(self.jobs)
        )

    def _interrupted(self) -> bool:
        return self.stopping.is_set() or bool(self._flush_requests) or bool(self.jobs)

    def _drain(self, until: int | None) -> None:
        """Ship until the buffer is empty, or until every record up to ``until`` has left it."""
        while self.buffer:
            if until is not None and self._left_buffer() >= until:
                break
            if not self._ship_one():
                break
        self._answer_flushes()

    def _drain_for_close(self) -> None:
        """Everything, by the deadline; past it, keep the rest on disk without trying."""
        while not self._past_deadline():
            if self._ship_one():
                self._run_jobs()
                continue
            if not self.linger:
                break
            left = (self.deadline or 0.0) - time.monotonic()
            self.wake.wait(max(0.0, min(self.flush_interval, left)))
            self.wake.clear()
            self._run_jobs()
        self.close_intake()  # from now on the handler keeps late records itself
        while self._ship_one():
            pass
        self._run_jobs()
        self._answer_flushes(force=True)

    def _left_buffer(self) -> int:
        """How many records emitted so far are no longer in the buffer (taken or dropped)."""
        return self.emitted() - len(self.buffer)

    def _answer_flushes(self, force: bool = False) -> None:
        with self._requests_lock:
            if not self._flush_requests:
                return
            done_up_to = self._left_buffer() if self.ledger.idle() and not self.jobs else -1
            keep = []
            for target, event in self._flush_requests:
                if force or target <= done_up_to:
                    event.set()
                else:
                    keep.append((target, event))
            self._flush_requests = keep

    # ----------------------------------------------------------------- one batch
    def _past_deadline(self) -> bool:
        deadline = self.deadline
        return deadline is not None and time.monotonic() >= deadline

    def _ship_one(self) -> bool:
        """Take, convert and ship one batch; False when the buffer was empty."""
        snapshots = self.ledger.take(self.buffer, self.batch_size)
        if not snapshots:
            return False
        events = self.convert(snapshots)
        if self._past_deadline():
            self.keeper.keep(events)
        else:
            self.keeper.ship(events)
        self._answer_flushes()
        return True

    def _run_jobs(self) -> None:
        while self.jobs:
            job = self.jobs.popleft()
            try:
                events = self.convert(job.events)
                if self._past_deadline():
                    job.result = self.keeper.keep(events)
                else:
                    job.result = self.keeper.ship(events)
            finally:
                job.done.set()
        self._answer_flushes()

    def _answer_jobs(self) -> None:
        """The worker is ending: nobody waits on a job forever."""
        while self.jobs:
            job = self.jobs.popleft()
            try:
                job.result = self.keeper.keep(self.convert(job.events))
            except Exception:
                pass
            finally:
                job.done.set()
