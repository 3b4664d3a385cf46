"""Counters, ``on(event, fn)`` callbacks and rate-limited complaints on stderr.

A background failure must be visible without flooding: each kind of error is printed once,
then at most once a minute with a count, always through ``on("error")`` and ``stats()``.
Every message passes through :meth:`Reporter.scrub`, which blanks the handler's secrets in
any encoding a server may echo them in (raw, %-encoded, JSON- or XML/HTML-escaped, a bytes
repr, or a prefix of 8+ characters left by a truncation) and the user-info of any URL, and
then through :func:`printable`, so a reply's NULs, newlines and escape sequences never reach
a terminal or a log file as such, and no message is longer than :data:`MAX_MESSAGE`.

Threading: ``Stats.counts`` is written by the worker thread under ``Stats._lock``; the
handler reads snapshots under the same lock. ``Reporter`` keeps its rate-limit state under
its own lock; callbacks are registered by the application before traffic and called on the
worker thread, outside any lock.
"""

from __future__ import annotations

import functools
import html.entities
import re
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, Literal, TypedDict

from .transport import redact_userinfo

#: what ``handler.on(event, callback)`` accepts
Event = Literal["send", "flush", "error"]
#: ``callback(info)``: the info dict of the event (see the README's Methods section)
Callback = Callable[[Dict[str, Any]], object]


EVENTS: tuple[Event, ...] = ("send", "flush", "error")
COUNTERS = ("sent", "retried", "rejected", "failed", "spooled", "replayed", "suppressed")
REPEAT_AFTER = 60.0
#: longest message text passed to stderr or on("error"), in characters
MAX_MESSAGE = 1000
#: a secret cut to this many characters or more is still blanked
MIN_SECRET_PREFIX = 8


class SpoolSummary(TypedDict):
    files: int
    bytes: int


class _CountersBase(TypedDict):
    sent: int
    retried: int
    rejected: int
    failed: int
    spooled: int
    replayed: int
    suppressed: int
    batches: int
    spool_dropped: int
    truncated: int
    replay_rejected: int
    errors: Dict[str, int]  # failures by kind, e.g. {"http_503": 2, "network": 1}
    placeholders: int
    emitted: int
    queued: int
    in_flight: int
    dropped: int


class HandlerStats(_CountersBase, total=False):
    """What ``handler.stats()`` returns (``spool`` only when the handler has a spool)."""

    spool: SpoolSummary


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
        """Blank each secret in every form a server may echo it in, longest first, and
        the user-info of any URL."""
        text = redact_userinfo(text)
        secrets = {str(s) for s in self._secrets() if s}
        for secret in sorted(secrets, key=len, reverse=True):
            text = _secret_pattern(secret).blank(text)
        return text

    def fire(self, event: str, payload: dict) -> None:
        for callback in list(self._callbacks[event]):
            try:
                callback(payload)
            except Exception as exc:
                if event != "error":
                    self.error("callback", f"on({event!r}) callback raised {type(exc).__name__}")

    def error(self, kind: str, message: str, events: int = 0) -> None:
        message = printable(self.scrub(message))
        with self._lock:
            self.stats.errors[kind] += 1
            repeats = self._due(kind)
        if repeats is not None:
            more = f" (and {repeats} more since last report)" if repeats else ""
            self._print(f"loghandlers {self.label}: {kind}: {message}{more}\n")
        self.fire("error", {"kind": kind, "message": message, "events": events})

    def notice(self, kind: str, message: str) -> None:
        """Tell the person reading stderr what happened to their records and what to do
        (e.g. where a batch was spooled); rate-limited like errors, not counted as one."""
        with self._lock:
            repeats = self._due(f"notice:{kind}")
        if repeats is not None:
            more = f" ({repeats} more times since the last such note)" if repeats else ""
            text = printable(self.scrub(message))
            self._print(f"loghandlers {self.label}: {text}{more}\n")

    def _due(self, key: str) -> int | None:
        """Under ``_lock``: the repeats to mention if ``key`` is due to be printed now,
        else None (it was printed less than REPEAT_AFTER seconds ago)."""
        now = time.monotonic()
        last = self._last_printed.get(key)
        if last is None or now - last >= REPEAT_AFTER:
            self._last_printed[key] = now
            return int(self._since_printed.pop(key, 0))
        self._since_printed[key] += 1
        return None

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


# ----------------------------------------------------------------------------- output
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``limit`` characters (plus a marker):
    control and format characters (NUL, newlines, ESC, bidi overrides...) become escapes."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


# ----------------------------------------------------------------------------- secrets
def _hex(value: int, width: int, padded: bool = True) -> str:
    """``value`` in hex as a regex, in any letter case; ``padded``: with any number of
    leading zeros (as in ``&#x002B;``), else exactly ``width`` digits (as in ``%2B``)."""
    digits = f"{value:0{width}x}"
    if padded:
        digits = digits.lstrip("0") or "0"
    pattern = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)
    return "0*" + pattern if padded else pattern


@functools.cache
def _entity_names() -> dict:
    """Character -> the HTML5 entity names that stand for it alone (``&plus;``...)."""
    names: dict = {}
    for name, value in html.entities.html5.items():
        if len(value) == 1 and name.endswith(";"):
            names.setdefault(value, []).append(name)
    return names


@functools.lru_cache(maxsize=4096)
def _char_pattern(char: str) -> str:
    """A regex for one character of a secret in every encoding we know a server to echo:
    itself (possibly backslash-escaped, as JSON writes ``\\/`` and ``\\"``), %XX of its
    UTF-8 bytes (also %25XX, twice encoded), ``+`` for a space, ``\\uXXXX`` (a surrogate
    pair beyond the BMP), ``\\xXX``/``\\UXXXXXXXX`` (Python reprs), ``&#DD;``/``&#xHH;``
    and named entities (also with ``&amp;`` in front, escaped twice)."""
    code = ord(char)
    utf8 = char.encode("utf-8", "surrogatepass")
    forms = ["".join(f"%(?:25)?{_hex(b, 2, padded=False)}" for b in utf8)]
    if char == " ":
        forms.append(r"\+")
    if code < 0x10000:
        forms.append(r"\\+u" + _hex(code, 4))
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"\\+u{_hex(high, 4)}\\+u{_hex(low, 4)}")
        forms.append(r"\\+U" + _hex(code, 8))
    if code < 0x100:
        forms.append(r"\\+x" + _hex(code, 2))
    if len(utf8) > 1:
        forms.append("".join(r"\\+x" + _hex(b, 2) for b in utf8))
    entity = "&(?:amp;)*"
    forms.append(f"{entity}#0*{code};?")
    forms.append(f"{entity}#[xX]{_hex(code, 2)};?")
    forms += [entity + re.escape(name) for name in _entity_names().get(char, ())]
    # the character itself last: each character of a secret past its head is matched on
    # its own, without backtracking, so a bare "&" must not win over "&amp;" or "&#38;"
    forms.append(r"\\*" + re.escape(char))
    return "(?:" + "|".join(forms) + ")"


class _SecretPattern:
    """Finds a secret, or a prefix of it of :data:`MIN_SECRET_PREFIX`+ characters, each
    character in any of its encodings, and blanks the whole stretch."""

    def __init__(self, secret: str):
        head = secret[:MIN_SECRET_PREFIX]
        self.head = re.compile("".join(_char_pattern(c) for c in head))
        self.rest = [re.compile(_char_pattern(c)) for c in secret[len(head) :]]

    def blank(self, text: str) -> str:
        out, position = [], 0
        for found in self.head.finditer(text):
            if found.start() < position:
                continue  # inside a stretch already blanked
            end = found.end()
            for char in self.rest:
                more = char.match(text, end)
                if more is None:
                    break
                end = more.end()
            out.append(text[position : found.start()])
            out.append("****")
            position = end
        if not out:
            return text
        out.append(text[position:])
        return "".join(out)


@functools.lru_cache(maxsize=64)
def _secret_pattern(secret: str) -> _SecretPattern:
    return _SecretPattern(secret)
