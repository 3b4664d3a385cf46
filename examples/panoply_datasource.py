"""A Panoply data source that reads a local SQLite table in pages, and a demo that runs it.

As a data source (what ``python -m loghandlers datasource`` imports) this module exposes
``Stream`` and ``CONFIG``. Its source names a SQLite ``database`` file and a ``table``;
each ``read(n)`` returns the next ``n`` rows by ``rowid``, reports progress (rows loaded
of the table's count) and a state ``{<table>: {"last_rowid": ..., "loaded": ...}}`` that
every row of the page carries as ``"__state"``. On a restart with the same ``--state``
file it continues after the last delivered page; a finished run's state makes the next run
read only rows added since.

Try it by hand against the local collector (four shells' worth of commands, from the
repository root):

    python -m loghandlers collect --port 8787 --db /tmp/dsdemo-collector.db &
    python examples/panoply_datasource.py --make-db /tmp/dsdemo-shop.db
    python -m loghandlers datasource examples/panoply_datasource.py \\
        --source '{"type": "orders", "database": "/tmp/dsdemo-shop.db", "table": "orders"}' \\
        --state /tmp/dsdemo-orders.state --url http://127.0.0.1:8787 --batch-size 500
    python -m loghandlers events --service panoply --db /tmp/dsdemo-collector.db --limit 5

(Kill the third command mid-run and run it again: it resumes after the last delivered
page. No Panoply account is needed: with ``--url`` and no credentials, the runner sends
placeholder ones, which is all the collector checks.)

Run on its own, ``python examples/panoply_datasource.py`` does all of that in a temporary
directory, with its own collector on a free port, and prints what arrived.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import uuid

from loghandlers.clients.panoply import DataSource, PanoplyException

CONFIG = {
    "title": "SQLite table",
    "icon": "",
    "params": [
        {"name": "database", "title": "SQLite file", "placeholder": "Example: /data/shop.db"},
        {"name": "table", "title": "Table", "placeholder": "Example: orders"},
    ],
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SQLiteTable(DataSource):
    """Pages through one table by rowid, so a resumed run neither skips nor repeats a page."""

    def __init__(self, source, options):
        super().__init__(source, options)
        self.table = source["table"]
        if not _NAME.fullmatch(self.table):
            raise PanoplyException(f"not a plain table name: {self.table!r}", retryable=False)
        saved = (source.get("state") or {}).get(self.table) or {}
        self.last_rowid = int(saved.get("last_rowid", 0))
        self.loaded = int(saved.get("loaded", 0))
        self.db = None

    def _connect(self):
        if self.db is None:
            path = self.source["database"]
            if not os.path.exists(path):
                raise PanoplyException(f"no database at {path}", retryable=False)
            self.db = sqlite3.connect(path)
            self.db.row_factory = sqlite3.Row
            found = self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)
            ).fetchone()
            if not found:
                raise PanoplyException(f"no table {self.table!r}", retryable=False)
            if self.last_rowid:
                self.log(f"resuming {self.table} after rowid {self.last_rowid}")
        return self.db

    def read(self, n=None):
        db = self._connect()
        n = n or 1000
        rows = db.execute(
            f'SELECT rowid AS __rowid, * FROM "{self.table}" WHERE rowid > ? '
            "ORDER BY rowid LIMIT ?",
            (self.last_rowid, n),
        ).fetchall()
        total = db.execute(f'SELECT COUNT(*) FROM "{self.table}"').fetchone()[0]
        if not rows:
            self.progress(self.loaded, total, f"{self.loaded:,}/{total:,} rows loaded")
            return None
        self.last_rowid = rows[-1]["__rowid"]
        self.loaded += len(rows)
        state_id = uuid.uuid4().hex
        self.state(state_id, {self.table: {"last_rowid": self.last_rowid, "loaded": self.loaded}})
        self.progress(self.loaded, total, f"{self.loaded:,}/{total:,} rows loaded")
        out = []
        for row in rows:
            obj = {key: row[key] for key in row.keys() if key != "__rowid"}
            obj["__state"] = state_id
            out.append(obj)
        return out

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None


Stream = SQLiteTable


# --------------------------------------------------------------------------- the demo
def make_db(path: str, rows: int = 2500, first: int = 1) -> None:
    """A table ``orders`` with ``rows`` rows (ids from ``first``)."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER, customer TEXT, amount REAL, "
            "created TEXT)"
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [
                (i, f"customer-{i % 37}", round(i * 1.25, 2), f"2026-01-{1 + i % 28:02d}")
                for i in range(first, first + rows)
            ],
        )
    db.close()


def run_datasource(database: str, state: str, url: str) -> subprocess.CompletedProcess:
    source = f'{{"type": "orders", "database": "{database}", "table": "orders"}}'
    command = [sys.executable, "-m", "loghandlers", "datasource", __file__]
    command += ["--source", source, "--state", state, "--url", url, "--batch-size", "500"]
    print("$ python -m loghandlers datasource examples/panoply_datasource.py \\")
    print(f"    --source '{source}' \\")
    print(f"    --state {state} --url {url} --batch-size 500")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    for line in done.stderr.splitlines():
        print(f"  | {line}")
    print(f"  exit status {done.returncode}")
    return done


def demo() -> int:
    from loghandlers.collector import Collector

    with tempfile.TemporaryDirectory() as tmp, Collector(port=0, db=":memory:") as collector:
        database = os.path.join(tmp, "shop.db")
        state = os.path.join(tmp, "orders.state")
        make_db(database, 2500)
        print(f"collector on {collector.url}; 2500 rows in {database}:orders\n")
        first = run_datasource(database, state, collector.url)
        make_db(database, 300, first=2501)
        print("\n300 more rows; the same command again reads only those:")
        second = run_datasource(database, state, collector.url)
        rows = [row["event"] for row in collector.events(service="panoply")]
        ids = sorted(event["id"] for event in rows)
        tables = {event["__table"] for event in rows}
        print("\nwhat arrived:")
        print(f"  panoply   {len(rows)} events")
        print(
            f"  tables {sorted(tables)}; ids {ids[0]}..{ids[-1]}, each once: {ids == list(range(1, 2801))}"
        )
        print(f"  first row: { {k: v for k, v in rows[0].items() if k != '__state'} }")
        print(f"  state file mode: {oct(os.stat(state).st_mode & 0o777)}")
        return 0 if first.returncode == second.returncode == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-db":
        make_db(sys.argv[2])
        print(f"2500 rows in {sys.argv[2]}:orders")
        sys.exit(0)
    sys.exit(demo())
