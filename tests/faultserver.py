"""A loopback HTTP server that misbehaves on cue, for the handler's fault tests.

Each request takes the next behaviour from a script (``push``), or the default once the
script is empty: answer with a status, reset the connection mid-body, hang without
answering, dribble the answer slowly, or return a huge or garbage body. Every request is
recorded (headers and decoded JSON body) so tests can assert what arrived.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Behaviour:
    def __init__(self, kind: str, status: int = 200, headers=None, body: bytes = b"", seconds=0.0):
        self.kind = kind
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.seconds = seconds


def ok(status=200, body=b""):
    return Behaviour("answer", status, body=body)


def status(code, headers=None, body=b""):
    return Behaviour("answer", code, headers, body)


def reset():
    return Behaviour("reset")


def hang(seconds=30.0):
    return Behaviour("hang", seconds=seconds)


def slow(seconds_per_byte=0.5, body=b"ok"):
    return Behaviour("slow", 200, body=body, seconds=seconds_per_byte)


def drip_head(seconds_per_byte=0.3, code=200, body=b"ok"):
    """Dribble the status line and headers one byte at a time: each byte comes well within
    any socket timeout, the whole head never does. Not counted as accepted (the client
    never learns the status)."""
    return Behaviour("drip_head", code, body=body, seconds=seconds_per_byte)


def slow_reader(seconds_per_chunk=0.25, chunk=16 * 1024):
    """Read the request body ``chunk`` bytes at a time (a stalled upload that never quite
    stops), then answer 200."""
    return Behaviour("slow_reader", 200, body=b"", seconds=(seconds_per_chunk, chunk))


def huge(size=50 * 1024 * 1024, code=500):
    return Behaviour("huge", code, seconds=size)


def garbage(data: bytes = b"\x00\xffnot http at all\r\n\r\n"):
    """Read the whole request, answer with bytes that are not HTTP, then close."""
    return Behaviour("garbage", body=data)


def reset_reply(code=503, sent: int = 10):
    """Start a ``code`` answer whose body is cut by a reset after ``sent`` of its bytes."""
    return Behaviour("reset_reply", code, body=b"x" * sent)


class FaultServer:
    """``keep=False`` stores no bodies and no events (only ``event_count`` and the request
    outcomes), for load tests; ``on_events(events)`` sees every accepted batch, on the
    server's thread; ``ssl_context`` serves HTTPS (the url then starts with https)."""

    def __init__(
        self,
        default: Behaviour | None = None,
        port: int = 0,
        keep: bool = True,
        on_events=None,
        ssl_context=None,
    ):
        self.default = default or ok()
        self.script: deque = deque()
        self.requests: list = []
        self.events: list = []
        self.event_count = 0
        self.keep = keep
        self.on_events = on_events
        self._lock = threading.Condition()
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                owner._serve(self)

            do_PUT = do_POST

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
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def push(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self.script.extend(behaviours)

    def _next(self) -> Behaviour:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    def wait_for_events(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.event_count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    # ------------------------------------------------------------------ serving
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        behaviour = self._next()
        length = int(handler.headers.get("Content-Length", 0))
        if behaviour.kind == "reset":
            handler.rfile.read(min(length, 10))
            _reset(handler)
            self._record(handler, None, "reset")
            return
        if behaviour.kind == "slow_reader":
            raw = _read_slowly(handler, length, *behaviour.seconds, self._stop)
            if raw is None:
                self._record(handler, None, "slow_reader")
                return
            behaviour = ok()
        else:
            raw = handler.rfile.read(length)
        body = gzip.decompress(raw) if handler.headers.get("Content-Encoding") == "gzip" else raw
        accepted = (
            behaviour.kind in ("answer", "slow", "reset_reply") and 200 <= behaviour.status < 300
        )
        self._record(handler, body, behaviour.kind if not accepted else "accepted", accepted)
        if behaviour.kind == "garbage":
            handler.wfile.write(behaviour.body)
            handler.wfile.flush()
            handler.close_connection = True
            return
        if behaviour.kind == "reset_reply":
            handler.send_response(behaviour.status)
            handler.send_header("Content-Length", str(len(behaviour.body) * 100 + 1))
            handler.end_headers()
            handler.wfile.write(behaviour.body)
            handler.wfile.flush()
            _reset(handler)
            return
        if behaviour.kind == "hang":
            self._stop.wait(behaviour.seconds)
            _reset(handler)
            return
        if behaviour.kind == "drip_head":
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
            return
        if behaviour.kind == "huge":
            handler.send_response(behaviour.status)
            handler.send_header("Content-Length", str(int(behaviour.seconds)))
            handler.end_headers()
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < behaviour.seconds and not self._stop.is_set():
                    handler.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            return
        if behaviour.kind == "slow":
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
            return
        handler.send_response(behaviour.status)
        for key, value in behaviour.headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(behaviour.body)))
        handler.end_headers()
        handler.wfile.write(behaviour.body)

    def _record(self, handler, body, outcome, accepted=False) -> None:
        parsed = None
        if body is not None:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        entry = {"outcome": outcome, "time": time.monotonic(), "wall": time.time()}
        if self.keep:
            entry.update(path=handler.path, headers=dict(handler.headers), body=body, json=parsed)
        with self._lock:
            self.requests.append(entry)
            if accepted and isinstance(parsed, list):
                self.event_count += len(parsed)
                if self.keep:
                    self.events.extend(parsed)
                if self.on_events is not None:
                    self.on_events(parsed)
            self._lock.notify_all()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # resets and hangs are on purpose: no tracebacks


def _read_slowly(handler, length: int, pause: float, chunk: int, stop) -> bytes | None:
    """The request body, ``chunk`` bytes per ``pause``; None if the client gave up."""
    parts, left = [], length
    try:
        while left > 0:
            if stop.wait(pause):
                return None
            data = handler.rfile.read1(min(chunk, left))
            if not data:
                return None
            parts.append(data)
            left -= len(data)
    except OSError:
        return None
    return b"".join(parts)


def _reset(handler) -> None:
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
