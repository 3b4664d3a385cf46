"""Samsara's ingestion API as the collector serves it: ``POST /v1/events``, ``GET /v1/api-status``.

A batch is a JSON array (optionally gzip-encoded); one bad event rejects the whole batch with
a per-event result list, as the real service does.
"""

import re
import time
from typing import Any, Optional

from .base import ServiceReply, ServiceRequest, error_reply, gunzip, is_int, json_reply, loads
from .store import Row, Store

__all__ = ["Samsara"]


_SAMSARA_CT = re.compile(r"^application/(.+\+)?json")
_LONG = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)


class Samsara:
    """samsara ingestion-api: ``POST /v1/events``, ``GET /v1/api-status``."""

    name = "samsara"
    routes = {"/v1/events": {"POST": "post_events"}, "/v1/api-status": {"GET": "get_status"}}

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_status(self, req: ServiceRequest) -> ServiceReply:
        return json_reply(200, {"status": "OK"})

    def post_events(self, req: ServiceRequest) -> ServiceReply:
        if not _SAMSARA_CT.match(req.headers.get("Content-Type") or ""):
            return error_reply(400, "Invalid format, content-type must be application/json")
        published = None
        raw_published = req.headers.get("X-Samsara-publishedTimestamp")
        if raw_published is not None:
            published = self._parse_long(raw_published)
            if published is None:
                return error_reply(400, "X-Samsara-publishedTimestamp must be a valid timestamp.")
        body = req.body
        if (req.headers.get("Content-Encoding") or "").strip().lower() == "gzip":
            try:
                body = gunzip(body, req.max_decoded_bytes)
            except ValueError as exc:
                return error_reply(400, str(exc))
        try:
            events = loads(body)
        except ValueError as exc:
            return error_reply(400, f"Invalid JSON body: {exc}")
        if not isinstance(events, list):
            return error_reply(400, "Body must be a JSON array of events")
        results = [self._check(e) for e in events]
        if any(r != "OK" for r in results):
            return json_reply(400, results)
        now_ms = int(time.time() * 1000)
        rows = []
        for e in events:
            e.setdefault("receivedAt", now_ms)
            if published is not None:
                e.setdefault("publishedAt", published)
            rows.append(Row(self.name, e["sourceId"], e["eventName"], None, e))
        self.store.insert(rows)
        if published is None:
            return json_reply(
                202,
                {
                    "status": "OK",
                    "warning": "X-Samsara-publishedTimestamp header missing; publishedAt not set",
                },
            )
        return ServiceReply(202)

    @staticmethod
    def _parse_long(text: str) -> Optional[int]:
        """Java's Long.parseLong: optional sign, ASCII digits, 64-bit range, nothing else."""
        if not _LONG.fullmatch(text):
            return None
        value = int(text)
        return value if -(2**63) <= value < 2**63 else None

    @staticmethod
    def _check(event: Any) -> str:
        if not isinstance(event, dict):
            return "event must be a JSON object"
        errors = []
        for key, ok, want in (
            ("timestamp", is_int, "an integer (ms since epoch)"),
            ("sourceId", lambda v: isinstance(v, str), "a string"),
            ("eventName", lambda v: isinstance(v, str), "a string"),
        ):
            if key not in event:
                errors.append(f"{key}: missing required key")
            elif not ok(event[key]):
                errors.append(f"{key}: must be {want}")
        return "; ".join(errors) if errors else "OK"
