"""The collector's HTTP server: framing, routing and the :class:`Collector` API.

Framing (Content-Length, chunked bodies, size caps, keep-alive) is handled here once so
the per-service modules (listed in services.py) only ever see a complete, size-checked body.
"""

import logging
import re
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from .base import BodyTooLarge, ServiceReply, ServiceRequest, error_reply
from .panoply import Panoply
from .requestlog import REQUEST_LOG_BYTES, REQUEST_LOG_SIZE, HeaderDict, RequestLog
from .services import SERVICES
from .store import Store

logger = logging.getLogger("loghandlers.collector")

# Decompressed bodies may be this many times max_body_bytes: logs compress well, bombs more.
DECODED_BODY_FACTOR = 16
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

Route = Tuple[str, Dict[str, Callable[[ServiceRequest], ServiceReply]]]


class _Abort(Exception):
    """Stop handling a request and send this reply (framing errors)."""

    def __init__(self, reply: ServiceReply, close: bool = False, linger: bool = False) -> None:
        super().__init__(reply.status)
        self.reply = reply
        self.close = close
        self.linger = linger


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled clients reuse connections
    server_version = "loghandlers-collector"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 120  # idle keep-alive connections eventually free their thread
    server: "_Server"

    # Every method goes through one dispatcher so unknown methods on known paths get a
    # JSON 405 instead of http.server's HTML 501.
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def handle_expect_100(self) -> bool:
        # Answer an oversized upload with 413 instead of inviting the client to send it.
        length = (self.headers.get("Content-Length") or "").strip()
        if _DIGITS.fullmatch(length) and (
            len(length) > 18 or int(length) > self.server.collector.max_body_bytes
        ):
            return True
        return super().handle_expect_100()

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        self._service: Optional[str] = None
        self._raw = b""
        linger = False
        try:
            reply = self._route()
        except _Abort as abort:
            reply = abort.reply
            if abort.close:
                self.close_connection = True
            linger = abort.linger
        except BodyTooLarge as exc:
            reply = error_reply(413, str(exc))
        except Exception as exc:
            logger.exception("collector: unexpected error on %s %s", self.command, self.path)
            reply = error_reply(500, f"internal error: {type(exc).__name__}")
        # Record before replying: a client that reads the reply may inspect requests() at once.
        self.server.collector.request_log.add(
            {
                "service": self._service,
                "method": self.command,
                "path": self.path,
                "status": reply.status,
                "headers": HeaderDict(self.headers.items()),
                "body": self._raw,
            }
        )
        try:
            self._send(reply)
            if linger:
                self._linger()
        except OSError:
            self.close_connection = True

    def _route(self) -> ServiceReply:
        path = self._path()
        method = self.command
        route = self.server.find_route(path)
        if route is None:
            panoply = self.server.panoply
            if method == "POST" and panoply.wants(self.headers.get("Content-Type")):
                route = (panoply.name, {"POST": panoply.post})
            else:
                self._drain()
                return error_reply(404, "Not found")
        self._service, methods = route
        handler = methods.get(method)
        if handler is None:
            self._drain()
            reply = error_reply(405, f"Method {method} not allowed on {path}")
            reply.headers["Allow"] = ", ".join(sorted(methods))
            return reply
        self._raw = self._read_body(required=method == "POST")
        collector = self.server.collector
        req = ServiceRequest(
            method, path, self.headers, self._raw, collector.max_body_bytes * DECODED_BODY_FACTOR
        )
        return handler(req)

    def _path(self) -> str:
        target = self.path
        if not target.startswith("/"):  # absolute-form, as sent to proxies
            target = urlsplit(target).path or "/"
        return target.split("?", 1)[0].split("#", 1)[0]

    # ------------------------------------------------------------------ bodies

    def _read_body(self, required: bool) -> bytes:
        try:
            return self._read_framed_body(required)
        except OSError:  # timed out or reset mid-body: this connection is done
            raise _Abort(error_reply(400, "request body not received"), close=True) from None

    def _read_framed_body(self, required: bool) -> bytes:
        limit = self.server.collector.max_body_bytes
        encoding = self.headers.get("Transfer-Encoding")
        lengths = self.headers.get_all("Content-Length") or []
        if encoding is not None:
            if lengths:  # both framings at once is how requests get smuggled
                raise _Abort(error_reply(400, "Content-Length with Transfer-Encoding"), close=True)
            if encoding.split(",")[-1].strip().lower() != "chunked":
                raise _Abort(error_reply(400, "unsupported Transfer-Encoding"), close=True)
            return self._read_chunked(limit)
        if not lengths:
            if required:
                raise _Abort(error_reply(411, "Content-Length required"), close=True)
            return b""
        values = {v.strip() for v in lengths}
        value = values.pop()
        if values or not _DIGITS.fullmatch(value):
            raise _Abort(error_reply(400, "invalid Content-Length"), close=True)
        if len(value) > 18 or int(value) > limit:
            raise _Abort(
                error_reply(413, f"body is over the {limit}-byte limit"), close=True, linger=True
            )
        size = int(value)
        data = self.rfile.read(size) if size else b""
        if len(data) != size:
            raise _Abort(error_reply(400, "body shorter than Content-Length"), close=True)
        return data

    def _read_chunked(self, limit: int) -> bytes:
        parts: List[bytes] = []
        total = 0
        bad = _Abort(error_reply(400, "malformed chunked body"), close=True)
        while True:
            line = self.rfile.readline(1026)
            size_field = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not _HEX.fullmatch(size_field):
                raise bad
            size = int(size_field, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise _Abort(
                    error_reply(413, f"body is over the {limit}-byte limit"),
                    close=True,
                    linger=True,
                )
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3).strip():
                raise bad
            parts.append(chunk)
        for _ in range(64):  # trailer fields, ignored
            line = self.rfile.readline(8194)
            if not line:
                raise bad
            if not line.strip():
                return b"".join(parts)
        raise bad

    def _drain(self) -> None:
        """Consume a body we will not use, or give up on the connection if that is unsafe."""
        try:
            self._raw = self._read_body(required=False)
        except _Abort:
            self.close_connection = True

    def _linger(self) -> None:
        """Close after a 413 without making the client miss it.

        Closing a socket with unread input sends a reset, which can destroy our reply
        before the client reads it; so stop writing, then discard a bounded amount of
        whatever is still arriving.
        """
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            budget = 1 << 20
            deadline = time.monotonic() + 2.0
            while budget > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass

    # ------------------------------------------------------------------ replies

    def _send(self, reply: ServiceReply) -> None:
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: Tuple[str, int], collector: "Collector") -> None:
        self.collector = collector
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        store = collector._store
        services = [cls(store) for cls in SERVICES]
        self.routes: Dict[str, Route] = {}
        self.prefixes: List[Tuple[str, Route]] = []
        for service in services:
            for path, methods in service.routes.items():
                route = (service.name, {m: getattr(service, n) for m, n in methods.items()})
                self.routes[path] = route
                prefix = getattr(service, "prefix", None)
                if prefix:
                    self.prefixes.append((prefix, route))
            if isinstance(service, Panoply):
                self.panoply = service
        self._connections: set = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) we do not need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def find_route(self, path: str) -> Optional[Route]:
        route = self.routes.get(path)
        if route is None:
            for prefix, candidate in self.prefixes:
                if path.startswith(prefix):
                    return candidate
        return route

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut idle keep-alive connections, so a stopped collector really stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request are routine; don't print tracebacks to stderr.
        logger.debug("collector: connection error from %s", client_address, exc_info=True)


class Collector:
    """A local stand-in for all four ingestion services plus a generic JSON endpoint.

    The socket is bound in the constructor so ``url`` is known (even with ``port=0``)
    before anything is served.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db: Any = ":memory:",
        max_body_bytes: int = 16 * 1024 * 1024,
        request_log_size: int = REQUEST_LOG_SIZE,
        request_log_bytes: int = REQUEST_LOG_BYTES,
    ) -> None:
        self.max_body_bytes = int(max_body_bytes)
        self.request_log = RequestLog(request_log_size, request_log_bytes)
        self._store = Store(db)
        self._thread: Optional[threading.Thread] = None
        self._foreground = False
        self._stopped = False
        try:
            self._server = _Server((host, port), self)
        except BaseException:
            self._store.close()
            raise

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = str(host)  # typeshed allows bytes for AF_UNIX; this is always TCP
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def db_path(self) -> str:
        return self._store.path

    def start(self) -> "Collector":
        if self._stopped:
            raise RuntimeError("collector already stopped")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.5},
                name="loghandlers-collector",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until ``stop()`` from another thread or Ctrl-C."""
        if self._stopped:
            raise RuntimeError("collector already stopped")
        self._foreground = True
        try:
            self._server.serve_forever(poll_interval=0.25)
        finally:
            self._foreground = False

    def stop(self) -> None:
        """Stop serving, cut open connections and close the database. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        # shutdown() waits for a serve loop to acknowledge; only ask if one is running.
        if self._thread is not None or self._foreground:
            self._shutdown_loop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server.server_close()
        self._server.close_connections()
        self._store.close()

    def _shutdown_loop(self) -> None:
        """shutdown(), but without waiting out the loop's poll interval.

        The serve loop re-checks its stop flag whenever select() wakes, so connecting to
        the listening socket makes it notice at once; a stop is then milliseconds, not a
        poll interval, which adds up over a test suite.
        """
        waiter = threading.Thread(target=self._server.shutdown, daemon=True)
        waiter.start()
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        for _ in range(100):
            try:
                socket.create_connection((host, port), timeout=0.5).close()
            except OSError:
                pass
            waiter.join(timeout=0.05)
            if not waiter.is_alive():
                break

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection

    def events(
        self,
        service: Optional[str] = None,
        source: Optional[str] = None,
        channel: Optional[str] = None,
        limit: Optional[int] = None,
        after_id: Optional[int] = None,
        namespace: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """Stored events oldest first; ``limit`` keeps the oldest (page on with ``after_id``)."""
        return self._store.events(
            service=service,
            source=source,
            channel=channel,
            namespace=namespace,
            limit=limit,
            after_id=after_id,
        )

    def count(self, service: Optional[str] = None) -> int:
        return self._store.count(service)

    def requests(self, service: Optional[str] = None) -> List[Dict[str, Any]]:
        """The last requests seen, accepted or not, with raw bodies (in memory only).

        Bounded by ``request_log_size`` entries and ``request_log_bytes`` (bodies, paths and
        headers); the oldest are forgotten first, the newest is always kept.
        """
        return self.request_log.entries(service)

    def buckets(self) -> List[Dict[str, Any]]:
        return self._store.buckets()
