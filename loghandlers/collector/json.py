"""The generic JSON endpoint: ``POST /json`` and ``/json/<channel>``.

Accepts what JSONHandler and most JSON log shippers send: an array, one object, or NDJSON
lines, optionally gzip-encoded.
"""

import re
from typing import Any, Dict, List
from urllib.parse import unquote

from .base import ServiceReply, ServiceRequest, error_reply, gunzip, json_reply, loads, source_id
from .store import Row, Store

__all__ = ["GenericJSON"]


_JSONISH = re.compile(
    r"(application/([\w.+-]+\+)?json|application/(x-)?ndjson|application/(x-)?json-?lines"
    r"|application/jsonl|text/json)\s*(;.*)?",
    re.IGNORECASE | re.DOTALL,
)


class GenericJSON:
    """``POST /json`` and ``/json/<channel>``: an array, an object, or NDJSON lines.

    The path below ``/json/`` becomes the channel, so one collector can keep several
    JSONHandler targets apart.
    """

    name = "json"
    routes = {"/json": {"POST": "post"}}
    prefix = "/json/"

    def __init__(self, store: Store) -> None:
        self.store = store

    def post(self, req: ServiceRequest) -> ServiceReply:
        if not _JSONISH.fullmatch((req.headers.get("Content-Type") or "").strip()):
            return error_reply(415, "Content-Type must be JSON (application/json or NDJSON)")
        body = req.body
        encoding = (req.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            try:
                body = gunzip(body, req.max_decoded_bytes)
            except ValueError as exc:
                return error_reply(400, str(exc))
        elif encoding != "identity":
            return error_reply(415, f"unsupported Content-Encoding: {encoding}")
        try:
            events = self._parse(body.decode("utf-8-sig"))
        except ValueError as exc:
            return error_reply(400, f"Invalid JSON body: {exc}")
        channel = None
        if req.path.startswith(self.prefix):
            channel = unquote(req.path[len(self.prefix) :]) or None
        self.store.insert(
            Row(self.name, source_id(e.get("sourceId")), channel, None, e) for e in events
        )
        return json_reply(200, {"accepted": len(events)})

    @staticmethod
    def _parse(text: str) -> List[Dict[str, Any]]:
        if not text.strip():
            return []
        try:
            doc = loads(text)
        except ValueError:
            if "\n" not in text.strip():
                raise
            doc = [loads(line) for line in text.splitlines() if line.strip()]
        events = doc if isinstance(doc, list) else [doc]
        for i, event in enumerate(events):
            if not isinstance(event, dict):
                raise ValueError(f"item {i} is not a JSON object")
        return events
