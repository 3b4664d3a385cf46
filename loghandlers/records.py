"""LogRecord -> plain dict -> strict JSON text.

The caller's thread only snapshots a record (:func:`capture`); everything else here runs
on the worker thread, a small pipeline of functions in the style of python-json-logger
(whose reserved-attribute list and ``merge_record_extra`` decide what counts as an
``extra=`` field, and whose formatters are honoured when the user sets one).

Bad values never cost the record: anything ``json`` cannot encode is replaced by a readable
stand-in (see :func:`json_default` and :func:`sanitize`), and the text that leaves is strict
JSON: no bare NaN/Infinity, no lone surrogates.

Threading: no mutable state here. :func:`capture` runs on the caller's thread (it reads only the record);
:func:`base_fields` and :func:`freeze` run on the worker, outside every lock, because they
are where user code (formatters, ``__repr__``/``__str__``/``__format__`` of extras) runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import itertools
import json
import logging
import math
import os
import re
import socket
import uuid
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typing.TypeGuard is 3.10+; annotations are not evaluated at run time
    from typing_extensions import TypeGuard

from pythonjsonlogger import core as jsonlogger_core

#: record attributes that are not ``extra=`` fields (python-json-logger's list + ours)
RESERVED = frozenset(jsonlogger_core.RESERVED_ATTRS) | {"message", "asctime"}

_PLACEHOLDER = "<unrepresentable {}>"
_MAX_DEPTH = 64


def default_source_id() -> str:
    """``"<hostname>:<pid>"``: stable for a process, distinct for each forked child."""
    return f"{socket.gethostname()}:{os.getpid()}"


def capture(record: logging.LogRecord, exc_formatter: logging.Formatter | None):
    """Snapshot what only the caller can know: the message now, the traceback now.

    Without a formatter on the handler, the snapshot is a small tuple of the fields we ship
    (:data:`COMPACT`): a fifth of a record's memory, so a deep buffer stays cheap. With one,
    it is a copy of the record's attribute dict, since a formatter may read any attribute.
    Either way the worker never reads a record another handler is still mutating.
    """
    try:
        message = record.getMessage()
    except Exception as exc:  # a __str__ that raises, or msg/args that don't match
        message = unformattable_message(record, exc)
    exc_text = record.exc_text
    if record.exc_info and exc_text is None:
        try:
            exc_text = (exc_formatter or _PLAIN).formatException(record.exc_info)
        except Exception as exc:
            exc_text = f"<traceback unavailable: {type(exc).__name__}>"
        record.exc_text = exc_text  # as Formatter.format does: later handlers reuse it
    if exc_formatter is None:
        attributes = record.__dict__
        extras = extra_fields(attributes) if len(attributes) > _STANDARD_COUNT else None
        msg = record.msg
        if type(msg) in _BARE_TYPES and not record.args:
            message = BareValue(message, msg)
        return (
            message,
            record.levelname,
            record.name,
            record.created,
            exc_text,
            record.stack_info,
            extras,
            dict(msg) if _is_dict(msg) else None,
        )
    snapshot = record.__dict__.copy()
    snapshot["message"] = message
    snapshot["exc_text"] = exc_text
    snapshot["exc_info"] = None  # frees the frames; the text is all we ship
    if record.args:  # the formatter calls getMessage() again: give it the text, not %s
        snapshot["msg"] = message
    snapshot["args"] = None
    return snapshot


def _is_dict(value: Any) -> TypeGuard[dict]:
    """``isinstance(value, dict)`` without asking the object: ``isinstance`` reads
    ``__class__``, which raises on a lazy object (Django's ``SimpleLazyObject``)."""
    return issubclass(type(value), dict)


class BareValue(str):
    """The text of a message that was a bare number or bool (``log.info(32)``), which also
    keeps that value, for services whose events carry typed values (Initial State).
    Everywhere else it is just the text: JSON writes it as the string ``"32"``."""

    value: Any

    def __new__(cls, text: str, value: Any) -> BareValue:
        self = super().__new__(cls, text)
        self.value = value
        return self

    def __reduce__(self):  # copies and pickles keep the value
        return (BareValue, (str(self), self.value))


_BARE_TYPES = frozenset((int, float, bool))

#: field order of a compact snapshot (see :func:`capture`)
COMPACT = (
    "message",
    "levelname",
    "name",
    "created",
    "exc_text",
    "stack_info",
    "extras",
    "msg_dict",
)
_PLAIN = logging.Formatter()


def created_of(snapshot) -> float:
    return snapshot[3] if type(snapshot) is tuple else snapshot["created"]


def unformattable_message(record: logging.LogRecord, exc: BaseException) -> str:
    return (
        f"<unformattable message: {safe_repr(record.msg)} % {safe_repr(record.args)}: "
        f"{type(exc).__name__}>"
    )


def safe_repr(value: Any, limit: int = 1000) -> str:
    try:
        text = repr(value)
        if type(text) is not str:
            raise TypeError("__repr__ returned a non-string")
    except Exception:
        return _PLACEHOLDER.format(type(value).__qualname__)
    return text if len(text) <= limit else text[:limit] + "..."


def as_record(snapshot: dict) -> logging.LogRecord:
    """A LogRecord view over a snapshot, for formatters that want one."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.__dict__ = snapshot
    return record


def _standard_attribute_count() -> int:
    probe = logging.LogRecord("probe", logging.INFO, __file__, 0, "", (), None)
    return len(probe.__dict__)


#: a LogRecord's own attributes come first in its __dict__; ``extra=`` keys follow them
_STANDARD_COUNT = _standard_attribute_count()


def extra_fields(snapshot: dict) -> dict:
    """The ``extra=`` fields: every attribute python-json-logger would not reserve."""
    if len(snapshot) <= _STANDARD_COUNT:
        return {}
    return {
        key: snapshot[key]
        for key in itertools.islice(snapshot, _STANDARD_COUNT - 1, None)
        if key not in RESERVED
    }


def base_fields(snapshot, formatter: logging.Formatter | None) -> dict:
    """message, level, logger, exception/stack text and extras, in that order.

    A python-json-logger formatter set on the handler decides the fields instead (its
    ``add_fields`` and ``process_log_record``); a plain ``logging.Formatter`` decides the
    message text.
    """
    if type(snapshot) is tuple:
        message, level, logger, _, exc_text, stack_info, extras, msg_dict = snapshot
        fields = {
            "message": "" if msg_dict is not None else message,
            "level": level,
            "logger": logger,
        }
        if msg_dict is not None:
            fields.update(msg_dict)
        if exc_text:
            fields["exc_info"] = exc_text
        if stack_info:
            fields["stack_info"] = stack_info
        if extras:
            fields.update(extras)
        return fields
    if isinstance(formatter, jsonlogger_core.BaseJsonFormatter):
        return _fields_from_json_formatter(snapshot, formatter)
    msg = snapshot.get("msg")
    message = snapshot["message"]
    if formatter is not None and not _is_dict(msg):
        try:
            message = formatter.format(as_record(snapshot))
        except Exception as exc:
            message = f"{message} <formatter failed: {type(exc).__name__}>"
    fields = {"message": "" if _is_dict(msg) else message}
    fields["level"], fields["logger"] = snapshot["levelname"], snapshot["name"]
    if _is_dict(msg):
        fields.update(msg)
    # no exc_info/stack_info fields here: the Formatter's text already ends with them
    extras = extra_fields(snapshot)
    if extras:
        fields.update(extras)
    return fields


def minimal_fields(snapshot, exc: BaseException) -> dict:
    """What any snapshot can still say when building its fields failed."""
    if type(snapshot) is tuple:
        snapshot = dict(zip(COMPACT, snapshot))
    return {
        "message": str(snapshot.get("message", "")),
        "level": snapshot.get("levelname"),
        "logger": snapshot.get("name"),
        "conversion_error": f"{type(exc).__name__}: {safe_repr(exc)}",
    }


def _fields_from_json_formatter(snapshot: dict, formatter) -> dict:
    record = as_record(snapshot)
    message_dict: dict = {}
    msg = snapshot.get("msg")
    if _is_dict(msg):
        message_dict = dict(msg)
        record.message = ""
    if "asctime" in getattr(formatter, "_required_fields", ()):
        record.asctime = formatter.formatTime(record, formatter.datefmt)
    if snapshot.get("exc_text") and not message_dict.get("exc_info"):
        message_dict["exc_info"] = snapshot["exc_text"]
    if snapshot.get("stack_info") and not message_dict.get("stack_info"):
        message_dict["stack_info"] = formatter.formatStack(snapshot["stack_info"])
    fields: dict = {}
    formatter.add_fields(fields, record, message_dict)
    fields = formatter.process_log_record(fields)
    fields.setdefault("message", snapshot["message"])
    return fields


# --------------------------------------------------------------------------- freezing

#: the types JSON has: a value of exactly one of these needs no conversion
_NATIVE = frozenset({str, int, float, bool, type(None)})


#: shared read-only values of JSON's types that services put in every event (Kronos's
#: ``@library``), by id: freeze passes them through instead of copying them each time
_CONSTANTS: dict = {}


def json_constant(value: Any) -> Any:
    """Mark ``value`` (made of JSON's own types, never mutated, kept alive by the caller's
    module) as one :func:`freeze` passes through; returns it."""
    _CONSTANTS[id(value)] = value
    return value


def freeze(event: Any) -> tuple[dict, int]:
    """``event`` made of JSON's own types only, and how many values became placeholders.

    Runs on the worker, outside every lock, right after a record is mapped to its event:
    whatever user code hides behind an ``extra=`` value (``__repr__``, ``__str__``,
    ``__format__``, a ``__class__`` that raises as Django's ``SimpleLazyObject`` does) runs
    here, once, so that encoding, retrying and spooling never run it. A value that fails
    becomes ``"<unrepresentable T>"`` and costs nothing else: one poisoned record never
    costs its neighbours. Type tests use ``type()``, never ``isinstance`` (which asks the
    object's ``__class__``). Bytes stay bytes (immutable, no user code; a service such as
    OTLP ships them as such, JSON text shows them decoded).
    """
    if type(event) is dict:
        for key, value in event.items():
            if type(value) not in _NATIVE or type(key) is not str:
                if id(value) in _CONSTANTS and type(key) is str:
                    continue
                break
        else:
            return event, 0  # the common case: nothing to do
    bad = [0]
    frozen = _frozen(event, bad, 0, frozenset())
    if type(frozen) is not dict:  # submit() was given something else than a dict
        frozen = {"message": frozen if type(frozen) is str else dumps(frozen)}
    return frozen, bad[0]


def _frozen(value: Any, bad: list, depth: int, seen: frozenset) -> Any:
    kind = type(value)
    if kind in _NATIVE or id(value) in _CONSTANTS:
        return value
    try:
        if issubclass(kind, enum.Enum):
            return _frozen(value.value, bad, depth + 1, seen)
        if issubclass(kind, (str, int, float)):  # a subclass: the C encoder reads its value
            return value
        if issubclass(kind, (bytes, bytearray, memoryview)):  # a service may want bytes
            return bytes(value)
        if depth >= _MAX_DEPTH:
            return "<too deep>"
        if id(value) in seen:
            return "<cycle>"
        inner = seen | {id(value)}
        if issubclass(kind, dict):
            out = {}
            for key, item in list(value.items()):
                name = key if type(key) is str else _frozen_key(key, bad)
                out[name] = _frozen(item, bad, depth + 1, inner)
            return out
        if issubclass(kind, (list, tuple)):
            return [_frozen(item, bad, depth + 1, inner) for item in list(value)]
        replaced = json_default(value)
        if replaced is value:
            raise TypeError("no JSON form")
        return _frozen(replaced, bad, depth + 1, inner)
    except Exception:
        bad[0] += 1
        return _PLACEHOLDER.format(kind.__qualname__)


def _frozen_key(key: Any, bad: list) -> str:
    try:
        return _key(key)
    except Exception:
        bad[0] += 1
        return _PLACEHOLDER.format(type(key).__qualname__)


# --------------------------------------------------------------------------- JSON text


def json_default(value: Any) -> Any:
    """What ``json`` can't encode, as the nearest readable JSON value."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact; a float would round money
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            items.sort()
        except TypeError:
            pass
        return items
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, type):
        return value.__qualname__
    return safe_repr(value)


_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, default=json_default)
#: a \\uXXXX high surrogate not followed by a low one, or a low one not preceded by a high one
_LONE_SURROGATE = re.compile(
    r"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
)
_SURROGATE_CHARS = re.compile("[\ud800-\udfff]")


def dumps(value: Any) -> str:
    """Strict JSON text for any value: fast path through the C encoder, repair on failure."""
    try:
        text = _ENCODER.encode(value)
    except Exception:  # NaN, cycles, odd keys, a default that raised
        return _ENCODER.encode(sanitize(value))
    if "\\ud" in text and _LONE_SURROGATE.search(text):
        return _ENCODER.encode(sanitize(value))
    return text


def _mend_surrogates(text: str) -> str:
    """Surrogate pairs become the character they encode; lone surrogates U+FFFD."""
    if not _SURROGATE_CHARS.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def sanitize(value: Any, _depth: int = 0, _seen: frozenset = frozenset()) -> Any:
    """A copy of ``value`` made of strict-JSON types only (the slow path of :func:`dumps`);
    a part that raises becomes a placeholder, alone."""
    try:
        return _sanitize(value, _depth, _seen)
    except Exception:
        return _PLACEHOLDER.format(type(value).__qualname__)


def _sanitize(value: Any, _depth: int, _seen: frozenset) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value if not isinstance(value, enum.Enum) else sanitize(value.value, _depth + 1)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return _mend_surrogates(value)
    if _depth >= _MAX_DEPTH:
        return "<too deep>"
    if id(value) in _seen:
        return "<cycle>"
    seen = _seen | {id(value)}
    if isinstance(value, dict):
        out = {}
        for key, item in list(value.items()):
            out[_key(key)] = sanitize(item, _depth + 1, seen)
        return out
    if isinstance(value, (list, tuple)):
        return [sanitize(item, _depth + 1, seen) for item in list(value)]
    try:
        replaced = json_default(value)
    except Exception:
        return _PLACEHOLDER.format(type(value).__qualname__)
    if replaced is value:
        return _PLACEHOLDER.format(type(value).__qualname__)
    return sanitize(replaced, _depth + 1, seen)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _mend_surrogates(key)
    if isinstance(key, float) and not math.isfinite(key):
        return str(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return safe_repr(key)
