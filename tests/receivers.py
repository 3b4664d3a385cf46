"""Loopback receivers that check each request the way a real product would.

A :class:`Receiver` hands every request to an ``answer(request) -> Answer`` function: the
function checks the path, the headers (a missing or wrong credential is a 401, as the
product would say) and the body's shape, and says which records it accepted. Everything
is kept for the test to look at: ``requests`` (all of them) and ``records`` (accepted).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str
    query: dict
    headers: dict  # lower-cased names
    body: bytes  # gunzipped if it came gzipped

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body)

    def ndjson(self) -> list:
        """One JSON object per line; every line (the last one too) ends in a newline."""
        text = self.body.decode("utf-8")
        assert text.endswith("\n"), "an NDJSON body ends with a newline"
        lines = text[:-1].split("\n")
        records = [json.loads(line) for line in lines]
        assert all(isinstance(r, dict) for r in records)
        return records


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    records: list = field(default_factory=list)  # what this request delivered


def refuse(status: int, why: str) -> Answer:
    return Answer(status, json.dumps({"error": why}).encode())


class Receiver:
    def __init__(self, answer: Callable[[Received], Answer]):
        self.answer = answer
        self.requests: list[Received] = []
        self.answers: list[Answer] = []
        self.records: list = []
        self._lock = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                owner._serve(self)

            do_PUT = do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if handler.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        parts = urlsplit(handler.path)
        request = Received(
            handler.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in handler.headers.items()},
            raw,
        )
        try:
            answer = self.answer(request)
        except Exception as exc:  # a shape the product would refuse
            answer = refuse(400, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.requests.append(request)
            self.answers.append(answer)
            self.records.extend(answer.records)
            self._lock.notify_all()
        handler.send_response(answer.status)
        for key, value in answer.headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(answer.body)))
        handler.end_headers()
        handler.wfile.write(answer.body)

    def wait_for_records(self, count: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.records) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True
