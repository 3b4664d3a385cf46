"""Process life: which handlers are open, and what happens to them at exit, SIGTERM and fork.

Handlers register here when they start and unregister when they are closed. This module
never touches a handler's internals; it calls three documented methods every handler has:

- ``handler.begin_close()``: start draining (non-blocking; every wait ends by the deadline),
- ``handler.finish_close()``: wait for that drain until its deadline, then release
  resources (safe to re-enter: a SIGTERM during the atexit drain waits for it),
- ``handler.after_fork_in_child()``: in a forked child, start afresh (buffer, session,
  worker, source id) with none of the parent's records.

How each kind of process ends, and where its handlers drain:

- A program that ends normally (or by ``sys.exit``, or a server's worker that does, such
  as gunicorn's): ``atexit``, after the interpreter has joined the non-daemon threads.
- A plain SIGTERM (nobody else handles it): :func:`drain_on_sigterm`, then the process
  dies of the signal as it would have.
- A ``multiprocessing`` child (fork, spawn or forkserver; ``Pool`` and
  ``ProcessPoolExecutor`` workers too): fork and forkserver children leave through
  ``os._exit`` and never run ``atexit``, but every child runs ``threading._shutdown()``
  first, whose hooks drain here. The test is "``multiprocessing.parent_process()`` is
  set": a forkserver child imports the application (and this module) itself, so "our pid
  differs from the one we were imported in" misses it (that test lost forkserver children's
  records on 3.9-3.12).
- A child forked from a thread other than the main one: nothing would ever end it once
  our worker thread runs there (the forking thread is the only other thread, and when it
  returns no interpreter shutdown follows). A small watcher thread waits for it, then
  does what interpreter shutdown would: joins the remaining non-daemon threads, drains,
  and ends the process with status 0.

- A child forked by something that skips Python's fork hooks (uWSGI's pre-forked
  workers, C extensions): the handler's next emit notices the new pid and calls
  :func:`after_fork_in_child`; a worker that never logs is caught by :func:`close_all`,
  which compares the pid first (else it would wait out close_timeout for a worker thread
  that exists only in the parent, and count the parent's records in the child's name).
- Under a uWSGI without Python threads, :func:`register` says so once on stderr.

Threading: the registry is a ``WeakSet`` written by the threads that construct, close or
fork handlers; every reader iterates over a ``list()`` copy of it. ``_PID``,
``_MAIN_IDENT`` and ``_exit_watch`` are written by the at-fork hook (the child's only
thread) or by whichever thread first notices a fork made without hooks (under
``handler._START_LOCK``, or at exit). ``_DRAINS`` and ``_PENDING_SIGNAL`` are written by the
draining thread and the main thread's SIGTERM handler; the once-only warning flag by
whichever thread registers first (a duplicate write only repeats a check).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref

from .worker import WORKER_IDENTS

_LIVE: weakref.WeakSet = weakref.WeakSet()
_DRAINS = 0  # close_all() calls under way
_PENDING_SIGNAL: int | None = None  # a SIGTERM that arrived during one


def register(handler) -> None:
    """Drain ``handler`` at exit (and on an unhandled SIGTERM) until it is unregistered."""
    _LIVE.add(handler)
    if _exit_watch.needed and not _exit_watch.started:
        _exit_watch.start()
    _warn_if_threads_cannot_run()


def unregister(handler) -> None:
    _LIVE.discard(handler)


def live_handlers() -> list:
    """The open handlers of this process (a copy)."""
    return list(_LIVE)


def close_all() -> None:
    """atexit: drain every open handler at once, each within its own close_timeout.

    A SIGTERM that arrives meanwhile does not start a second drain inside the first: the
    signal handler may run in the very frame it interrupted, holding a lock the drain
    needs. It is noted, and the process dies of it once this drain is done.
    """
    global _DRAINS
    _DRAINS += 1
    try:
        if os.getpid() != _STARTED_PID:
            # forked by something that skips Python's fork hooks (a uWSGI worker that
            # never logged): the handlers still hold the parent's records and threads
            after_fork_in_child()
        handlers = list(_LIVE)
        for handler in handlers:
            try:
                handler.begin_close()
            except Exception:
                pass
        for handler in handlers:
            try:
                handler.finish_close()
            except Exception:
                pass
    finally:
        _DRAINS -= 1
    if _DRAINS == 0 and _PENDING_SIGNAL is not None:
        _die_of(_PENDING_SIGNAL)


def drain_on_sigterm() -> None:
    """Make a plain SIGTERM drain the handlers before the process dies.

    Only when nobody else handles SIGTERM (a server like gunicorn installs its own and exits
    through sys.exit, which runs atexit anyway) and only from the main thread. Never inside
    a server that embeds Python (uWSGI, mod_wsgi): a Python-level handler runs only when the
    main thread next runs Python, which their C main loop never does, so a SIGTERM that
    arrived before the server put in its own handler would be swallowed.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if "uwsgi" in sys.modules or "mod_wsgi" in sys.modules:
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _drain_then_die)
    except (ValueError, OSError, AttributeError):
        pass


def _drain_then_die(signum, frame) -> None:
    """Drain within close_timeout, then die of the same signal as if we had not been here.

    During a drain that is already under way (the exit drain, or a multiprocessing child's)
    only note the signal: that drain ends the process when it is done (see close_all)."""
    global _PENDING_SIGNAL
    if _DRAINS:
        _PENDING_SIGNAL = signum
        return
    close_all()
    _die_of(signum)


def _die_of(signum: int) -> None:
    if threading.current_thread() is not threading.main_thread():
        os.kill(os.getpid(), signum)  # the main thread's handler finds nothing left to drain
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def after_fork_in_child() -> None:
    """In a forked child: every handler starts afresh. Called by the at-fork hook, and by
    a handler that notices a fork that skipped the hooks (uWSGI)."""
    global _MAIN_IDENT, _STARTED_PID
    _STARTED_PID = os.getpid()
    WORKER_IDENTS.clear()
    _MAIN_IDENT = threading.main_thread().ident
    for handler in list(_LIVE):
        handler.after_fork_in_child()


def started_afresh() -> bool:
    """Have this process's handlers been started afresh (or is this the process that
    made them)? False only in a child forked without Python's fork hooks that nothing
    has noticed yet; a handler closed before a fork keeps its maker's pid, and is no sign
    of one."""
    return _STARTED_PID == os.getpid()


def _at_fork_in_child() -> None:
    """os.register_at_fork hook (it runs in the forking thread, the child's only one)."""
    forked_off_a_thread = threading.get_ident() != _MAIN_IDENT
    _exit_watch.reset(needed=forked_off_a_thread)
    after_fork_in_child()
    if _exit_watch.needed and _LIVE and not _exit_watch.started:
        _exit_watch.start()


def _is_multiprocessing_child() -> bool:
    process = sys.modules.get("multiprocessing.process")
    return process is not None and process.parent_process() is not None


def _drain_before_threading_shutdown() -> None:
    """threading._shutdown() hook. multiprocessing's fork and forkserver children run it,
    then leave through os._exit, skipping atexit: drain here. In a program's own exit,
    leave the drain to atexit, which runs after the non-daemon threads have ended."""
    if _is_multiprocessing_child() or os.getpid() != _IMPORT_PID:
        close_all()


class _ExitWatch:
    """Ends a child forked off a non-main thread once that thread has returned.

    In such a child the forking thread is the only thread Python knows as "main"; when it
    returns, the C runtime would end the process only if no other thread were left, and
    ours is. This daemon thread joins it, then does what interpreter shutdown does: waits
    for the remaining non-daemon threads, drains every handler (within close_timeout), and
    ends the process with status 0, as the last thread's exit would have.
    """

    def __init__(self) -> None:
        self.needed = False
        self.started = False

    def reset(self, needed: bool) -> None:
        self.needed = needed
        self.started = False

    def start(self) -> None:
        self.started = True
        threading.Thread(target=self._watch, name="loghandlers-exit-watch", daemon=True).start()

    def _watch(self) -> None:
        threading.main_thread().join()
        if _is_multiprocessing_child():
            return  # multiprocessing ends this process itself, after draining (see above)
        me = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not me and not thread.daemon and thread.is_alive():
                thread.join()
        close_all()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(0)


_exit_watch = _ExitWatch()


# ----------------------------------------------------------------------------- uWSGI
_THREADS_WARNED = False


def _warn_if_threads_cannot_run() -> None:
    """Say once, on stderr, that a uWSGI without Python threads starves our worker.

    uWSGI before 2.0.27 runs without Python threads unless ``--enable-threads``: the GIL
    is not released while a worker waits for requests, so a background thread only runs in
    the gaps of request handling. Records still go out in those gaps and at the latest
    when the worker exits (the exit drain releases the GIL while it waits), but not
    steadily; say so once per uWSGI instance (the master, or the first worker when apps
    load in the workers) rather than let it look like silent spooling.
    """
    global _THREADS_WARNED
    if _THREADS_WARNED:
        return
    _THREADS_WARNED = True
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None or getattr(uwsgi, "has_threads", True):
        return
    try:
        worker = uwsgi.worker_id()
    except Exception:
        worker = 0
    if worker > 1:
        return  # the master or worker 1 has said it for this instance
    sys.stderr.write(
        "loghandlers: uWSGI is running without Python threads, so log records are sent "
        "only in the gaps between requests and when a worker exits. Start uWSGI with "
        "--enable-threads (the default since uWSGI 2.0.27) to send them steadily.\n"
    )
    sys.stderr.flush()


_IMPORT_PID = os.getpid()
_STARTED_PID = _IMPORT_PID  # the process whose handlers are this process's own
_MAIN_IDENT = threading.main_thread().ident
atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_at_fork_in_child)
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_drain_before_threading_shutdown)
