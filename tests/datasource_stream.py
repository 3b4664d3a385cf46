"""A data source for tests/test_datasource.py, run by the runner in a subprocess.

``Stream`` is written the way the Panoply SDK's README describes (``import panoply``, paged
reads, ``progress``, ``state``, ``__state`` on every object, ``validate_token``); what it
does wrong or slowly is chosen by its source parameters, so the runner can be driven
through every path from a subprocess:

* ``rows``: how many rows exist (``id`` 0..rows-1); read from ``api`` when given, else
  generated.
* ``api``: true to read rows from the loopback OAuth API (``test_datasource.OAuthAPI``,
  base URL in ``$TEST_DATASOURCE_API``): ``GET /rows`` with the access token, refreshed
  through ``POST /token`` by ``validate_token`` when the API answers 401.
* ``fail_pages``: page numbers whose first ``read()`` raises a retryable error.
* ``fatal_page``: the page whose ``read()`` raises ``PanoplyException(retryable=False)``.
* ``crash_page`` + ``crash_marker``: the process dies (``os._exit``) on that page's read,
  once (the marker file remembers).
* ``sleep``: seconds each ``read()`` takes.
* ``leak``: log, report progress and fail with the access token in the text (a careless
  data source; the runner must blank it).
"""

from __future__ import annotations

import os
import time
import uuid

import panoply  # the runner's stand-in for the SDK: loghandlers.clients.panoply
import requests

CONFIG = {
    "title": "Test rows",
    "icon": "",
    "params": [
        {"name": "rows", "title": "Number of rows"},
        {"name": "api", "title": "Read from the API", "required": False},
    ],
}


API = os.environ.get("TEST_DATASOURCE_API", "http://127.0.0.1:9")


class TokenExpired(Exception):
    """The API answered 401."""


class TestRows(panoply.DataSource):
    def __init__(self, source, options):
        super().__init__(source, options)
        saved = (source.get("state") or {}).get("rows") or {}
        self.offset = int(saved.get("offset", 0))
        self.total = int(source["rows"])
        self.page = self.offset  # page numbers are offsets / n, known once n is
        self.failed = set()
        self.closed = False
        self.refreshed = []

    def read(self, n=None):
        n = n or 100
        page = self.offset // n
        params = self.source
        if params.get("sleep"):
            time.sleep(float(params["sleep"]))
        if page in (params.get("fail_pages") or []) and page not in self.failed:
            self.failed.add(page)
            raise ConnectionError(f"transient failure on page {page}")
        if page == params.get("fatal_page"):
            raise panoply.errors.PanoplyException(f"HTTP 404 on page {page}", retryable=False)
        marker = params.get("crash_marker")
        if page == params.get("crash_page") and marker and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write("crashed")
            os._exit(3)
        if self.offset >= self.total:
            return None
        if params.get("api"):
            rows = self._request(self.offset, n)
        else:
            rows = [{"id": i} for i in range(self.offset, min(self.total, self.offset + n))]
        if params.get("leak"):
            token = self.source.get("access_token")
            self.log("using token", token, "for", f"{API}/rows?access_token={token}")
            self.progress(self.offset, self.total, f"token={token}")
        self.offset += len(rows)
        state_id = uuid.uuid4().hex
        self.state(state_id, {"rows": {"offset": self.offset}})
        self.progress(self.offset, self.total, f"{self.offset}/{self.total} rows")
        for row in rows:
            row["page"] = page
            row["__state"] = state_id
        if params.get("leak") and self.offset >= self.total:
            raise panoply.errors.PanoplyException(
                f"gave up with token {self.source.get('access_token')}", retryable=False
            )
        return rows

    @panoply.validate_token(f"{API}/token", TokenExpired, "on_token")
    def _request(self, offset, n):
        reply = requests.get(
            f"{API}/rows",
            params={"offset": offset, "limit": n},
            headers={"Authorization": f"Bearer {self.source.get('access_token')}"},
            timeout=10,
        )
        if reply.status_code == 401:
            raise TokenExpired(reply.text)
        reply.raise_for_status()
        return reply.json()

    def on_token(self, token):
        self.refreshed.append(len(token))

    def close(self):
        self.closed = True


Stream = TestRows
