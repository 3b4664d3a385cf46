"""Rows for the README's "Where it runs" table.

    WHERE_TABLE=rows.txt python -m pytest tests/test_lifecycle.py tests/test_uwsgi.py \
        tests/test_where_it_runs.py

makes each scenario append what it measured (after its assertions passed) to rows.txt:
the interpreter, the test, records logged and delivered, and distinct source ids.
"""

import os
import sys


def record(test: str, logged: int, delivered: int, sources: int, note: str = "") -> None:
    path = os.environ.get("WHERE_TABLE")
    if not path:
        return
    version = sys.version.split()[0]
    with open(path, "a") as rows:
        rows.write(f"| {version} | `{test}` | {logged} | {delivered} | {sources} | {note} |\n")
