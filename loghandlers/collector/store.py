"""SQLite storage for the development collector.

One connection shared by all server threads and guarded by a lock: that is the
only way ``:memory:`` databases are visible to every thread, and it keeps
writes serialised without relying on SQLite's own busy handling.
"""

import json
import os
import sqlite3
import threading
import time
from typing import Any, Dict, Iterable, List, NamedTuple, Optional

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    source TEXT,
    channel TEXT,
    received_at REAL NOT NULL,
    event TEXT NOT NULL,
    namespace TEXT
);
CREATE INDEX IF NOT EXISTS events_by_channel ON events (service, namespace, channel);
CREATE TABLE IF NOT EXISTS buckets (
    bucket_key TEXT PRIMARY KEY,
    bucket_name TEXT,
    access_key_present INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""

_COLUMNS = "id, service, source, channel, namespace, received_at, event"


class Row(NamedTuple):
    """One event to store; ``namespace`` is only set for Kronos (NULL elsewhere)."""

    service: str
    source: Optional[str]
    channel: Optional[str]
    namespace: Optional[str]
    event: Dict[str, Any]


def _text(value: Optional[str]) -> Optional[str]:
    """Make a str storable: JSON may decode to lone surrogates, which sqlite3 cannot encode."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class Store:
    """Events and Initial State buckets in one SQLite database (a path or ``:memory:``)."""

    def __init__(self, path: Any = ":memory:") -> None:
        self.path = os.fspath(path) if path else ":memory:"
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so reads never hold a
        # transaction open and block a concurrent `events --follow` reader.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            if self.path != ":memory:":
                # WAL lets the `events` CLI read while `collect` writes from another process.
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def insert(self, rows: Iterable[Row]) -> int:
        """Store a whole batch atomically, so a rejected request never leaves half a batch."""
        now = time.time()
        params = [
            (
                r.service,
                _text(r.source),
                _text(r.channel),
                _text(r.namespace),
                now,
                json.dumps(r.event, ensure_ascii=True, separators=(",", ":")),
            )
            for r in rows
        ]
        if not params:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO events (service, source, channel, namespace, received_at, event)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    params,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(params)

    def events(
        self,
        service: Optional[str] = None,
        source: Optional[str] = None,
        channel: Optional[str] = None,
        namespace: Optional[str] = None,
        limit: Optional[int] = None,
        after_id: Optional[int] = None,
        newest: bool = False,
    ) -> List[Dict[str, Any]]:
        """Matching events oldest first; ``limit`` keeps the oldest, or the newest if asked."""
        where, args = self._where(service, source, channel, namespace)
        if after_id is not None:
            where.append("id > ?")
            args.append(int(after_id))
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC" if newest else " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(int(limit), 0))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        if newest:
            rows.reverse()
        return [
            {
                "id": r[0],
                "service": r[1],
                "source": r[2],
                "channel": r[3],
                "namespace": r[4],
                "received_at": r[5],
                "event": json.loads(r[6]),
            }
            for r in rows
        ]

    def count(self, service: Optional[str] = None) -> int:
        where, args = self._where(service, None, None, None)
        sql = "SELECT COUNT(*) FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def channels(self, service: str, namespace: Optional[str] = None) -> List[str]:
        where, args = self._where(service, None, None, namespace)
        sql = "SELECT DISTINCT channel FROM events WHERE " + " AND ".join(where)
        with self._lock:
            names = [r[0] for r in self._db.execute(sql, args) if r[0] is not None]
        return sorted(names)

    def delete(self, ids: Iterable[int]) -> int:
        params = [(int(i),) for i in ids]
        if not params:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM events WHERE id = ?", params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(params)

    def add_bucket(self, key: str, name: str, access_key_present: bool) -> None:
        """Record a bucket; a repeated create (ISStreamer re-sends it) only updates the name."""
        stored_key, stored_name = _text(key), _text(name)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # INSERT OR IGNORE + UPDATE instead of UPSERT: works with SQLite < 3.24.
                self._db.execute(
                    "INSERT OR IGNORE INTO buckets VALUES (?, ?, ?, ?)",
                    (stored_key, stored_name, int(access_key_present), time.time()),
                )
                self._db.execute(
                    "UPDATE buckets SET bucket_name = ?, access_key_present = ? WHERE bucket_key = ?",
                    (stored_name, int(access_key_present), stored_key),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def buckets(self) -> List[Dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT bucket_key, bucket_name, access_key_present FROM buckets ORDER BY rowid"
            ).fetchall()
        return [{"bucketKey": k, "bucketName": n, "accessKey_present": bool(a)} for k, n, a in rows]

    @staticmethod
    def _where(service, source, channel, namespace):
        where: List[str] = []
        args: List[Any] = []
        for column, value in (
            ("service", service),
            ("source", source),
            ("channel", channel),
            ("namespace", namespace),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        return where, args
