"""A fast loopback sink for the benchmarks: counts delivered records, stores nothing.

Run as its own process (``benchmarks/run.py`` starts and kills it)::

    python benchmarks/sink.py [--port 0] [--parent-pid PID] [--max-seconds 900]

It prints ``PORT <n>`` on its first line of output, then serves HTTP/1.1 (keep-alive,
Content-Length or chunked bodies, gzip request bodies) on 127.0.0.1 only, from one asyncio
loop, and answers every wire the handlers and the peers speak with the smallest reply
their clients accept. Each POST is counted under a *channel*:

=============  =========================================  ===================================
channel        request                                    what is counted
=============  =========================================  ===================================
samsara        ``POST /v1/events`` (JSON array)           array items
initialstate   ``POST …/api/events`` (JSON array/object)  key/value events (3 per bench record)
panoply        any form POST (SQS ``SendMessage``)        records in MessageBody (``\\n\\n``)
kronos         ``POST …/1.0/events/put``                  events over all streams
json           ``POST /json…`` (JSON array)               array items
logzio         ``POST /logzio…`` (JSON lines)             non-empty lines
logstash       ``POST /logstash…`` (JSON array)           array items
otlp           ``POST /v1/logs`` (OTLP protobuf)          LogRecord messages
=============  =========================================  ===================================

``GET /_counts`` answers ``{channel: {events, requests, bytes, wire_bytes, errors, first,
last, sink_s}}`` where ``first``/``last`` are ``time.time()`` when the first/last request
carrying events had fully arrived (before it was counted) and ``sink_s`` is the time the
sink spent decoding and counting (its own cost, inside every request's round trip). ``POST /_reset`` zeroes everything.
``/api/buckets`` (Initial State's setup call) is answered and counted as a request only.

Everything is bounded: the process exits when its parent goes away, on SIGTERM, or after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import zlib
from urllib.parse import unquote_to_bytes

MAX_BODY = 256 * 1024 * 1024
MAX_HEAD = 64 * 1024

_PANOPLY_XML = (
    b'<?xml version="1.0"?><SendMessageResponse><SendMessageResult><MessageId>0</MessageId>'
    b"</SendMessageResult></SendMessageResponse>"
)


class Counts:
    def __init__(self) -> None:
        self.channels: dict = {}

    def reset(self) -> None:
        self.channels = {}

    def slot(self, channel: str) -> dict:
        slot = self.channels.get(channel)
        if slot is None:
            slot = self.channels[channel] = {
                "events": 0,
                "requests": 0,
                "bytes": 0,
                "wire_bytes": 0,
                "errors": 0,
                "first": None,
                "last": None,
                "sink_s": 0.0,
            }
        return slot

    def add(
        self, channel: str, events: int, wire: int, raw: int, arrived: float, spent: float
    ) -> None:
        slot = self.slot(channel)
        slot["requests"] += 1
        slot["sink_s"] += spent
        slot["wire_bytes"] += wire
        slot["bytes"] += raw
        if events:
            slot["events"] += events
            if slot["first"] is None:
                slot["first"] = arrived
            slot["last"] = arrived

    def error(self, channel: str) -> None:
        self.slot(channel)["errors"] += 1


COUNTS = Counts()


# --------------------------------------------------------------------------- counting


def _json_items(body: bytes) -> int:
    value = json.loads(body)
    if isinstance(value, list):
        return len(value)
    return 1 if isinstance(value, dict) else 0


def _kronos_events(body: bytes) -> int:
    value = json.loads(body)
    streams = value.get("events") if isinstance(value, dict) else None
    if not isinstance(streams, dict):
        raise ValueError("no events object")
    return sum(len(events) for events in streams.values() if isinstance(events, list))


def _json_lines(body: bytes) -> int:
    return sum(1 for line in body.split(b"\n") if line.strip())


def _panoply_records(body: bytes) -> int:
    """Records in the SendMessage form's MessageBody: JSON texts separated by blank lines.

    A JSON text never holds a raw newline, so the encoded separator (``%0A%0A``, or a raw
    ``\\n\\n`` from a client that does not encode it) only ever separates records.
    """
    for field in body.split(b"&"):
        if field.startswith(b"MessageBody="):
            encoded = field[12:]
            if b"\n" not in encoded and b"%0a" not in encoded:
                # the usual case, counted without unquoting (a Python step per escape,
                # ~25 ms for a 256 KiB body: time the client would wait for the sink)
                return sum(1 for chunk in encoded.split(b"%0A%0A") if chunk.strip(b"+"))
            message = unquote_to_bytes(encoded.replace(b"+", b" "))
            return sum(1 for chunk in message.split(b"\n\n") if chunk.strip())
    raise ValueError("no MessageBody")


def _varint(buf: memoryview, pos: int) -> tuple:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _pb_fields(buf: memoryview):
    """(field number, wire type, start, end) of each field of one protobuf message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            yield number, wire, pos, pos
        elif wire == 1:
            pos += 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            yield number, wire, pos, pos + size
            pos += size
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if pos != end:
        raise ValueError("truncated protobuf")


def _otlp_records(body: bytes) -> int:
    """ExportLogsServiceRequest: resource_logs(1) > scope_logs(2) > log_records(2)."""
    buf = memoryview(body)
    count = 0
    for number, wire, start, end in _pb_fields(buf):
        if number != 1 or wire != 2:
            continue
        resource_logs = buf[start:end]
        for n2, w2, s2, e2 in _pb_fields(resource_logs):
            if n2 != 2 or w2 != 2:
                continue
            for n3, w3, _s3, _e3 in _pb_fields(resource_logs[s2:e2]):
                if n3 == 2 and w3 == 2:
                    count += 1
    return count


def route(method: str, path: str, headers: dict):
    """(channel, counter, reply status, reply content type, reply body)."""
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if path.startswith("/v1/logs"):
        return "otlp", _otlp_records, 200, "application/x-protobuf", b""
    if ctype == "application/x-www-form-urlencoded":
        return "panoply", _panoply_records, 200, "text/xml", _PANOPLY_XML
    if path.endswith("/1.0/events/put"):
        return "kronos", _kronos_events, 200, "application/json", b'{"@success": true}'
    if path.endswith("/api/buckets"):
        return "initialstate_buckets", None, 200, "application/json", b"{}"
    if path.endswith("/api/events"):
        return "initialstate", _json_items, 200, "application/json", b"{}"
    if path == "/v1/events":
        return "samsara", _json_items, 202, "application/json", b"{}"
    if path.startswith("/logzio"):
        return "logzio", _json_lines, 200, "text/plain", b""
    if path.startswith("/logstash"):
        return "logstash", _json_items, 200, "text/plain", b"ok"
    if path.startswith("/json"):
        return "json", _json_items, 200, "application/json", b"{}"
    return "other", _json_items, 200, "application/json", b"{}"


def handle(method: str, target: str, headers: dict, body: bytes, arrived: float):
    """(status, content type, body) for one request; counts it."""
    path = target.split("?", 1)[0]
    if path == "/_counts":
        return 200, "application/json", json.dumps(COUNTS.channels).encode()
    if path == "/_reset":
        COUNTS.reset()
        return 200, "application/json", b"{}"
    if path == "/_health":
        return 200, "text/plain", b"ok"
    if method != "POST":
        return 405, "text/plain", b"POST only"
    channel, counter, status, ctype, reply = route(method, path, headers)
    wire = len(body)
    started = time.perf_counter()
    try:
        if headers.get("content-encoding", "").strip().lower() == "gzip":
            body = zlib.decompress(body, 31)
        events = counter(body) if counter is not None else 0
    except Exception:
        COUNTS.error(channel)
        return 400, "text/plain", b"cannot count this body"
    COUNTS.add(channel, events, wire, len(body), arrived, time.perf_counter() - started)
    return status, ctype, reply


# --------------------------------------------------------------------------- HTTP


_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 405: "Method Not Allowed"}


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts, total = [], 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise ValueError("body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_chunked(reader)
            else:
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY:
                    return
                body = await reader.readexactly(length) if length else b""
            arrived = time.time()
            status, ctype, reply = handle(method, target, headers, body, arrived)
            connection = headers.get("connection", "").lower()
            keep = (version == "HTTP/1.1" and connection != "close") or connection == "keep-alive"
            out = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(reply)}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
            ).encode("latin-1")
            writer.write(out + reply)
            await writer.drain()
            if not keep:
                return
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return
    except asyncio.CancelledError:  # the sink is shutting down with this connection open
        return
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main_async(port: int, parent_pid: int | None, max_seconds: float) -> None:
    server = await asyncio.start_server(
        serve_connection, "127.0.0.1", port, limit=MAX_HEAD, backlog=1024
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    ends = time.monotonic() + max_seconds
    async with server:
        while not stop.is_set() and time.monotonic() < ends:
            if parent_pid is not None and os.getppid() != parent_pid:
                break  # the harness is gone: never outlive it
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.port, args.parent_pid, args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
