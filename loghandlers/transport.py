"""HTTP: one pooled session per handler, a retry policy, compression, request deadlines.

The retry loop lives in :mod:`loghandlers.exporter`, not in urllib3, because only the
service can tell a retryable answer from a final one (Kronos says "failed" with a 200) and
because waits must yield to a ``close()`` deadline instead of sleeping inside urllib3.

``timeout`` is a deadline for a whole request: connect, send, and read the whole reply.
Socket timeouts alone can't promise that (each read that brings one byte restarts them, so
a server dripping a byte every half second holds a request for days), so each request also
registers with one process-wide watchdog thread which, at the deadline, shuts down the
sockets that request is using; the blocked read or write then fails at once and the
attempt ends as a timeout.

Threading: a :class:`Transport` is used by one thread at a time (its handler's worker).
A :class:`RequestDeadline` is written by that thread (``watch``, ``finish``) and by the
watchdog thread (``expire``), always under its own lock; once ``finish`` has run, the
watchdog never touches the request's sockets again, so a connection back in the pool is
never cut by an old timer. The watchdog's heap is guarded by its condition's lock and is
rebuilt empty in a forked child (the thread does not survive the fork).
"""

from __future__ import annotations

import base64
import email.utils
import heapq
import itertools
import os
import random
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping
from urllib.parse import quote_plus, unquote, urljoin, urlsplit, urlunsplit

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.poolmanager
from requests.adapters import HTTPAdapter

#: answers worth another try: the request may succeed unchanged later
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: redirects that keep the method and the body (RFC 9110): followed to the same origin only
BODY_KEEPING_REDIRECTS = frozenset({307, 308})
MAX_REDIRECTS = 5
MAX_RESPONSE_BYTES = 1024 * 1024  # never buffer a runaway error page
#: the longest wait a server's Retry-After can ask for (a larger one is read as this)
MAX_RETRY_AFTER = 24 * 3600.0
#: Retry-After as delta-seconds: RFC 9110 says 1*DIGIT; a decimal fraction is tolerated
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
#: ``scheme://user-info@`` anywhere in a text (an authority holds no / ? # or space)
#: (up to the last ``@`` before a space or quote: a password with a raw ``/`` in it is still
#: the user's secret, even though a URL parser reads it as the start of the path)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s@'\"]*@")


_FORM_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_ASCII = str.maketrans(
    {i: chr(i) if chr(i) in _FORM_SAFE else "+" if i == 32 else f"%{i:02X}" for i in range(128)}
)


def redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for anything a person may see."""
    parts = urlsplit(url or "")
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"****@{host}", parts.path, parts.query, parts.fragment))


def public_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no user-info, query or fragment (where
    credentials may hide), for what is written down for people (a spool's identity.json)."""
    parts = urlsplit(url or "")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_userinfo(text: str) -> str:
    """``text`` with the user-info of every URL in it replaced by ``****``."""
    return _USERINFO.sub(r"\1****@", text) if "@" in text else text


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its user-info, and the ``Authorization`` value that user-info
    stands for (``Basic base64(user:password)``, %-decoded as requests does), or None."""
    scheme, sep, rest = (url or "").partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if not sep or "@" not in authority:
        return url, None
    userinfo, _, host = authority.rpartition("@")
    user, _, password = userinfo.partition(":")
    return f"{scheme}://{host}{rest[len(authority) :]}", "Basic " + _basic_token(user, password)


def _basic_token(user: str, password: str) -> str:
    pair = f"{unquote(user)}:{unquote(password)}"
    try:
        raw = pair.encode("latin-1")  # as requests encodes it
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")  # RFC 7617's charset="UTF-8"
    return base64.b64encode(raw).decode("ascii")


def same_origin(url: str, other: str) -> bool:
    """Scheme, host and port equal (the port as the scheme implies it when not given)."""
    try:
        a, b = urlsplit(url), urlsplit(other)
        ports = [p.port or {"http": 80, "https": 443}.get(p.scheme.lower()) for p in (a, b)]
    except ValueError:
        return False
    return (
        a.scheme.lower() == b.scheme.lower()
        and (a.hostname or "") == (b.hostname or "")
        and ports[0] == ports[1]
    )


def url_credentials(url: str) -> list[str]:
    """The user-info of ``url`` in each form it may be shown in: as written, %-decoded,
    the password alone, and the ``Authorization: Basic`` token requests makes of it.
    (A user name alone is not blanked everywhere: "api" or "user" is no secret, and a
    token given as the user name is the whole user-info.)"""
    rest = (url or "").partition("://")[2]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    # a password with a raw "/" ends the authority early: what precedes the last "@" of
    # the first word is kept secret too
    loose = re.split(r"[\s'\"]", rest, maxsplit=1)[0].rpartition("@")[0]
    loose = "" if loose == authority.rpartition("@")[0] else loose
    if "@" not in authority and not loose:
        return []  # (parsed by hand: urlsplit refuses some URLs, and says so with the URL)
    found = []
    for userinfo in (authority.rpartition("@")[0], loose):
        if not userinfo:
            continue
        user, _, password = userinfo.partition(":")
        decoded = f"{unquote(user)}:{unquote(password)}"
        basic = _basic_token(user, password)
        found += [userinfo, unquote(userinfo), decoded, password, unquote(password), basic]
    return [item for item in dict.fromkeys(found) if item]


def form_quote(value: str) -> str:
    """``urllib.parse.quote_plus(value, safe="")``, at C speed for ASCII text."""
    if value.isascii():
        return value.translate(_FORM_ASCII)
    return quote_plus(value, safe="")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; one immutable value, like urllib3's ``Retry``."""

    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.5  # each wait is drawn from [1 - jitter, 1] x the exponential step

    def is_retryable(self, status: int) -> bool:
        return status in RETRYABLE_STATUSES or status >= 500

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``retry_number`` (1-based); the server's Retry-After wins,
        up to :data:`MAX_RETRY_AFTER` (whether to wait that long is ``max_backoff``'s call)."""
        if retry_after is not None and retry_after == retry_after:  # NaN is no delay
            return min(MAX_RETRY_AFTER, max(0.0, retry_after))
        step = min(self.max_backoff, self.backoff * (2 ** (retry_number - 1)))
        return step * (1.0 - self.jitter * random.random())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date, at most
    :data:`MAX_RETRY_AFTER`. Anything else (``1e999``, ``inf``, ``-5``, garbage) is None:
    not a delay, so the caller's own backoff applies."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(MAX_RETRY_AFTER, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError, AttributeError):
        return None
    if seconds != seconds:
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


@dataclass
class Request:
    """One HTTP request a service wants sent; the body is uncompressed."""

    url: str
    body: bytes
    headers: Mapping[str, str | None] = field(default_factory=dict)
    method: str = "POST"
    compressible: bool = True


@dataclass
class Reply:
    """What came back: status, headers and at most MAX_RESPONSE_BYTES of body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", "replace")


class Transport:
    """Sends one request once; everything about retrying is the caller's business."""

    def __init__(
        self,
        timeout: float,
        compression: str = "none",
        compression_level: int = 6,
        verify: bool = True,
    ):
        self.timeout = timeout
        self.compression = compression
        self.compression_level = compression_level
        self.verify = verify
        self.session = self._new_session()
        _WATCHDOG.ensure_running()
        #: a moment (time.monotonic()) no request may outlast: set by close()
        self.cutoff: float | None = None
        self._in_flight: RequestDeadline | None = None

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = _DeadlineAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def reset(self) -> None:
        """A fresh pool: a forked child must not share its parent's sockets."""
        self.session = self._new_session()
        _WATCHDOG.ensure_running()

    def compress(self, request: Request) -> tuple[bytes, dict]:
        headers = dict(request.headers)
        body = request.body
        if self.compression == "gzip" and request.compressible:
            compressor = zlib.compressobj(self.compression_level, zlib.DEFLATED, 31)
            body = compressor.compress(body) + compressor.flush()
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def send(
        self, request: Request, body: bytes, headers: Mapping, timeout: float | None = None
    ) -> Reply:
        """One attempt, over within ``timeout`` seconds (default: the transport's) from
        connect to the reply's last byte. Raises ``requests.RequestException`` on network
        failure, ``requests.Timeout`` when the deadline cut the request short.

        Redirects are decided here and only here (requests' own following is off): a 307
        or 308 to the same origin (scheme, host, port) is followed with the same method,
        body and headers, within the same deadline, at most :data:`MAX_REDIRECTS` times;
        any other 3xx, or one to another origin, comes back as the reply for the service
        to judge (see ``Service.judge``), so credentials never leave their origin.
        """
        seconds = self.timeout if timeout is None else timeout
        ends = time.monotonic() + seconds
        if self.cutoff is not None:  # a close() deadline: no request outlasts it
            ends = min(ends, max(self.cutoff, time.monotonic() + 0.05))
        url = request.url
        for _ in range(MAX_REDIRECTS + 1):
            reply = self._send_once(request.method, url, body, headers, ends, seconds)
            location = reply.headers.get("Location")
            if reply.status not in BODY_KEEPING_REDIRECTS or not location:
                break
            target = urljoin(url, location)
            if not same_origin(request.url, target):
                break
            url = target
        return reply

    def _send_once(
        self, method: str, url: str, body: bytes, headers: Mapping, ends: float, total: float
    ) -> Reply:
        seconds = max(0.001, ends - time.monotonic())
        deadline = RequestDeadline(ends)
        _WATCHDOG.add(deadline)
        _current.deadline = deadline
        self._in_flight = deadline
        response = None
        try:
            try:
                response = self.session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=(seconds, seconds),
                    verify=self.verify,
                    stream=True,
                    allow_redirects=False,
                )
            except requests.RequestException:
                if deadline.expired:
                    raise requests.Timeout(
                        f"timed out: no complete reply within {total:g} s"
                    ) from None
                raise
            chunks, size = [], 0
            try:
                for chunk in response.iter_content(64 * 1024):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= MAX_RESPONSE_BYTES:
                        break  # a runaway body; close() below drops this connection
            except requests.RequestException:
                pass  # the status is what counts; a broken or cut body is not worth a retry
        finally:
            deadline.finish()
            _current.deadline = None
            self._in_flight = None
            if response is not None:
                response.close()  # back to the pool if fully read, closed otherwise
        content = b"".join(chunks)[:MAX_RESPONSE_BYTES]
        return Reply(response.status_code, response.headers, content)

    def cut_off(self, at: float) -> None:
        """No request may last past ``at`` (a close() deadline), the one in flight
        included: the watchdog ends it then (called from any thread)."""
        self.cutoff = at
        deadline = self._in_flight
        if deadline is not None and at < deadline.at:
            deadline.at = at
            _WATCHDOG.add(deadline)

    def close(self) -> None:
        try:
            self.session.close()
        except Exception:
            pass


# --------------------------------------------------------------------- request deadlines
class RequestDeadline:
    """The moment one request must be over by, and the sockets it is using."""

    def __init__(self, at: float):
        self.at = at
        self.expired = False
        self._sockets: list = []
        self._done = False
        self._lock = threading.Lock()

    def watch(self, sock) -> None:
        """``sock`` carries this request (called on the requesting thread)."""
        with self._lock:
            if self._done or any(known is sock for known in self._sockets):
                return
            self._sockets.append(sock)
            if self.expired:  # a connection made after the deadline: cut it too
                _cut(sock)

    def expire(self) -> None:
        """The deadline passed (called by the watchdog): end the request now."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _cut(sock)

    def finish(self) -> None:
        """The request is over: the watchdog must leave its sockets alone from now on."""
        with self._lock:
            self._done = True
            self._sockets.clear()


def _cut(sock) -> None:
    """Shut a socket down for both directions so a read or write blocked on it returns.
    ``socket.socket.shutdown`` also for TLS sockets: the ssl module's own ``shutdown``
    would tear down the TLS state under the thread that is reading."""
    try:
        if sock.fileno() != -1:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError, TypeError):
        pass


class _Watchdog:
    """One daemon thread per process that expires requests at their deadlines."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def ensure_running(self) -> None:
        """Start the thread now, not at the first request: Python 3.12 refuses to start
        threads once interpreter shutdown has begun, when the exit drain sends. In a child
        forked without Python's fork hooks (uWSGI), start afresh first."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        thread = threading.Thread(target=self._run, name="loghandlers-deadlines", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutdown: socket timeouts still bound each read
            return
        self._thread = thread

    def add(self, deadline: RequestDeadline) -> None:
        with self._cond:
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._start_locked()
            elif earliest is None or deadline.at < earliest:
                self._cond.notify()

    def _run(self) -> None:
        cond, heap = self._cond, self._heap
        while True:
            due = []
            with cond:
                while not heap:
                    cond.wait()
                now = time.monotonic()
                while heap and heap[0][0] <= now:
                    due.append(heapq.heappop(heap)[2])
                if not due:
                    cond.wait(heap[0][0] - now)
            for deadline in due:
                deadline.expire()

    def after_fork_in_child(self) -> None:
        if self._pid != os.getpid():  # unless a handler's fork hook got here first
            self._reset()


_WATCHDOG = _Watchdog()
_current = threading.local()  # the deadline of the request this thread is sending
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WATCHDOG.after_fork_in_child)


def _watch(sock) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


if TYPE_CHECKING:  # the mixin's methods call urllib3's connection, which follows it
    _ConnectionBase = urllib3.connection.HTTPConnection
else:
    _ConnectionBase = object


class _WatchedConnection(_ConnectionBase):
    """Tells the current request's deadline about every socket the connection uses."""

    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    def request(self, *args, **kwargs):
        _watch(self.sock)  # a pooled connection being reused
        return super().request(*args, **kwargs)

    def getresponse(self):
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPConnection(_WatchedConnection, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, urllib3.connection.HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections that report their sockets to the deadline."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # an HTTP(S) proxy uses the default pools; a SOCKS proxy has its own: keep those
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
