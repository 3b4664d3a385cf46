"""What every client does with its handlers: build them from the SDK's arguments and our
options, keep one per routing key (an Initial State bucket, a Kronos namespace), and flush,
close or count them together.

Threading: ``HandlerSet`` is called from any application thread, and holds no lock, so a
``fork()`` from any thread can't leave one held in the child: its dict and list are only
read, inserted into or popped from with single atomic operations (``setdefault``, ``pop``,
``list(...)``) on keys that hash without Python code (``None``, ``str``, tuples of them).
Handlers are built, flushed and closed outside those operations; no user code runs there.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generic, Hashable, Mapping, TypeVar

from ..handler import BatchingHandler


def given(**arguments: Any) -> dict:
    """The arguments the caller actually set: None means "not given", so the environment
    variables and the handler's defaults still apply to it."""
    return {name: value for name, value in arguments.items() if value is not None}


def merge_options(sdk_options: Mapping[str, Any], our_options: Mapping[str, Any]) -> dict:
    """Options from the SDK's names and ours; the same option twice is a TypeError."""
    twice = sorted(set(sdk_options) & {k for k, v in our_options.items() if v is not None})
    if twice:
        raise TypeError(f"option(s) given twice, as the SDK's name and as ours: {twice}")
    return {**our_options, **sdk_options}


H = TypeVar("H", bound=BatchingHandler)


class HandlerSet(Generic[H]):
    """The service handlers of one client, one per routing key, built on first use."""

    def __init__(self, build: Callable[[Any], H]):
        self._build = build
        self._handlers: dict[Hashable, H] = {}
        self._retired: list[H] = []

    def get(self, key: Hashable = None) -> H:
        handler = self._handlers.get(key)
        if handler is not None:
            return handler
        handler = self._build(key)  # may raise ValueError for bad options: nothing kept
        kept = self._handlers.setdefault(key, handler)
        if kept is not handler:  # another thread built one first: use it, drop ours
            handler.close(timeout=0)
        return kept

    def retire(self, key: Hashable) -> None:
        """Stop routing to ``key``'s handler: it drains in the background (within its
        ``close_timeout``, spooling the rest) while new events go to a new handler."""
        handler = self._handlers.pop(key, None)
        if handler is not None:
            self._retired.append(handler)
            handler.begin_close()

    def all(self) -> list[H]:
        return list(self._handlers.values())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is delivered or spooled; False if
        ``timeout`` (for all handlers together) ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = True
        for handler in self.all():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = handler.flush(left) and done
        return done

    def begin_close(self) -> None:
        """Start draining every handler in the background (the owner was dropped)."""
        for handler in self.all():
            handler.begin_close()

    def close(self, timeout: float | None = None) -> None:
        handlers = list(self._handlers.values()) + list(self._retired)
        for handler in handlers:
            handler.begin_close(timeout)
        for handler in handlers:
            handler.finish_close()

    def stats(self) -> dict:
        """Every handler's counters added up (``errors`` by kind; ``spool`` left out)."""
        total: dict = {}
        for handler in list(self._handlers.values()) + list(self._retired):
            for name, value in handler.stats().items():
                if isinstance(value, bool) or name == "spool":
                    continue
                if isinstance(value, int):
                    total[name] = total.get(name, 0) + value
                elif isinstance(value, dict) and name == "errors":
                    errors = total.setdefault("errors", {})
                    for kind, count in value.items():
                        errors[kind] = errors.get(kind, 0) + count
        return total
