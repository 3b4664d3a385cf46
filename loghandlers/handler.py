"""``BatchingHandler``: the caller's side of every handler.

``emit`` runs on the application's thread, so it does only what cannot wait: interpolate
the message, render the traceback, snapshot the record's attributes, append to a bounded
deque (the oldest record falls out when full, and is counted), and wake the worker only
when a whole batch is waiting. It never blocks on the network and never raises.

Process life (see :mod:`loghandlers.lifecycle`): an ``atexit`` hook drains every open
handler within its ``close_timeout``; after ``os.fork()`` the child gets a fresh buffer,
session, worker and source id, and none of the parent's records.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import time
from collections import deque
from urllib.parse import urlsplit, urlunsplit

from . import lifecycle
from . import options as opts
from .exporter import Exporter, ExportResult
from .records import base_fields, capture, created_of, default_source_id, minimal_fields
from .spool import Spool
from .status import Reporter, Stats
from .transport import RetryPolicy, Transport
from .worker import WORKER_IDENTS, BatchWorker

_get_ident = threading.get_ident


class BatchingHandler(logging.handlers.QueueHandler):
    """Base of every service handler; a subclass names its ``service_class``.

    Options are keyword arguments (see :mod:`loghandlers.options`); each also reads
    ``LOGHANDLERS_<SERVICE>_<OPTION>`` and ``LOGHANDLERS_<OPTION>`` from the environment.
    The first positional argument is ignored unless it is a URL string: Python 3.12+'s
    ``dictConfig`` passes a ``queue.Queue`` there, and this handler keeps its own buffer.
    """

    service_class: type = None  # type: ignore[assignment]

    def __init__(self, queue=None, *, level=logging.NOTSET, **options):
        if self.service_class is None:
            raise TypeError(
                "BatchingHandler is abstract: use a service handler such as JSONHandler"
            )
        if isinstance(queue, str) and "url" not in options:
            options["url"] = queue
        service_class = self.service_class
        specs = opts.COMMON + tuple(service_class.options)
        self.settings = opts.resolve(service_class.env, specs, options, service_class.defaults)
        self.service = service_class(self.settings)
        self.service.validate()
        super().__init__(None)
        self.setLevel(level)
        self.queue = None  # records live in self._buffer; see the class docstring
        self._closed = False
        self._finished = False
        self._close_deadline: float | None = None
        self._started = False
        self._default_source = self.settings.source_id is None
        self.source_id = self.settings.source_id or default_source_id()
        self._static_fields = self.settings.static_fields or None
        self._callbacks: list = []
        self._build()
        lifecycle.register(self)
        if self.settings.handle_sigterm:
            lifecycle.drain_on_sigterm()
        self._start_worker()

    # ----------------------------------------------------------------- wiring
    def _build(self) -> None:
        """Everything that a forked child must have anew."""
        s = self.settings
        self._buffer: deque = deque(maxlen=s.max_queue_size)
        self._wake = threading.Event()
        # wake the worker before the buffer can overflow, even if a batch could hold it all
        self._wake_at = max(1, min(s.batch_size, s.max_queue_size // 4))
        self._emitted = 0
        self._suppressed = 0
        self._after_close = 0
        self._stats = Stats()
        self._reporter = Reporter(self._label(), self._stats, self.service.secrets)
        for event, callback in self._callbacks:
            self._reporter.on(event, callback)
        self._transport = Transport(s.timeout, s.compression, s.compression_level, s.verify)
        spool = None
        if s.spool_dir:
            spool = Spool(
                s.spool_dir, self.service.name, self.service.identity(), s.spool_max_bytes
            )
        self._spool = spool
        policy = RetryPolicy(retries=s.retries, backoff=s.backoff, max_backoff=s.max_backoff)
        self._exporter = Exporter(
            self.service,
            self._transport,
            policy,
            spool,
            s.spool_mode == "always",
            self._stats,
            self._reporter,
            threading.Event(),
        )
        self._worker = BatchWorker(self._buffer, self._wake, self._exporter, self._convert, s)
        self._worker.emitted = lambda: self._emitted

    def _label(self) -> str:
        parts = urlsplit(self.service.endpoint() or "")
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        shown = urlunsplit((parts.scheme, host, parts.path, "", "")) if parts.scheme else ""
        return f"{type(self).__name__}({shown})"

    def _start_worker(self) -> None:
        self._started = True
        self._worker.start()

    def _convert(self, snapshot) -> dict:
        if type(snapshot) is ReadyEvent:
            return snapshot.event
        try:
            fields = base_fields(snapshot, self.formatter)
        except Exception as exc:  # a user formatter that raised: keep the record anyway
            self._reporter.error("formatter", f"{type(exc).__name__}: {exc}")
            fields = minimal_fields(snapshot, exc)
        if self._static_fields:
            fields = {**self._static_fields, **fields}
        return self.service.event(fields, created_of(snapshot), self.source_id)

    # ----------------------------------------------------------------- caller side
    def handle(self, record: logging.LogRecord):
        if _get_ident() in WORKER_IDENTS:  # our own HTTP stack talking: never ship it
            self._suppressed += 1
            return False
        return super().handle(record)

    def prepare(self, record: logging.LogRecord):
        """The snapshot that goes into the buffer (cheaper than QueueHandler.prepare)."""
        return capture(record, self.formatter)

    def emit(self, record: logging.LogRecord) -> None:
        if self._closed:
            self._after_close += 1
            return
        try:
            snapshot = capture(record, self.formatter)
        except Exception:
            self.handleError(record)
            return
        self.enqueue(snapshot)

    def enqueue(self, snapshot) -> None:
        """Append to the bounded buffer (its oldest entry falls out when full)."""
        self._emitted += 1
        buffer = self._buffer
        buffer.append(snapshot)
        if len(buffer) >= self._wake_at and not self._wake.is_set():
            self._wake.set()
        if not self._started:
            self._start_worker()

    # ----------------------------------------------------------------- without a record
    def submit(self, event: dict) -> None:
        """Enqueue a ready-made event of this service (what its ``event()`` would build).

        Same buffer, batching, retries, spool and exit drain as records; counted in
        ``emitted``. Never blocks, never raises.
        """
        try:
            if self._closed:
                self._after_close += 1
                return
            self.enqueue(ReadyEvent(event))
        except Exception:
            pass

    def export_now(self, events: list, timeout: float | None = None) -> ExportResult:
        """Export ready-made ``events`` as their own batch, ahead of the buffer; wait for
        the outcome at most ``timeout`` seconds (default: ``timeout`` x (retries + 1)).

        If the wait ends first the events keep their one fate (still in flight, later
        delivered or spooled) and the result's outcome is "pending".
        """
        events = list(events)
        if not events:
            return ExportResult("delivered")
        if self._closed:
            self._after_close += len(events)
            return ExportResult("failed", reasons=("handler is closed",))
        if timeout is None:
            timeout = self.settings.timeout * (self.settings.retries + 1)
        if not self._started:
            self._start_worker()
        self._emitted += len(events)
        job = self._worker.export_job(events)
        if _get_ident() in WORKER_IDENTS or not job.done.wait(timeout):
            return ExportResult("pending")
        return job.result or ExportResult("failed")

    # ----------------------------------------------------------------- public
    #: logging.shutdown() (3.12+) then calls only close(), which keeps to close_timeout
    flushOnClose = False

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything emitted before this call is delivered or spooled.

        Returns False if ``timeout`` ran out first (or if called from the worker itself).
        Called by ``logging.shutdown()`` (Python < 3.12 flushes before closing), it waits
        at most ``close_timeout``, as close() does.
        """
        if timeout is None and _called_by_logging_shutdown():
            timeout = self.settings.close_timeout
        if self._closed or not self._started or _get_ident() in WORKER_IDENTS:
            return not self._buffer
        if not self._worker.is_alive():
            return False
        return self._worker.request_flush(self._emitted).wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain within ``close_timeout`` (or ``timeout``); spool what is left, then stop."""
        self.begin_close(timeout)
        self.finish_close()

    def begin_close(self, timeout: float | None = None) -> None:
        """Start draining (non-blocking); every wait and retry ends by the deadline."""
        if self._closed:
            return  # a drain is under way or done: a second close waits for it, below
        self._closed = True
        limit = self.settings.close_timeout if timeout is None else timeout
        self._close_deadline = time.monotonic() + limit
        self._worker.begin_stop(self._close_deadline)

    def finish_close(self) -> None:
        """Wait for the drain until its deadline. Safe to re-enter (a SIGTERM arriving
        during the atexit drain waits for that drain instead of cutting it short)."""
        deadline = self._close_deadline
        if deadline is not None and self._started:
            self._worker.finish_stop(deadline)
        if not self._finished:
            self._finished = True
            self._transport.close()
            lifecycle.unregister(self)
            super().close()

    def on(self, event: str, callback) -> None:
        """Call ``callback(info: dict)`` on "send" (before a request), "flush" (after one
        succeeded) or "error" (a background failure); called on the worker thread."""
        self._reporter.on(event, callback)
        self._callbacks.append((event, callback))

    def stats(self) -> dict:
        """Counters since start (or since fork, in a child)."""
        out = self._stats.snapshot()
        worker = self._worker
        queued = len(self._buffer)
        out["emitted"] = self._emitted
        out["queued"] = queued
        out["in_flight"] = max(0, worker.taken - worker.settled)
        out["dropped"] = max(0, self._emitted - worker.taken - queued) + self._after_close
        out["suppressed"] = self._suppressed
        if self._spool is not None:
            out["spool"] = self._spool.summary()
        return out

    def __repr__(self) -> str:
        return f"<{self._label()} {logging.getLevelName(self.level)}>"

    # ----------------------------------------------------------------- process life
    def after_fork_in_child(self) -> None:
        """In a forked child: a fresh buffer, session, worker and source id."""
        self._transport.reset()
        if self._default_source:
            self.source_id = default_source_id()
        if not self._closed:
            self._build()
            self._started = False  # the parent's worker thread does not exist here
            lifecycle.register(self)


def _called_by_logging_shutdown() -> bool:
    frame = sys._getframe(2)
    return frame is not None and frame.f_code is logging.shutdown.__code__


class ReadyEvent:
    """A buffered event that needs no conversion (``submit``)."""

    __slots__ = ("event",)

    def __init__(self, event: dict):
        self.event = event
