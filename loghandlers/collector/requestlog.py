"""The collector's in-memory log of the requests it saw, for tests and debugging.

Bounded twice: by entries and by bytes (bodies, paths and headers), since a few large
uploads would otherwise keep hundreds of megabytes alive. The oldest entries go first; the
newest is always kept, so ``requests()[-1]`` is the request just answered. Server threads
call :meth:`RequestLog.add` and any thread :meth:`RequestLog.entries`, under ``_lock``.
"""

import collections
import threading
from typing import Any, Deque, Dict, List, Optional, Tuple

REQUEST_LOG_SIZE = 10000
REQUEST_LOG_BYTES = 64 * 1024 * 1024

__all__ = ["REQUEST_LOG_BYTES", "REQUEST_LOG_SIZE", "HeaderDict", "RequestLog"]


class HeaderDict(Dict[str, str]):
    """Request headers as sent (original case), with case-insensitive lookups like HTTP."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self._names = {k.lower(): k for k in self}

    def _name(self, key: Any) -> Any:
        return self._names.get(key.lower(), key) if isinstance(key, str) else key

    def __getitem__(self, key: Any) -> str:
        return super().__getitem__(self._name(key))

    def __contains__(self, key: Any) -> bool:
        return super().__contains__(self._name(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(self._name(key), default)


class RequestLog:
    """At most ``max_entries`` entries and ``max_bytes`` bytes (plus the newest entry)."""

    def __init__(self, max_entries: int = REQUEST_LOG_SIZE, max_bytes: int = REQUEST_LOG_BYTES):
        self.max_entries = max(int(max_entries), 1)
        self.max_bytes = int(max_bytes)
        self._entries: Deque[Tuple[Dict[str, Any], int]] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, entry: Dict[str, Any]) -> None:
        """Keep ``entry`` (keys: service, method, path, status, headers, body)."""
        size = len(entry["body"]) + len(entry["path"])
        size += sum(len(k) + len(v) for k, v in entry["headers"].items())
        with self._lock:
            self._entries.append((entry, size))
            self._bytes += size
            while len(self._entries) > 1 and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                _, dropped = self._entries.popleft()
                self._bytes -= dropped

    def entries(self, service: Optional[str] = None) -> List[Dict[str, Any]]:
        """The kept entries, oldest first; only ``service``'s if given."""
        with self._lock:
            kept = [entry for entry, _ in self._entries]
        if service is not None:
            kept = [e for e in kept if e["service"] == service]
        return kept
