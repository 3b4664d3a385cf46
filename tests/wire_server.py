"""A loopback HTTP/1.1 server for wire tests: records every request, answers from a script.

It validates nothing: tests read :attr:`WireServer.requests` and assert. Each request is
answered with the next scripted ``(status, headers, body)``, or with the default once the
script runs out. A body may be bytes, str, or anything JSON (sent as application/json).
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Captured:
    method: str
    path: str  # the request target as sent (path and any query)
    headers: list  # (name, value) in wire order
    body: bytes  # raw, as received
    arrived: float = field(default_factory=time.monotonic)

    def header(self, name: str):
        """The value of header ``name`` (any case), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_names(self) -> list:
        return [key.lower() for key, _ in self.headers]

    def decoded(self) -> bytes:
        """The body after any gzip Content-Encoding."""
        if (self.header("Content-Encoding") or "").lower() == "gzip":
            return gzip.decompress(self.body)
        return self.body

    def json(self):
        return json.loads(self.decoded())


def _as_bytes(body) -> tuple[bytes, str | None]:
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("ascii"), "application/json"


class WireServer:
    """``with WireServer() as server:`` ... ``server.url``, ``server.requests``."""

    def __init__(self, default=(200, {}, b"")):
        self.default = default
        self.script: deque = deque()
        self.requests: list = []
        self._changed = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, *replies) -> None:
        """Queue replies for the next requests, in order: ``(status, headers, body)``."""
        with self._changed:
            self.script.extend(replies)

    def wait_for(self, count: int, timeout: float = 5.0) -> list:
        """Block until ``count`` requests arrived (or ``timeout``); returns a copy of all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return list(self.requests)

    def _record(self, captured: Captured):
        with self._changed:
            self.requests.append(captured)
            reply = self.script.popleft() if self.script else self.default
            self._changed.notify_all()
        return reply

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                captured = Captured(self.command, self.path, list(self.headers.items()), body)
                status, headers, reply_body = server._record(captured)
                data, content_type = _as_bytes(reply_body)
                self.send_response(status)
                names = {name.lower() for name in headers}
                if content_type and "content-type" not in names:
                    self.send_header("Content-Type", content_type)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format, *args):  # keep test output clean
                pass

        return Handler

    def start(self) -> WireServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> WireServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- test helpers

#: options that keep tests fast: nothing is shipped until flush(), retries are quick
FAST = {
    "flush_interval": 60.0,
    "retries": 1,
    "backoff": 0.01,
    "max_backoff": 2.0,
    "close_timeout": 3.0,
    "timeout": 5.0,
}


class Catcher(logging.Handler):
    """Keeps the LogRecords a logger saw, so tests know each record's ``created``."""

    def __init__(self):
        super().__init__()
        self.records: list = []

    def emit(self, record):
        self.records.append(record)


_counter = iter(range(1_000_000))


def attach(handler, name: str | None = None):
    """A fresh logger sending to ``handler``; returns (logger, catcher)."""
    logger = logging.getLogger(name or f"wiretest.{next(_counter)}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    catcher = Catcher()
    logger.addHandler(catcher)
    logger.addHandler(handler)
    return logger, catcher


def spool_text(directory) -> str:
    """Everything under the spool directory, as one text (to search for leaks)."""
    import pathlib

    parts = []
    for path in sorted(pathlib.Path(directory).rglob("*")):
        if path.is_file():
            parts.append(path.read_text("utf-8", "replace"))
    return "\n".join(parts)


def spooled_events(directory) -> list:
    """Every event in the spool's batch files, oldest first."""
    import pathlib

    events = []
    for path in sorted(pathlib.Path(directory).rglob("[0-9]*.json")):  # batches, oldest first
        header, _, rest = path.read_text("utf-8").partition("\n")
        events.extend(json.loads(rest))
    return events


class Factory:
    """Builds handlers with :data:`FAST` options and a spool under ``directory``; closes
    them all at :meth:`close_all` (the tests' fixtures call it on teardown)."""

    def __init__(self, handler_class, directory):
        self.handler_class = handler_class
        self.spool_dir = str(directory)
        self.made: list = []

    def __call__(self, **options):
        handler = self.handler_class(**{**FAST, "spool_dir": self.spool_dir, **options})
        self.made.append(handler)
        return handler

    def close_all(self) -> None:
        for handler in self.made:
            handler.close()
