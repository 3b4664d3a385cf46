"""``BatchingHandler``: the caller's side of every handler.

``emit`` runs on the application's thread, so it does only what cannot wait: interpolate
the message, render the traceback, snapshot the record's attributes, append to a bounded
deque (the oldest record falls out when full, and is counted), and wake the worker only
when a whole batch is waiting. It takes no lock, never blocks on the network or on user
code, and never raises.

A ``logging.Handler`` that *composes* the stdlib queue pair instead of inheriting it:
``handler.queue_handler`` is a ``logging.handlers.QueueHandler`` whose queue is our buffer,
whose ``prepare()`` is our snapshot and whose ``enqueue()`` is our bounded append;
``handler.listener`` is the worker, a ``QueueListener`` subclass (as Python 3.12's
``QueueHandler.listener``). Inheriting ``QueueHandler`` made Python 3.12.0-3.12.3's
``dictConfig`` treat every handler as a queue to wire up ("No handlers specified for a
QueueHandler"); composing keeps the contracts without that.

Process life lives in :mod:`loghandlers.lifecycle`: the exit drain, SIGTERM, and
``os.fork()`` children (a fresh buffer, session, worker and source id, and none of the
parent's records). A child forked without Python's fork hooks (uWSGI, C extensions) is
noticed by the next emit (one pid comparison) and treated the same way.

Closing: ``close()`` drains within ``close_timeout`` and returns. Called by ``dictConfig``
or ``fileConfig`` (which hold this handler's lock and logging's module lock, which our
worker's HTTP stack may need in order to log), it does not wait for the worker: the worker
drains on its own by the same deadline and the exit hook waits for it. ``flush()`` called
under this handler's lock (``logging.shutdown()`` before 3.12, ``dictConfig``) does not
wait either: the ``close()`` that follows drains. Records logged to a closed handler go to the worker while
it still drains, then to the open handler that replaced it (same service and identity),
else to the spool, else they are counted (``dropped``) and reported.

Threading: callers count ``_emitted_counter`` (an ``itertools.count``: atomic, no lock;
before appending) and append to
``_buffer``; the worker alone takes from it (through the ledger). ``_closed``,
``_fast_pid`` and ``_close_deadline`` are written by the closing thread; ``_intake_open``
under ``_late_lock`` by the worker (once, at the end of its drain) and read under it by late
callers; ``_lock_owner``/``_lock_depth`` only by the thread holding this handler's lock.
Starting the worker and noticing a fork happen under the module's ``_START_LOCK``.
"""

from __future__ import annotations

import itertools
import logging
import logging.handlers
import os
import threading
import time
import weakref
from collections import deque
from urllib.parse import urlsplit, urlunsplit

from . import lifecycle
from . import options as opts
from .exporter import Exporter, ExportResult
from .ledger import Ledger
from .records import (
    base_fields,
    capture,
    created_of,
    default_source_id,
    freeze,
    minimal_fields,
)
from .service import Service
from .spool import Keeper, Spool
from .status import Callback, Event, HandlerStats, Reporter, Stats
from .transport import RetryPolicy, Transport, public_url
from .worker import WORKER_IDENTS, BatchWorker

_get_ident = threading.get_ident
_getpid = os.getpid
#: seconds close() waits past its deadline for the worker to keep what is left on disk
CLOSE_GRACE = 1.0
_START_LOCK = threading.RLock()
#: the newest handler of each (service, identity): where a closed one sends late records
_NEWEST: dict = {}


class BatchingHandler(logging.Handler):
    """Base of every service handler; a subclass names its ``service_class``.

    Options are keyword arguments (see :mod:`loghandlers.options`); each also reads
    ``LOGHANDLERS_<SERVICE>_<OPTION>`` and ``LOGHANDLERS_<OPTION>`` from the environment.
    The first positional argument is ignored unless it is a URL string (a ``queue``
    passed there by older configuration code means nothing: we keep our own buffer).
    """

    service_class: type[Service] = None  # type: ignore[assignment]  # set by each subclass
    #: logging.shutdown() (3.12+) then calls only close(), which keeps to close_timeout
    flushOnClose = False

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
        super().__init__(level)
        self._closed = False
        self._finished = False
        self._close_deadline: float | None = None
        self._lock_owner: int | None = None
        self._lock_depth = 0
        self._late_lock = threading.Lock()
        self._late_reported = False
        self._default_source = self.settings.source_id is None
        self.source_id = self.settings.source_id or default_source_id()
        self._static_fields = self.settings.static_fields or None
        self._callbacks: list = []
        self._identity = (self.service.name, self.service.identity())
        self.queue_handler = RecordQueueHandler(self)
        self._build()
        lifecycle.register(self)
        _NEWEST[self._identity] = weakref.ref(self)
        if self.settings.handle_sigterm:
            lifecycle.drain_on_sigterm()
        self._ready_to_accept()

    # ----------------------------------------------------------------- wiring
    def _build(self) -> None:
        """Everything that a forked child must have anew."""
        s = self.settings
        self._pid = _getpid()
        self._fast_pid = -1  # emit's fast path is open once the worker runs
        self._started = False
        self._intake_open = True
        self._buffer: deque = deque(maxlen=s.max_queue_size)
        self.queue_handler.queue = self._buffer
        self._wake = threading.Event()
        # wake the worker before the buffer can overflow, even if a batch could hold it all
        self._wake_at = max(1, min(s.batch_size, s.max_queue_size // 4))
        # emitted: a C counter, since ``+= 1`` from many threads loses counts (3.9)
        self._emitted_counter = itertools.count()
        self._count_one = self._emitted_counter.__next__
        self._suppressed = 0
        self._ledger = Ledger()
        self._stats = Stats()
        self._reporter = Reporter(self._label(), self._stats, self.service.secrets)
        for event, callback in self._callbacks:
            self._reporter.on(event, callback)
        self._transport = Transport(s.timeout, s.compression, s.compression_level, s.verify)
        spool = None
        if s.spool_dir:
            spool = Spool(
                s.spool_dir,
                self.service.name,
                self.service.identity(),
                s.spool_max_bytes,
                label=public_url(s.url),
                identity_options={n: getattr(s, n, None) for n in self.service.identity_options},
            )
        policy = RetryPolicy(retries=s.retries, backoff=s.backoff, max_backoff=s.max_backoff)
        self._exporter = Exporter(
            self.service, self._transport, policy, self._stats, self._reporter, s.max_batch_bytes
        )
        self._keeper = Keeper(
            spool, s.spool_mode == "always", self._exporter, self._ledger, self._stats,
            self._reporter,
        )  # fmt: skip
        self._keeper.start()  # checks the spool now: a bad spool_dir is reported at once
        self.listener = BatchWorker(
            self._buffer,
            self._wake,
            self._ledger,
            self._convert_batch,
            self._keeper,
            self._emitted_so_far,
            self._close_intake,
            s,
        )

    def _label(self) -> str:
        parts = urlsplit(self.service.endpoint() or "")
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        shown = urlunsplit((parts.scheme, host, parts.path, "", "")) if parts.scheme else ""
        return f"{type(self).__name__}({shown})"

    def _emitted_so_far(self) -> int:
        return int(repr(self._emitted_counter)[6:-1])  # "count(N)": N counted so far

    def _ready_to_accept(self) -> bool:
        """The slow path of every append: notice a fork made behind Python's back, start
        the worker, open the fast path. False once closed."""
        with _START_LOCK:
            pid = _getpid()
            if self._pid != pid:
                self._forked_without_hooks()
            if self._closed:
                return False
            if not self._started:
                self._started = True
                self.listener.start()
            self._fast_pid = pid
            return True

    def _notice_fork(self) -> None:
        """flush() and close() in a child forked without Python's fork hooks that has not
        logged yet: start afresh first, or they would wait for the parent's worker (which
        does not exist here) and count the parent's records as this process's."""
        if self._pid == _getpid():
            return
        locked = _START_LOCK.acquire(timeout=1.0)  # a parent's thread may have held it
        try:
            if self._pid != _getpid():
                self._forked_without_hooks()
        finally:
            if locked:
                _START_LOCK.release()

    def _forked_without_hooks(self) -> None:
        """uWSGI (without ``--py-call-osafterfork``) and C extensions fork without running
        ``os.register_at_fork`` hooks: do here what the hook would have done."""
        if not lifecycle.started_afresh():  # else the hooks ran: we were closed before
            lifecycle.after_fork_in_child()
        if self._pid != _getpid():  # not registered (closed): this one alone
            self.after_fork_in_child()

    # ----------------------------------------------------------------- conversion
    def _convert_batch(self, items: list) -> list:
        """Snapshots (and ready-made events) -> JSON-only events; on the worker thread,
        outside every lock. One bad record costs at most itself."""
        formatter = self.formatter
        service = self.service
        source_id = self.source_id
        static = self._static_fields
        out = []
        placeholders = 0
        for item in items:
            if type(item) is ReadyEvent:
                event = item.event
            else:
                if type(item) is not tuple and type(item) is not dict:
                    item = _not_a_record(item)  # given to queue_handler.enqueue: itself only
                    self._reporter.error("convert", item[0])
                try:
                    fields = base_fields(item, formatter)
                except Exception as exc:  # a user formatter that raised: keep the record
                    self._reporter.error("formatter", f"{type(exc).__name__}: {exc}")
                    fields = minimal_fields(item, exc)
                if static:
                    fields = {**static, **fields}
                try:
                    event = service.event(fields, created_of(item), source_id)
                except Exception as exc:  # the service's mapping failed: ship what we can
                    self._reporter.error("convert", f"{type(exc).__name__}: {exc}")
                    event = minimal_fields(item, exc)
            event, bad = freeze(event)
            placeholders += bad
            out.append(event)
        if placeholders:
            self._stats.add(placeholders=placeholders)
        return out

    def _convert(self, snapshot) -> dict:
        """One snapshot's event (for measuring the worker's stages)."""
        return self._convert_batch([snapshot])[0]

    # ----------------------------------------------------------------- caller side
    def handle(self, record: logging.LogRecord):
        """Filter and emit, without the handler lock: ``emit`` is thread-safe on its own,
        and a caller must never wait for a ``close()`` in progress."""
        if _get_ident() in WORKER_IDENTS:  # our own HTTP stack talking: never ship it
            self._suppressed += 1
            return False
        passed = self.filter(record)
        if isinstance(passed, logging.LogRecord):  # Python 3.12+: a filter may replace it
            record = passed
        if passed:
            self.emit(record)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        try:
            snapshot = capture(record, self.formatter)
        except Exception:
            self.handleError(record)
            return
        if self._fast_pid != _getpid() and not self._ready_to_accept():
            self._late([snapshot])
            return
        self._count_one()
        buffer = self._buffer
        buffer.append(snapshot)
        if len(buffer) >= self._wake_at and not self._wake.is_set():
            self._wake.set()

    def _accept(self, item) -> None:
        """Append a snapshot or a ready-made event (emit's path, for the other ways in)."""
        if self._fast_pid != _getpid() and not self._ready_to_accept():
            self._late([item])
            return
        self._count_one()
        buffer = self._buffer
        buffer.append(item)
        if len(buffer) >= self._wake_at and not self._wake.is_set():
            self._wake.set()

    # ----------------------------------------------------------------- without a record
    def submit(self, event: dict) -> None:
        """Enqueue a ready-made event of this service (what its ``event()`` would build).

        Same buffer, batching, retries, spool and exit drain as records; counted in
        ``emitted``. Never blocks, never raises.
        """
        try:
            self._accept(ReadyEvent(event))
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
        if timeout is None:
            timeout = self.settings.timeout * (self.settings.retries + 1)
        if not self._ready_to_accept() or not self._ledger.adopt(len(events)):
            return ExportResult(self._late([ReadyEvent(event) for event in events]))
        job = self.listener.export_job([ReadyEvent(event) for event in events])
        if _get_ident() in WORKER_IDENTS or not job.done.wait(max(0.0, timeout)):
            return ExportResult("pending")
        return job.result or ExportResult("pending")

    # ----------------------------------------------------------------- after close()
    def _close_intake(self) -> None:
        """The worker's drain is over: late records take the late path from now on."""
        with self._late_lock:
            self._intake_open = False

    def _late(self, items: list) -> str:
        """Records (or events) given to this handler after ``close()``; returns their
        outcome as far as known: "pending" (a worker has them), "spooled" or "failed"."""
        with self._late_lock:
            if self._intake_open:  # the worker still drains: it takes these too
                for _ in items:
                    self._count_one()
                buffer = self._buffer
                buffer.extend(items)
                if len(buffer) >= self._wake_at:
                    self._wake.set()
                return "pending"
        newer = _NEWEST.get(self._identity)
        successor = newer() if newer is not None else None
        if successor is not None and successor is not self and not successor._closed:
            for item in items:
                successor._accept(item)
            return "pending"
        return self._keep_late(items)

    def _keep_late(self, items: list) -> str:
        """No worker and no successor: spool them here, or count them."""
        if not self._late_reported:
            self._late_reported = True
            self._reporter.error(
                "after_close",
                "records logged after close() with no open handler of the same endpoint: "
                "kept in the spool when there is one, else counted as dropped",
                len(items),
            )
        if self._keeper.spool is None or not self._ledger.adopt(len(items)):
            self._ledger.drop_late(len(items))
            return "failed"
        events = self._convert_batch(items)  # user code: outside any lock
        with self._late_lock:
            outcome = self._keeper.keep(events).outcome
        newer = _NEWEST.get(self._identity)  # one may have appeared meanwhile: tell it
        successor = newer() if newer is not None else None
        if successor is not None and successor is not self:
            successor._spool_grew()
        return outcome

    def _spool_grew(self) -> None:
        """Another handler of our identity put batches in our spool: replay them soon."""
        self._keeper.pending = True
        self._wake.set()

    # ----------------------------------------------------------------- the handler lock
    def acquire(self) -> None:
        """Take the handler lock, remembering who holds it: a ``flush()``/``close()`` called
        under it (by ``logging.shutdown()`` or ``dictConfig``) must not wait for the worker."""
        super().acquire()
        self._lock_depth += 1
        self._lock_owner = _get_ident()

    def release(self) -> None:
        self._lock_depth -= 1
        if self._lock_depth <= 0:
            self._lock_depth = 0
            self._lock_owner = None
        super().release()

    def _under_own_lock(self) -> bool:
        return self._lock_owner == _get_ident()

    # ----------------------------------------------------------------- public
    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Block until everything emitted before this call is delivered or spooled.

        Returns False if ``timeout`` ran out first (or if called from the worker itself).
        While the interpreter exits (an ``atexit`` hook, Python < 3.12's
        ``logging.shutdown()``) it waits at most ``close_timeout``, as close() does; called
        under the handler's lock (``logging.shutdown()``, ``dictConfig``) it does not wait:
        the ``close()`` that follows drains.
        """
        self._notice_fork()
        if self._under_own_lock():
            self._wake.set()
            return not self._buffer and self._ledger.idle()
        if timeout is None and not threading.main_thread().is_alive():
            timeout = self.settings.close_timeout  # the interpreter is exiting
        if self._closed or not self._started or _get_ident() in WORKER_IDENTS:
            return not self._buffer and self._ledger.idle()
        if not self.listener.is_alive():
            return False
        return self.listener.request_flush(self._emitted_so_far()).wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain within ``close_timeout`` (or ``timeout``); spool what is left, then stop."""
        if self._under_own_lock() and not self._closed and _logging_lock_held_here():
            # dictConfig/fileConfig closing us: the worker finishes by the deadline on its
            # own (taking what loggers still send here meanwhile) and the exit hook waits
            # for it (see the module docstring)
            self.begin_close(timeout, linger=True)
            logging.Handler.close(self)
            return
        self.begin_close(timeout)
        self.finish_close()

    def begin_close(self, timeout: float | None = None, linger: bool = False) -> None:
        """Start draining (non-blocking); every wait and retry ends by the deadline.
        ``linger``: the worker keeps taking late records until then (a reload)."""
        self._notice_fork()
        if self._closed:
            return  # a drain is under way or done: a second close waits for it
        limit = self.settings.close_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self._close_deadline = deadline
        self._closed = True
        self._fast_pid = -1
        self._exporter.deadline = deadline
        self._exporter.wakeup.set()
        self._transport.cut_off(deadline)
        if self._started:
            self.listener.begin_stop(deadline, linger)
        else:
            self._close_intake()

    def finish_close(self) -> None:
        """Wait for the drain until its deadline (plus a moment to keep the rest on disk).
        A worker still busy then is stuck in user code: what it holds is counted as
        failed and reported. Safe to re-enter (a SIGTERM during the exit drain)."""
        deadline = self._close_deadline
        if deadline is not None and self._started:
            self.listener.end_linger()  # someone waits now: drain and stop
            left = deadline + CLOSE_GRACE - time.monotonic()
            if not self.listener.join(left):
                lost = self._ledger.give_up(self._buffer)
                if lost:
                    self._reporter.error(
                        "close_timeout",
                        f"close() ran out of time while the worker was stuck (user code "
                        f"in conversion?): {lost} records counted as failed",
                        lost,
                    )
        if not self._finished:
            self._finished = True
            self._transport.close()
            lifecycle.unregister(self)
            logging.Handler.close(self)

    def on(self, event: Event, callback: Callback) -> None:
        """Call ``callback(info: dict)`` on "send" (before a request), "flush" (after one
        succeeded) or "error" (a background failure); called on the worker thread."""
        self._reporter.on(event, callback)
        self._callbacks.append((event, callback))

    def held(self) -> bool:
        """Is delivery on hold (the endpoint failed for good a moment ago)?"""
        return self._exporter.held()

    def resume(self) -> None:
        """End a hold now: the next batch (and the spool's replay) is tried at once."""
        self._exporter.resume()
        self._wake.set()

    @property
    def spool_dir(self) -> str | None:
        """This handler's own spool directory, or None without a usable spool."""
        spool = self._keeper.spool
        return spool.directory if spool is not None else None

    def stats(self) -> HandlerStats:
        """Counters since start (or since fork, in a child); the ledger's columns are read
        at one instant, so they always add up to ``emitted``."""
        out = self._stats.snapshot()
        out.setdefault("placeholders", 0)
        out.update(self._ledger.snapshot(self._buffer, self._emitted_so_far))
        out["suppressed"] = self._suppressed
        spool = self._keeper.spool
        if spool is not None:
            out["spool"] = spool.summary()
        return out  # type: ignore[return-value]  # the keys of HandlerStats, checked by a test

    def __repr__(self) -> str:
        return f"<{self._label()} {logging.getLevelName(self.level)}>"

    # ----------------------------------------------------------------- process life
    def after_fork_in_child(self) -> None:
        """In a forked child: a fresh buffer, session, worker and source id."""
        self._late_lock = threading.Lock()  # a thread of the parent may have held it
        self._lock_owner, self._lock_depth = None, 0
        self._transport.reset()
        if self._default_source:
            self.source_id = default_source_id()
        if not self._closed:
            self._build()  # the parent's worker thread does not exist here
            lifecycle.register(self)
        else:
            self._pid = _getpid()


def _not_a_record(item) -> tuple:
    """A snapshot standing for something that is neither a LogRecord nor a snapshot."""
    text = f"<not a log record: {type(item).__qualname__}>"
    return (text, "WARNING", "", time.time(), None, None, None, None)


def _logging_lock_held_here() -> bool:
    """Does the calling thread hold logging's module lock? ``dictConfig`` and ``fileConfig``
    do while they close the old handlers, and our worker's HTTP stack (urllib3's loggers)
    may be waiting for that lock: then ``close()`` must not wait for the worker. Asked with
    public calls only: a probe thread that needs the lock (``logging.getLogger``) can't
    finish while we hold it. Where no thread can be started (Python 3.12 at exit) nobody
    is configuring logging either."""
    probe = threading.Thread(target=logging.getLogger, args=(__name__,), daemon=True)
    try:
        probe.start()
    except RuntimeError:
        return False
    probe.join(0.05)
    return probe.is_alive()


class RecordQueueHandler(logging.handlers.QueueHandler):
    """The stdlib ``QueueHandler`` face of a :class:`BatchingHandler`: its ``queue`` is the
    handler's buffer, ``prepare()`` the handler's cheap snapshot (not the stdlib's format
    and copy), ``enqueue()`` the handler's bounded append (a ``LogRecord`` is snapshotted
    first), and ``listener`` the handler's worker."""

    def __init__(self, owner: BatchingHandler):
        super().__init__(deque())  # type: ignore[arg-type]  # a deque: enqueue() is ours
        self._owner = weakref.ref(owner)

    @property  # type: ignore[override]
    def listener(self):
        owner = self._owner()
        return owner.listener if owner is not None else None

    @listener.setter
    def listener(self, value) -> None:
        pass  # the owner's worker is the listener; Python 3.12's __init__ sets None here

    def prepare(self, record: logging.LogRecord):
        owner = self._owner()
        return capture(record, owner.formatter if owner is not None else None)

    def enqueue(self, record) -> None:
        owner = self._owner()
        if owner is None:
            return
        if isinstance(record, logging.LogRecord):
            record = capture(record, owner.formatter)
        owner._accept(record)

    def close(self) -> None:
        """Closing this face never stops the owner's worker (the owner's close() does)."""
        logging.Handler.close(self)


def _reset_start_lock() -> None:
    """A forked child: a thread of the parent may have held the lock at the fork."""
    global _START_LOCK
    _START_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_start_lock)


class ReadyEvent:
    """A buffered event that needs no conversion (``submit``, ``export_now``)."""

    __slots__ = ("event",)

    def __init__(self, event: dict):
        self.event = event
