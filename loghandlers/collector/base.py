"""What every collector service shares: the request/reply values and body decoding.

Each service module (samsara.py, initialstate.py, panoply.py, kronos.py, json.py, otlp.py) holds one
class whose ``routes`` map an exact path to ``{method: method_name}``; each of those methods
takes a :class:`ServiceRequest` and returns a :class:`ServiceReply`. Services know nothing
about sockets, so server.py frames, size-checks and answers for all of them the same way;
services.py lists them. Nothing here holds state: any server thread may call anything.
"""

import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

__all__ = [
    "BodyTooLarge",
    "ServiceReply",
    "ServiceRequest",
    "error_reply",
    "gunzip",
    "is_int",
    "is_number",
    "json_reply",
    "loads",
    "short_repr",
    "source_id",
]


@dataclass
class ServiceRequest:
    """One complete, size-checked HTTP request, as a service sees it."""

    method: str
    path: str  # the path only, without query string
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    body: bytes
    max_decoded_bytes: int  # cap for decompressed bodies (gzip bombs)


@dataclass
class ServiceReply:
    """What a service answers; server.py frames and sends it."""

    status: int
    body: bytes = b""
    content_type: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)


class BodyTooLarge(Exception):
    """A decompressed body went over the cap; the server answers 413."""


def json_reply(status: int, obj: Any) -> ServiceReply:
    return ServiceReply(status, json.dumps(obj).encode("ascii"), "application/json")


def error_reply(status: int, message: str) -> ServiceReply:
    """The generic error shape, borrowed from Samsara's ingestion API."""
    return json_reply(status, {"status": "ERROR", "message": message})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: Any) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity (the real servers' parsers refuse them).

    Every failure is a ValueError so callers need one except clause; RecursionError from
    absurdly nested input is folded in because it is just another malformed body.
    """
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# A member is fed to zlib in slices that start small and double, so the bytes after a
# member's end (zlib's ``unused_data``, a copy) are never more than about the member itself.
_GZIP_FIRST_SLICE = 64
_GZIP_MAX_SLICE = 1 << 20


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member, refusing to produce more than ``limit`` bytes.

    Linear in the body's size however many members it holds: the body is read through a
    memoryview and each member is fed in growing slices, instead of handing zlib the whole
    rest of the body once per member (16 MB of empty members used to cost minutes).
    """
    view = memoryview(data)
    end = len(view)
    out: List[bytes] = []
    total = 0
    pos = 0
    while True:
        d = zlib.decompressobj(wbits=31)
        size = _GZIP_FIRST_SLICE
        while not d.eof:
            if pos >= end:
                raise ValueError("invalid gzip body: truncated")
            piece = view[pos : pos + size]
            pos += len(piece)
            size = min(size * 2, _GZIP_MAX_SLICE)
            try:
                # Input left unconsumed means the output hit the cap: that raises below.
                chunk = d.decompress(piece, limit - total + 1)
            except zlib.error as exc:
                raise ValueError(f"invalid gzip body: {exc}") from None
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge(f"decompressed body is over {limit} bytes")
            if chunk:
                out.append(chunk)
        pos -= len(d.unused_data)  # the start of the next member, if any
        # gzip tolerates zero padding after the last member; anything else is a member.
        if pos == end or (view[pos] == 0 and not view[pos:].tobytes().strip(b"\x00")):
            return b"".join(out)


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON true is not a number on any of the wires)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    if is_int(value):
        return True  # math.isfinite would overflow on a huge int
    return isinstance(value, float) and math.isfinite(value)


def source_id(value: Any) -> Optional[str]:
    """The ``source`` column for an event's ``sourceId``: strings and numbers, else None."""
    if isinstance(value, str):
        return value or None
    if is_int(value) or isinstance(value, float):
        return str(value)
    return None


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
