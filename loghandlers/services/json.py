"""Generic JSON over HTTP: POST a JSON array of events to any URL.

Each event: ``timestamp`` (RFC 3339 UTC, ms), ``message``, ``level``, ``logger``, any
``exc_info``/``stack_info`` text, the ``extra=`` fields, and ``sourceId``. Any 2xx is
success.
"""

from __future__ import annotations

from ..handler import BatchingHandler
from ..service import Service


class JSONService(Service):
    name = "json"
    env = "JSON"
    defaults = {"batch_size": 5000, "max_batch_bytes": 5 * 1024 * 1024, "compression": "none"}

    def validate(self) -> None:
        self.require("url")


class JSONHandler(BatchingHandler):
    """POSTs batches of JSON events to ``url``."""

    service_class = JSONService
