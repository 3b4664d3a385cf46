"""The ``collect`` and ``events`` sub-commands: run the development collector, read its db.

Each ``add_*_parser`` registers a sub-command whose ``func(args)`` returns an exit code.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from typing import Any, Dict, List, Optional, TextIO

from .collector import Collector
from .collector.store import Store

ENV_DB = "LOGHANDLERS_COLLECTOR_DB"
DEFAULT_PORT = 8787
SERVICES = ("samsara", "initialstate", "panoply", "kronos", "json")
FOLLOW_INTERVAL = 0.5
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def default_db() -> str:
    """The database `collect` writes and `events` reads when ``--db`` is not given.

    ``$LOGHANDLERS_COLLECTOR_DB`` if set, else one file per user, the same from every
    working directory: ``$XDG_DATA_HOME/loghandlers/collector.db`` (``~/.local/share/...``
    when unset; ``%LOCALAPPDATA%`` on Windows).
    """
    explicit = os.environ.get(ENV_DB)
    if explicit:
        return explicit
    base = os.environ.get("XDG_DATA_HOME")
    if not base and sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "loghandlers", "collector.db")


def _help_path() -> str:
    return default_db().replace("%", "%%")  # argparse formats help with %


def add_collect_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "collect",
        help="run the local development collector (all services on one port)",
        description="Serve the Samsara, Initial State, Panoply, Kronos and generic JSON "
        "protocols on one port and store accepted events in SQLite, until Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    p.add_argument(
        "--db",
        help=f"SQLite file (default: ${ENV_DB}, else {_help_path()}; `events` reads the same)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="refuse request bodies larger than this with 413 (default: %(default)s)",
    )
    p.set_defaults(func=run_collect)
    return p


def add_events_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "events",
        help="show events stored by the collector",
        description="Print the newest events from the collector's database, oldest first.",
    )
    p.add_argument(
        "--db", help=f"SQLite file (default: ${ENV_DB}, else {_help_path()}, as `collect`)"
    )
    p.add_argument("--service", choices=SERVICES, help="only this service")
    p.add_argument("--source", help="only this source id")
    p.add_argument(
        "--limit", type=int, default=50, help="show the newest N events, 0 for all (default: 50)"
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run_events)
    return p


def run_collect(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    db = args.db or default_db()
    try:
        if not args.db and db != ":memory:":
            os.makedirs(os.path.dirname(db) or ".", mode=0o700, exist_ok=True)
        collector = Collector(
            host=args.host, port=args.port, db=db, max_body_bytes=args.max_body_bytes
        )
    except (OSError, sqlite3.Error) as exc:
        print(
            f"loghandlers collect: cannot start on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 2
    url = collector.url
    if args.host not in _LOOPBACK:
        print(
            f"warning: listening on {args.host}; the collector has no authentication",
            file=sys.stderr,
        )
    lines = [
        f"loghandlers collector on {url}  (database: {db})",
        f"  samsara       POST {url}/v1/events",
        f"  initialstate  POST {url}/api/buckets, {url}/api/events  (stream_api_base = {url})",
        f"  panoply       POST {url}/<aws-account>/<queue>  (SQS SendMessage, form-encoded)",
        f"  kronos        POST {url}/1.0/events/put  (http_url = {url})",
        f"  json          POST {url}/json  (or {url}/json/<channel>)",
        f"  otlp          POST {url}/v1/logs  (OTLP/HTTP JSON; OTLPHandler url = {url})",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), file=out, flush=True)
    _stop_on_interrupt()
    try:
        collector.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=out, flush=True)
    finally:
        collector.stop()
    return 0


def _stop_on_interrupt() -> None:
    """Ctrl-C stops the collector even when it was started with SIGINT ignored (``collect &``
    from a script, or under a test runner's worker), where Python installs no handler."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_events(
    args: argparse.Namespace,
    out: Optional[TextIO] = None,
    stop: Optional[threading.Event] = None,
) -> int:
    """``stop`` ends ``--follow`` without a Ctrl-C (tests, embedding)."""
    out = out or sys.stdout
    path = args.db or default_db()
    if path != ":memory:" and not os.path.exists(path):
        print(
            f"loghandlers events: no collector database at {path}: start one with "
            "`python -m loghandlers collect` (it writes there), or pass --db PATH",
            file=sys.stderr,
        )
        return 1
    try:
        store = Store(path)
    except sqlite3.Error as exc:
        print(f"loghandlers events: cannot open {path}: {exc}", file=sys.stderr)
        return 1
    filters = {"service": args.service, "source": args.source}
    try:
        rows = store.events(limit=args.limit if args.limit > 0 else None, newest=True, **filters)
        table = None if args.json else _Table(rows)
        _print_rows(rows, table, out, header=True)
        last_id = rows[-1]["id"] if rows else 0
        while args.follow:
            if stop is not None:
                if stop.wait(FOLLOW_INTERVAL):
                    break
            else:
                time.sleep(FOLLOW_INTERVAL)
            rows = store.events(after_id=last_id, limit=1000, **filters)
            if rows:
                _print_rows(rows, table, out, header=False)
                last_id = rows[-1]["id"]
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # Reader went away (`| head`); silence the flush at exit too.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    finally:
        store.close()
    return 0


def _print_rows(
    rows: List[Dict[str, Any]], table: Optional["_Table"], out: TextIO, header: bool
) -> None:
    if table is None:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), file=out)
    else:
        if header:
            print(table.header(), file=out)
        for row in rows:
            print(table.line(row), file=out)
    out.flush()


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# Keys already shown in their own column, or noise for a one-line summary.
_HIDDEN = {"sourceId", "eventName", "__table", "@library", "@id", "receivedAt", "publishedAt"}


def summary(service: Optional[str], event: Any) -> str:
    """A one-line gist of an event: its message if it has one, else compact JSON."""
    if not isinstance(event, dict):
        text = _compact(event)
    elif service == "initialstate" and "key" in event:
        text = f"{event['key']} = {_compact(event.get('value'))}"
    elif isinstance(event.get("message"), str):
        text = event["message"]
    elif isinstance(event.get("msg"), str):
        text = event["msg"]
    else:
        text = _compact({k: v for k, v in event.items() if k not in _HIDDEN})
    return " ".join(text.split())


def _channel(row: Dict[str, Any]) -> str:
    """Kronos rows show ``namespace/stream``; the namespace lives in its own column."""
    channel = row["channel"] or "-"
    return f"{row['namespace']}/{channel}" if row.get("namespace") else channel


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


class _Table:
    """Column widths are fixed from the first page so ``--follow`` output stays aligned."""

    MAX_WIDE = 24

    def __init__(self, rows: List[Dict[str, Any]]) -> None:
        def width(cell: Any, title: str, minimum: int) -> int:
            longest = max((len(cell(r)) for r in rows), default=minimum)
            return max(len(title), minimum, min(longest, self.MAX_WIDE))

        self.widths = [
            max(4, max((len(str(r["id"])) for r in rows), default=4)),
            23,
            12,
            width(lambda r: r["source"] or "-", "SOURCE", 12),
            width(_channel, "CHANNEL", 12),
        ]
        used = sum(self.widths) + 2 * len(self.widths)
        self.event_width = max(shutil.get_terminal_size((120, 24)).columns - used, 20)

    def _join(self, cells: List[str], event: str) -> str:
        parts = [cells[0].rjust(self.widths[0])]
        parts += [_fit(c, w).ljust(w) for c, w in zip(cells[1:], self.widths[1:])]
        return "  ".join(parts + [_fit(event, self.event_width)]).rstrip()

    def header(self) -> str:
        return self._join(["ID", "RECEIVED", "SERVICE", "SOURCE", "CHANNEL"], "EVENT")

    def line(self, row: Dict[str, Any]) -> str:
        received = datetime.datetime.fromtimestamp(row["received_at"])
        cells = [
            str(row["id"]),
            received.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            row["service"],
            row["source"] or "-",
            _channel(row),
        ]
        return self._join(cells, summary(row["service"], row["event"]))
