"""How ISStreamer 2.0.0 turns objects and times into Initial State keys and epochs.

Shared by :class:`~loghandlers.InitialStateHandler` (``extra=`` fields that are lists,
dicts or objects; ``extra={"epoch": t}``) and the ``Streamer`` client (``log_object``,
``log(..., epoch=t)``), so both flatten and stamp alike. Pure functions; no state.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Mapping
from typing import Any

from ..records import safe_repr


def event_epoch(value: Any) -> float | int | None:
    """A user's ``epoch`` as ISStreamer sends it (a number stays exactly as given), or None
    when it is no usable time (ISStreamer then uses "now"). A datetime is converted (naive
    means UTC), which ISStreamer can't do."""
    if issubclass(type(value), datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        try:
            return value.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    if issubclass(type(value), bool) or not issubclass(type(value), (int, float)):
        return None
    try:
        if not math.isfinite(value):
            return None
        datetime.datetime.fromtimestamp(value)  # ISStreamer's own test of a usable epoch
    except (OverflowError, OSError, ValueError):
        return None
    return value


def name_text(name: Any) -> str:
    if issubclass(type(name), str):
        return name
    try:
        return f"{name}"
    except Exception:
        return safe_repr(name)


def _properties(obj: Any) -> tuple[str, ...]:
    """Names of the ``@property`` attributes of ``obj``'s class, sorted (as ``dir()``).
    Properties live on the class, so the answer is cached per class (the worker asks it
    for every field value that is not a plain JSON type)."""
    cls: Any = type(obj)  # a class is usually hashable, but a metaclass may say otherwise
    try:
        return _class_properties(cls)
    except TypeError:  # an unhashable class
        return _class_properties.__wrapped__(cls)


@functools.lru_cache(maxsize=256)
def _class_properties(cls: type) -> tuple[str, ...]:
    try:
        names = dir(cls)
    except Exception:
        return ()
    out = []
    for name in names:
        try:
            if isinstance(getattr(cls, name, None), property):
                out.append(name)
        except Exception:
            continue
    return tuple(out)


def _read_property(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except Exception as exc:  # a property that raises costs only its own value
        return f"<unreadable property: {type(exc).__name__}>"


def log_object_items(obj: Any, key_prefix: str | None = None) -> list[tuple[str, Any]]:
    """The ``(key, value)`` pairs ISStreamer 2.0.0's ``log_object(obj, key_prefix)`` logs.

    A list gives ``<prefix>_0``, ``<prefix>_1``...; a dict ``<prefix>_<key>``; any other
    object one pair per ``@property`` (``<prefix>_<name>``, in ``dir()`` order). The default
    prefix is the type's name (``list``, ``dict``, ``Reading``); ``key_prefix=""`` means no
    prefix. Unlike ISStreamer, a tuple (or other sequence subclass of list/tuple) counts as
    a list and any mapping as a dict, where ISStreamer silently logs nothing for them; a
    property, sequence or mapping that raises costs only its own value, never the call.
    """
    if key_prefix is None:
        prefix = f"{type(obj).__name__}_"
    elif key_prefix:
        prefix = f"{key_prefix}_"
    else:
        prefix = ""
    kind = type(obj)
    if issubclass(kind, (list, tuple)):
        try:
            values = list(obj)
        except Exception as exc:
            return [(f"{prefix}items", f"<unreadable sequence: {type(exc).__name__}>")]
        return [(f"{prefix}{i}", value) for i, value in enumerate(values)]
    if issubclass(kind, Mapping):
        try:
            items = list(obj.items())
        except Exception as exc:
            return [(f"{prefix}items", f"<unreadable mapping: {type(exc).__name__}>")]
        return [(f"{prefix}{name_text(k)}", value) for k, value in items]
    return [(f"{prefix}{name}", _read_property(obj, name)) for name in _properties(obj)]


def flattens(value: Any) -> bool:
    """A field value that ``log_object`` would spread over several keys."""
    kind = type(value)  # not isinstance(): a poisoned __class__ must not raise here
    if issubclass(kind, (str, bytes, int, float, type(None), type)):
        return False
    if issubclass(kind, (list, tuple, Mapping)):
        try:
            return len(value) > 0  # an empty one keeps its JSON text, so it stays visible
        except Exception:
            return False
    return bool(_properties(value))


def field_items(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """A record field as Initial State pairs: ``[(prefix, value)]``, or one pair per item
    when ``log_object`` would flatten the value (a non-empty list, tuple or dict, or an
    object with properties). An empty container keeps its JSON text, so it stays visible."""
    if flattens(value):
        return log_object_items(value, prefix)
    return [(prefix, value)]
