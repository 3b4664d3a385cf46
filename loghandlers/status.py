"""Counters, ``on(event, fn)`` callbacks and rate-limited complaints on stderr.

A background failure must be visible without flooding: each kind of error is printed once,
then at most once a minute with a count, always through ``on("error")`` and ``stats()``.
Every message passes through :meth:`Reporter.scrub`, which blanks the handler's secrets.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Callable
from urllib.parse import quote, quote_plus

EVENTS = ("send", "flush", "error")
COUNTERS = ("sent", "retried", "rejected", "failed", "spooled", "replayed", "suppressed")
REPEAT_AFTER = 60.0


class Stats:
    """Worker-side counters; the handler adds emitted/dropped/queued when asked."""

    def __init__(self):
        self._lock = threading.RLock()  # reentrant: a signal handler may drain mid-update
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.counts.update(batches=0, spool_dropped=0, truncated=0, replay_rejected=0)
        self.errors: Counter = Counter()

    def add(self, **amounts: int) -> None:
        with self._lock:
            for key, amount in amounts.items():
                self.counts[key] = self.counts.get(key, 0) + amount

    def snapshot(self) -> dict:
        with self._lock:
            out = dict(self.counts)
            out["errors"] = dict(self.errors)
        return out


class Reporter:
    """Fans out events to callbacks and reports errors without repeating itself."""

    def __init__(self, label: str, stats: Stats, secrets: Callable[[], list]):
        self.label = label
        self.stats = stats
        self._secrets = secrets
        self._callbacks: dict = {name: [] for name in EVENTS}
        self._last_printed: dict = {}
        self._since_printed: Counter = Counter()
        self._lock = threading.Lock()

    def on(self, event: str, callback: Callable[[dict], object]) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def scrub(self, text: str) -> str:
        """Blank each secret, also as it looks inside a URL or a form (``+`` → ``%2B``)."""
        for secret in self._secrets():
            if not secret:
                continue
            for form in {secret, quote(secret, safe=""), quote_plus(secret, safe="")}:
                if form in text:
                    text = text.replace(form, "****")
        return text

    def fire(self, event: str, payload: dict) -> None:
        for callback in list(self._callbacks[event]):
            try:
                callback(payload)
            except Exception as exc:
                if event != "error":
                    self.error("callback", f"on({event!r}) callback raised {type(exc).__name__}")

    def error(self, kind: str, message: str, events: int = 0) -> None:
        message = self.scrub(message)
        with self._lock:
            self.stats.errors[kind] += 1
            now = time.monotonic()
            last = self._last_printed.get(kind)
            if last is None or now - last >= REPEAT_AFTER:
                repeats = self._since_printed.pop(kind, 0)
                self._last_printed[kind] = now
                print_it = True
            else:
                self._since_printed[kind] += 1
                print_it = False
        if print_it:
            more = f" (and {repeats} more since last report)" if repeats else ""
            self._print(f"loghandlers {self.label}: {kind}: {message}{more}\n")
        self.fire("error", {"kind": kind, "message": message, "events": events})

    @staticmethod
    def _print(text: str) -> None:
        stream = sys.stderr
        if stream is None:
            return
        try:
            stream.write(text)
            stream.flush()
        except Exception:
            pass
