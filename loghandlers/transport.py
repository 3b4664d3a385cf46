"""HTTP: one pooled session per handler, a retry policy, compression.

The retry loop lives in :mod:`loghandlers.exporter`, not in urllib3, because only the
service can tell a retryable answer from a final one (Kronos says "failed" with a 200) and
because waits must yield to a ``close()`` deadline instead of sleeping inside urllib3.
"""

from __future__ import annotations

import email.utils
import random
import time
import zlib
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import quote_plus, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

#: answers worth another try: the request may succeed unchanged later
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 1024 * 1024  # never buffer a runaway error page


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
        """Seconds before retry ``retry_number`` (1-based); the server's Retry-After wins."""
        if retry_after is not None:
            return max(0.0, retry_after)
        step = min(self.max_backoff, self.backoff * (2 ** (retry_number - 1)))
        return step * (1.0 - self.jitter * random.random())


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def reset(self) -> None:
        """A fresh pool: a forked child must not share its parent's sockets."""
        self.session = self._new_session()

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
        """One attempt. Raises ``requests.RequestException`` on network failure."""
        response = self.session.request(
            request.method,
            request.url,
            data=body,
            headers=headers,
            timeout=self.timeout if timeout is None else timeout,
            verify=self.verify,
            stream=True,
            allow_redirects=False,
        )
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_RESPONSE_BYTES:
                    break  # a runaway body; close() below drops this connection
        except requests.RequestException:
            pass  # the status is what counts; a broken body is not worth a retry
        finally:
            response.close()  # back to the pool if fully read, closed otherwise
        content = b"".join(chunks)[:MAX_RESPONSE_BYTES]
        return Reply(response.status_code, response.headers, content)

    def close(self) -> None:
        try:
            self.session.close()
        except Exception:
            pass
