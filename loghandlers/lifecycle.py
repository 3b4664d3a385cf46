"""Process life: which handlers are open, and what happens to them at exit, SIGTERM and fork.

Handlers register here when they start and unregister when they are closed. This module
never touches a handler's internals; it calls three documented methods every handler has:

- ``handler.begin_close()``: start draining (non-blocking; every wait ends by the deadline),
- ``handler.finish_close()``: wait for that drain until its deadline, then release
  resources (safe to re-enter: a SIGTERM during the atexit drain waits for it),
- ``handler.after_fork_in_child()``: in a forked child, start afresh (buffer, session,
  worker, source id) with none of the parent's records.

Threading: the registry is a ``WeakSet`` written by the threads that construct, close or
fork handlers; every reader iterates over a ``list()`` copy of it.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref

from .worker import WORKER_IDENTS

_LIVE: weakref.WeakSet = weakref.WeakSet()


def register(handler) -> None:
    """Drain ``handler`` at exit (and on an unhandled SIGTERM) until it is unregistered."""
    _LIVE.add(handler)


def unregister(handler) -> None:
    _LIVE.discard(handler)


def live_handlers() -> list:
    """The open handlers of this process (a copy)."""
    return list(_LIVE)


def close_all() -> None:
    """atexit: drain every open handler at once, each within its own close_timeout."""
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


def drain_on_sigterm() -> None:
    """Make a plain SIGTERM drain the handlers before the process dies.

    Only when nobody else handles SIGTERM (a server like gunicorn installs its own and exits
    through sys.exit, which runs atexit anyway) and only from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _drain_then_die)
    except (ValueError, OSError, AttributeError):
        pass


def _drain_then_die(signum, frame) -> None:
    """Drain within close_timeout, then die of the same signal as if we had not been here."""
    close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def after_fork_in_child() -> None:
    """os.register_at_fork hook: every handler starts afresh in the child."""
    WORKER_IDENTS.clear()
    for handler in list(_LIVE):
        handler.after_fork_in_child()


def _close_all_in_fork_child() -> None:
    """multiprocessing's forked children leave through os._exit, skipping atexit."""
    if os.getpid() != _IMPORT_PID:
        close_all()


_IMPORT_PID = os.getpid()
atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=after_fork_in_child)
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_close_all_in_fork_child)
