"""Small helpers the test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import logging
import pathlib
from itertools import count

#: options that keep wire tests fast: nothing is shipped until flush(), retries are quick
FAST = {
    "flush_interval": 60.0,
    "retries": 1,
    "backoff": 0.01,
    "max_backoff": 2.0,
    "close_timeout": 3.0,
    "timeout": 5.0,
}


def messages(events) -> list:
    """The ``message`` of each event, in order."""
    return [event["message"] for event in events]


class Catcher(logging.Handler):
    """Keeps the LogRecords a logger saw, so tests know each record's ``created``."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_names = count()


def attach(handler: logging.Handler, name: str | None = None):
    """A fresh logger sending to ``handler``; returns (logger, catcher)."""
    logger = logging.getLogger(name or f"wiretest.{next(_names)}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    catcher = Catcher()
    logger.addHandler(catcher)
    logger.addHandler(handler)
    return logger, catcher


def spool_text(directory) -> str:
    """Everything under the spool directory, as one text (to search for leaks)."""
    parts = []
    for path in sorted(pathlib.Path(directory).rglob("*")):
        if path.is_file():
            parts.append(path.read_text("utf-8", "replace"))
    return "\n".join(parts)


def spooled_events(directory) -> list:
    """Every event in the spool's batch files, oldest first."""
    events = []
    for path in sorted(pathlib.Path(directory).rglob("[0-9]*.json")):  # batches, oldest first
        header, _, rest = path.read_text("utf-8").partition("\n")
        events.extend(json.loads(rest))
    return events


def collector_accepts(captured, path: str | None = None) -> bool:
    """Send a captured request, as it was, to a fresh development collector, which enforces
    each service's server rules (``loghandlers.collector``), instead of restating those
    rules in the wire tests. ``path`` replaces the captured path (e.g. a URL prefix)."""
    import http.client
    from urllib.parse import urlsplit

    from loghandlers.collector import Collector

    skip = {"host", "content-length", "connection", "transfer-encoding"}
    headers = {k: v for k, v in captured.headers if k.lower() not in skip}
    with Collector() as collector:
        parts = urlsplit(collector.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request(
                captured.method, path or captured.path, body=captured.body, headers=headers
            )
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
    if not 200 <= reply.status < 300:
        return False
    try:
        verdict = json.loads(body) if body.strip() else {}
    except ValueError:
        return True  # the SQS reply is XML
    return not (isinstance(verdict, dict) and verdict.get("@success") is False)
