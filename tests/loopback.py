"""The one loopback HTTP server of the test suite: records every request, misbehaves on cue.

Each request takes the next behaviour from a script (:meth:`LoopbackServer.push`), or the
default once the script is empty: answer with a status (and headers and body), reset the
connection mid-body, hang without answering, dribble the answer slowly, or send a huge or
garbage reply. It validates nothing: wire tests read :attr:`LoopbackServer.requests`
(each a :class:`Captured`) and assert; what a real service would accept is checked against
the development collector (``loghandlers.collector``), not restated here.

Threads: the server's threads append to ``requests``/``events`` and pop the script under
``_changed`` (a Condition); tests read those lists after a ``wait_for_*`` call.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request; build one with the functions below."""

    kind: str
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: Any = b""  # bytes as is; str as text/plain; anything else as JSON
    seconds: float = 0.0
    size: int = 0


def status(code: int = 200, headers: dict | None = None, body: Any = b"") -> Behaviour:
    """Answer ``code`` with ``headers`` and ``body`` (bytes, str, or anything JSON)."""
    return Behaviour("answer", code, dict(headers or {}), body)


def ok(code: int = 200, body: Any = b"") -> Behaviour:
    return status(code, body=body)


def reset() -> Behaviour:
    """Read a little of the request, then close with RST (a crashed peer, a middlebox)."""
    return Behaviour("reset")


def hang(seconds: float = 30.0) -> Behaviour:
    """Read the request, answer nothing for ``seconds`` (or until the server stops), reset."""
    return Behaviour("hang", seconds=seconds)


def delayed(seconds: float = 1.0, code: int = 200, body: Any = b"") -> Behaviour:
    """Take (and record) the request at once, but answer ``code`` only after ``seconds``:
    a batch the server has while the client still waits."""
    return Behaviour("delayed", code, body=body, seconds=seconds)


def slow(seconds_per_byte: float = 0.5, body: bytes = b"ok") -> Behaviour:
    """Answer 200, sending the body one byte every ``seconds_per_byte``."""
    return Behaviour("slow", 200, body=body, seconds=seconds_per_byte)


def drip_head(seconds_per_byte: float = 0.3, code: int = 200, body: bytes = b"ok") -> Behaviour:
    """Dribble the status line and headers one byte at a time: each byte comes well within
    any socket timeout, the whole head never does. Not counted as accepted (the client
    never learns the status)."""
    return Behaviour("drip_head", code, body=body, seconds=seconds_per_byte)


def slow_reader(seconds_per_chunk: float = 0.25, chunk: int = 16 * 1024) -> Behaviour:
    """Read the request body ``chunk`` bytes at a time (a stalled upload that never quite
    stops), then answer 200."""
    return Behaviour("slow_reader", 200, seconds=seconds_per_chunk, size=chunk)


def huge(size: int = 50 * 1024 * 1024, code: int = 500) -> Behaviour:
    """Answer ``code`` with a ``size``-byte body (a runaway error page)."""
    return Behaviour("huge", code, size=size)


def garbage(data: bytes = b"\x00\xffnot http at all\r\n\r\n") -> Behaviour:
    """Read the whole request, answer with bytes that are not HTTP, then close."""
    return Behaviour("garbage", body=data)


def reset_reply(code: int = 503, sent: int = 10) -> Behaviour:
    """Start a ``code`` answer whose body is cut by a reset after ``sent`` of its bytes."""
    return Behaviour("reset_reply", code, body=b"x" * sent)


@dataclass
class Answer:
    """What a ``respond`` function (see :class:`LoopbackServer`) answers, and which records
    the request delivered, as the product it plays would count them."""

    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    records: list = field(default_factory=list)


def refuse(code: int, why: str) -> Answer:
    """A non-2xx answer with a JSON ``{"error": why}`` body."""
    return Answer(code, json.dumps({"error": why}).encode())


@dataclass
class Captured:
    """One request as it arrived; ``outcome`` is "accepted" or the behaviour's kind."""

    method: str
    target: str  # the request target as sent (path and any query)
    headers: list  # (name, value) in wire order
    body: bytes  # raw, as received (b"" when not kept)
    outcome: str  # "accepted" (2xx), "refused" (a respond() non-2xx) or the behaviour's kind
    status: int | None = None  # the status answered, if one was
    arrived: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict:
        """The target's query, as ``{name: [values]}``."""
        return parse_qs(urlsplit(self.target).query)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_names(self) -> list:
        return [key.lower() for key, _ in self.headers]

    def decoded(self) -> bytes:
        """The body after any gzip Content-Encoding."""
        return _decoded(self.headers, self.body)

    def json(self) -> Any:
        """The decoded body as JSON, or None when it is not JSON."""
        return _json_or_none(self.headers, self.body)

    def ndjson(self) -> list:
        """One JSON object per line; every line (the last one too) ends in a newline."""
        text = self.decoded().decode("utf-8")
        assert text.endswith("\n"), "an NDJSON body ends with a newline"
        records = [json.loads(line) for line in text[:-1].split("\n")]
        assert all(isinstance(r, dict) for r in records)
        return records


def _decoded(headers: list, raw: bytes) -> bytes:
    encoding = next((v for k, v in headers if k.lower() == "content-encoding"), "")
    return gzip.decompress(raw) if encoding.strip().lower() == "gzip" else raw


def _json_or_none(headers: list, raw: bytes) -> Any:
    try:
        return json.loads(_decoded(headers, raw))
    except (ValueError, OSError, EOFError):
        return None


def _as_bytes(body: Any) -> tuple[bytes, str | None]:
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("ascii"), "application/json"


class LoopbackServer:
    """``with LoopbackServer() as server:`` ... ``server.url``, ``server.requests``.

    ``default`` answers once the script is empty (200, empty body, unless given).
    ``respond(captured) -> Answer`` instead checks each request the way a real product
    would (path, credentials, body shape) and says which records it accepted: they are
    kept in ``records`` (an exception in it is a 400, as the product would refuse).
    ``keep=False`` stores no bodies and no events (only ``event_count`` and outcomes), for
    load tests; ``on_events(events)`` sees every accepted JSON array, on the server's
    thread; ``ssl_context`` serves HTTPS; ``port`` binds a given port (e.g. one a test
    first used as "endpoint down").
    """

    def __init__(
        self,
        default: Behaviour | None = None,
        port: int = 0,
        keep: bool = True,
        on_events: Callable[[list], None] | None = None,
        ssl_context: Any = None,
        respond: Callable[[Captured], Answer] | None = None,
    ) -> None:
        self.default = default or ok()
        self.respond = respond
        self.records: list = []
        self.script: deque = deque()
        self.requests: list[Captured] = []
        self.events: list = []
        self.event_count = 0
        self.keep = keep
        self.on_events = on_events
        self._changed = threading.Condition()
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass  # keep test output clean

            def do_POST(self) -> None:
                owner._serve(self)

            do_GET = do_PUT = do_DELETE = do_POST

        self.httpd = _QuietServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        scheme = "http"
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        # A short poll keeps stop() quick: shutdown() waits for the loop to notice.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # ends hangs and dribbles at once
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._changed:
            self.script.extend(behaviours)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests arrived; False if ``timeout`` passed first."""
        return self._wait(lambda: len(self.requests) >= count, timeout)

    def wait_for_records(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``respond`` accepted ``count`` records; False if ``timeout`` passed."""
        return self._wait(lambda: len(self.records) >= count, timeout)

    def wait_for_events(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` events were accepted; False if ``timeout`` passed first."""
        return self._wait(lambda: self.event_count >= count, timeout)

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # ------------------------------------------------------------------ serving

    def _next(self) -> Behaviour:
        with self._changed:
            return self.script.popleft() if self.script else self.default

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if self.respond is not None:
            self._serve_respond(handler, handler.rfile.read(length) if length else b"")
            return
        behaviour = self._next()
        if behaviour.kind == "reset":
            handler.rfile.read(min(length, 10))
            _reset(handler)
            self._record(handler, b"", "reset")
            return
        if behaviour.kind == "slow_reader":
            raw = _read_slowly(handler, length, behaviour.seconds, behaviour.size, self._stop)
            if raw is None:
                self._record(handler, b"", "slow_reader")
                return
            behaviour = ok()
        else:
            raw = handler.rfile.read(length) if length else b""
        accepted = (
            behaviour.kind in ("answer", "slow", "reset_reply", "delayed")
            and 200 <= behaviour.status < 300
        )
        answered = behaviour.kind in ("answer", "slow", "reset_reply", "huge")
        self._record(
            handler,
            raw,
            "accepted" if accepted else behaviour.kind,
            behaviour.status if answered else None,
        )
        getattr(self, f"_send_{behaviour.kind}")(handler, behaviour)

    def _serve_respond(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        assert self.respond is not None
        captured = self._captured(handler, raw, "accepted")
        try:
            answer = self.respond(captured)
        except Exception as exc:  # a shape the product would refuse
            answer = refuse(400, f"{type(exc).__name__}: {exc}")
        captured.status = answer.status
        if not 200 <= answer.status < 300:
            captured.outcome = "refused"
        with self._changed:
            self.records.extend(answer.records)
        self._keep(captured, raw)
        self._send_answer(handler, Behaviour("answer", answer.status, answer.headers, answer.body))

    def _send_answer(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        data, content_type = _as_bytes(behaviour.body)
        handler.send_response(behaviour.status)
        if content_type and "content-type" not in {k.lower() for k in behaviour.headers}:
            handler.send_header("Content-Type", content_type)
        for key, value in behaviour.headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _send_delayed(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        if not self._stop.wait(behaviour.seconds):
            self._send_answer(handler, behaviour)

    def _send_garbage(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        handler.wfile.write(behaviour.body)
        handler.wfile.flush()
        handler.close_connection = True

    def _send_reset_reply(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        handler.send_response(behaviour.status)
        handler.send_header("Content-Length", str(len(behaviour.body) * 100 + 1))
        handler.end_headers()
        handler.wfile.write(behaviour.body)
        handler.wfile.flush()
        _reset(handler)

    def _send_hang(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        self._stop.wait(behaviour.seconds)
        _reset(handler)

    def _send_drip_head(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        head = (
            f"HTTP/1.1 {behaviour.status} Slow\r\nContent-Length: {len(behaviour.body)}\r\n"
            f"X-Padding: {'p' * 64}\r\n\r\n"
        ).encode("ascii")
        try:
            for byte in head:
                if self._stop.wait(behaviour.seconds):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            handler.wfile.write(behaviour.body)
        except OSError:
            handler.close_connection = True

    def _send_huge(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        handler.send_response(behaviour.status)
        handler.send_header("Content-Length", str(behaviour.size))
        handler.end_headers()
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < behaviour.size and not self._stop.is_set():
                handler.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass

    def _send_slow(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        handler.send_response(behaviour.status)
        handler.send_header("Content-Length", str(len(behaviour.body)))
        handler.end_headers()
        try:
            for byte in behaviour.body:
                if self._stop.wait(behaviour.seconds):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _captured(self, handler: BaseHTTPRequestHandler, raw: bytes, outcome: str) -> Captured:
        return Captured(
            handler.command,
            handler.path,
            list(handler.headers.items()),
            raw if self.keep else b"",
            outcome,
        )

    def _record(
        self, handler: BaseHTTPRequestHandler, raw: bytes, outcome: str, code: int | None = None
    ) -> None:
        captured = self._captured(handler, raw, outcome)
        captured.status = code
        self._keep(captured, raw)

    def _keep(self, captured: Captured, raw: bytes) -> None:
        """Record the request; an accepted JSON array's items count as events."""
        accepted = captured.outcome == "accepted"
        parsed = _json_or_none(captured.headers, raw) if accepted else None
        with self._changed:
            self.requests.append(captured)
            if isinstance(parsed, list):
                self.event_count += len(parsed)
                if self.keep:
                    self.events.extend(parsed)
                if self.on_events is not None:
                    self.on_events(parsed)
            self._changed.notify_all()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and hangs are on purpose: no tracebacks


def _read_slowly(
    handler: BaseHTTPRequestHandler, length: int, pause: float, chunk: int, stop: threading.Event
) -> bytes | None:
    """The request body, ``chunk`` bytes per ``pause``; None if the client gave up."""
    parts, left = [], length
    try:
        while left > 0:
            if stop.wait(pause):
                return None
            data = handler.rfile.read1(min(chunk, left))  # type: ignore[attr-defined]
            if not data:
                return None
            parts.append(data)
            left -= len(data)
    except OSError:
        return None
    return b"".join(parts)


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close with RST, the way a crashed peer or a middlebox does."""
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass
    handler.close_connection = True


def free_port() -> int:
    """A port nothing listens on (for 'endpoint down' tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
