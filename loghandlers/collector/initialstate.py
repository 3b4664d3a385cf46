"""Initial State's events API as the collector serves it: ``POST /api/buckets``, ``/api/events``."""

import time
from typing import Any, Optional, Tuple

from .base import ServiceReply, ServiceRequest, is_number, json_reply, loads
from .store import Row, Store

__all__ = ["IS_MAX_KEY_LENGTH", "InitialState"]


IS_MAX_KEY_LENGTH = 250


def _is_error(type_: str, message: str, status: int = 400) -> ServiceReply:
    """ISStreamer only drops (instead of retrying) a 400 whose body has ``message.error``."""
    return json_reply(status, {"message": {"error": {"type": type_, "message": message}}})


class InitialState:
    """Initial State events API: ``POST /api/buckets`` and ``POST /api/events``.

    Events for a bucket that was never created are accepted: with ``use_async=True``
    ISStreamer sends the bucket creation on its own thread, so the first events POST can
    arrive before it. Buckets are still recorded so tests can assert the setup call.
    """

    name = "initialstate"
    routes = {"/api/buckets": {"POST": "post_bucket"}, "/api/events": {"POST": "post_events"}}

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _unauthorized(req: ServiceRequest) -> Optional[ServiceReply]:
        if not (req.headers.get("X-IS-AccessKey") or "").strip():
            return json_reply(401, {"message": "unauthorized"})
        return None

    def post_bucket(self, req: ServiceRequest) -> ServiceReply:
        denied = self._unauthorized(req)
        if denied:
            return denied
        try:
            body = loads(req.body)
        except ValueError as exc:
            return _is_error("INVALID_JSON", f"body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _is_error("INVALID_PAYLOAD", "body must be a JSON object")
        key = body.get("bucketKey")
        if key is None:
            key = (req.headers.get("X-IS-BucketKey") or "").strip() or None
        if not isinstance(key, str) or not key:
            return _is_error("MISSING_BUCKET_KEY", "bucketKey must be a non-empty string")
        name = body.get("bucketName", key)
        if not isinstance(name, str):
            return _is_error("INVALID_PAYLOAD", "bucketName must be a string")
        self.store.add_bucket(key, name, True)
        return json_reply(200, {})

    def post_events(self, req: ServiceRequest) -> ServiceReply:
        denied = self._unauthorized(req)
        if denied:
            return denied
        bucket = (req.headers.get("X-IS-BucketKey") or "").strip()
        if not bucket:
            return _is_error("MISSING_BUCKET_KEY", "the X-IS-BucketKey header is required")
        try:
            body = loads(req.body)
        except ValueError as exc:
            return _is_error("INVALID_JSON", f"body is not valid JSON: {exc}")
        events = [body] if isinstance(body, dict) else body
        if not isinstance(events, list):
            return _is_error("INVALID_PAYLOAD", "body must be a JSON array of events")
        now = time.time()
        rows = []
        for i, event in enumerate(events):
            problem = self._check(event)
            if problem:
                return _is_error(problem[0], f"event {i}: {problem[1]}")
            event.setdefault("epoch", now)
            rows.append(Row(self.name, None, bucket, None, event))
        self.store.insert(rows)
        return json_reply(200, {})

    @staticmethod
    def _check(event: Any) -> Optional[Tuple[str, str]]:
        if not isinstance(event, dict):
            return "INVALID_PAYLOAD", "must be a JSON object"
        key = event.get("key")
        if not isinstance(key, str) or not key:
            return "INVALID_PAYLOAD", "key must be a non-empty string"
        if len(key) > IS_MAX_KEY_LENGTH:
            return "KEY_TOO_LONG", f"key is longer than {IS_MAX_KEY_LENGTH} characters"
        if "value" not in event:
            return "INVALID_PAYLOAD", "value is required"
        if "epoch" in event and not is_number(event["epoch"]):
            return "INVALID_PAYLOAD", "epoch must be a finite number (seconds since epoch)"
        return None
