"""kronosd as the collector serves it: put, get, delete, streams, infer_schema and index
under ``/1.0/``.

Event ids are uuid1-shaped with the event's Kronos time (100 ns since the Unix epoch) in the
time field, and get/delete order and bound by (time, id bytes), as kronosd does.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from typing import Any, Dict, List, Tuple

from .base import ServiceReply, ServiceRequest, is_int, json_reply, loads, short_repr, source_id
from .store import Row, Store

__all__ = [
    "KRONOS_DEFAULT_NAMESPACE",
    "KRONOS_MAX_STREAM_LENGTH",
    "UUID_EPOCH_OFFSET",
    "Kronos",
    "infer_schema",
    "kronos_now",
    "time_uuid",
    "valid_stream",
]


KRONOS_DEFAULT_NAMESPACE = "kronos"
KRONOS_MAX_STREAM_LENGTH = 2048
UUID_EPOCH_OFFSET = 0x01B21DD213814000  # 100 ns intervals from 1582-10-15 to 1970-01-01
# fullmatch, not `$`: kronosd's `$` would also accept a trailing newline, which would then
# corrupt the one-name-per-line /1.0/streams reply.
_STREAM = re.compile(r"[\w\-.]+", re.ASCII)
_MISSING = object()


def kronos_now() -> int:
    """Kronos time: integer count of 100 ns intervals since the Unix epoch."""
    return int(time.time() * 1e7)


def time_uuid(kronos_time: int) -> uuid.UUID:
    """A uuid1-shaped id whose time field is ``kronos_time``; the rest is random, as kronosd."""
    ts = kronos_time + UUID_EPOCH_OFFSET
    if not 0 <= ts < 1 << 60:
        raise ValueError("time out of the UUID range")
    clock = random.getrandbits(14)
    fields = (
        ts & 0xFFFFFFFF,
        (ts >> 32) & 0xFFFF,
        (ts >> 48) & 0x0FFF,
        clock >> 8,
        clock & 0xFF,
        random.getrandbits(48),
    )
    return uuid.UUID(fields=fields, version=1)


def _id_key(event_id: uuid.UUID) -> Tuple[int, bytes]:
    """kronosd orders ids by their time, then by their bytes."""
    return event_id.time - UUID_EPOCH_OFFSET, event_id.bytes


def valid_stream(name: Any) -> bool:
    return (
        isinstance(name, str)
        and len(name) <= KRONOS_MAX_STREAM_LENGTH
        and _STREAM.fullmatch(name) is not None
    )


JSON_SCHEMA_DRAFT_4 = "http://json-schema.org/draft-04/schema#"


class _SchemaNode:
    """What the values seen at one place in the events had in common (see infer_schema)."""

    def __init__(self) -> None:
        self.types: set = set()
        self.properties: Dict[str, _SchemaNode] = {}
        self.present: Dict[str, int] = {}  # how many of the objects seen had each property
        self.objects = 0
        self.items: _SchemaNode | None = None

    def add(self, value: Any) -> None:
        if value is None:
            self.types.add("null")
        elif isinstance(value, bool):
            self.types.add("boolean")
        elif isinstance(value, int):
            self.types.add("integer")
        elif isinstance(value, float):
            self.types.add("number")
        elif isinstance(value, str):
            self.types.add("string")
        elif isinstance(value, list):
            self.types.add("array")
            if self.items is None:
                self.items = _SchemaNode()
            for item in value:
                self.items.add(item)
        elif isinstance(value, dict):
            self.types.add("object")
            self.objects += 1
            for name, item in value.items():
                self.properties.setdefault(name, _SchemaNode()).add(item)
                self.present[name] = self.present.get(name, 0) + 1

    def schema(self) -> Dict[str, Any]:
        types = set(self.types)
        if "number" in types:
            types.discard("integer")  # every integer is a number
        out: Dict[str, Any] = {}
        if types:
            ordered = sorted(types)
            out["type"] = ordered[0] if len(ordered) == 1 else ordered
        if "object" in types:
            out["properties"] = {n: node.schema() for n, node in self.properties.items()}
            required = sorted(n for n, count in self.present.items() if count == self.objects)
            if required:  # draft 4: "required" must not be empty
                out["required"] = required
        if "array" in types and self.items is not None and self.items.types:
            out["items"] = self.items.schema()
        return out


def infer_schema(events: List[Any]) -> Dict[str, Any]:
    """A JSON Schema (draft 4) every one of ``events`` satisfies: each field's type(s)
    (``"integer"`` merged into ``"number"``), nested objects and array items alike, and
    ``"required"`` for the fields every event has. An empty stream gives an object schema
    without properties."""
    root = _SchemaNode()
    root.types.add("object")
    for event in events:
        root.add(event)
    return {"$schema": JSON_SCHEMA_DRAFT_4, **root.schema()}


class _KronosError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Kronos:
    """kronosd: put, get, delete, streams and index under ``/1.0/``.

    Rows keep the stream as ``channel`` and the namespace in the ``namespace`` column, so
    ``channel`` reads the same as the stream the client named.
    """

    name = "kronos"
    routes = {
        "/1.0/events/put": {"POST": "put"},
        "/1.0/events/get": {"POST": "get"},
        "/1.0/events/delete": {"POST": "delete"},
        "/1.0/streams": {"POST": "streams"},
        "/1.0/streams/infer_schema": {"POST": "infer_schema"},
        "/1.0/index": {"GET": "index"},
    }

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _reply(status: int, obj: Dict[str, Any], started: float) -> ServiceReply:
        obj["@took"] = f"{(time.monotonic() - started) * 1000:f}ms"
        return json_reply(status, obj)

    def _fail(self, message: str, started: float) -> ServiceReply:
        return self._reply(400, {"@errors": [message], "@success": False}, started)

    @staticmethod
    def _body(req: ServiceRequest, allow_empty: bool = False) -> Dict[str, Any]:
        if allow_empty and not req.body.strip():
            return {}
        try:
            body = loads(req.body)
        except ValueError:
            raise _KronosError("Request body must be valid JSON.") from None
        if not isinstance(body, dict):
            raise _KronosError("Request body must be a JSON object.")
        return body

    @staticmethod
    def _namespace(body: Dict[str, Any]) -> str:
        ns = body.get("namespace")
        if ns is None:
            return KRONOS_DEFAULT_NAMESPACE
        if not isinstance(ns, str) or not ns:
            raise _KronosError(f"InvalidNamespace({short_repr(ns)},)")
        return ns

    def put(self, req: ServiceRequest) -> ServiceReply:
        started = time.monotonic()
        try:
            body = self._body(req)
            namespace = self._namespace(body)
        except _KronosError as exc:
            return self._fail(exc.message, started)
        streams = body.get("events")
        if not isinstance(streams, dict):
            return self._fail('Request body must have an "events" object.', started)
        now = kronos_now()
        errors: List[str] = []
        result: Dict[str, Any] = {}
        rows = []
        for stream, events in streams.items():
            if not valid_stream(stream):
                errors.append(f"InvalidStreamName({short_repr(stream)},)")
                continue
            if not isinstance(events, list):
                errors.append(f"InvalidEvents({short_repr(stream)},)")
                continue
            inserted = 0
            for event in events:
                if not isinstance(event, dict):
                    errors.append(f"InvalidEvent({short_repr(event)},)")
                    continue
                t = event.get("@time", _MISSING)
                if t is _MISSING:
                    t = now
                try:
                    if not is_int(t):
                        raise ValueError
                    event_id = time_uuid(t)
                except ValueError:
                    errors.append(f"InvalidEventTime({short_repr(t)},)")
                    continue
                event["@time"] = t
                event["@id"] = str(event_id)
                rows.append(
                    Row(self.name, source_id(event.get("sourceId")), stream, namespace, event)
                )
                inserted += 1
            result[stream] = {"memory": {"num_inserted": inserted}}
        self.store.insert(rows)
        result["@success"] = not errors
        if errors:
            result["@errors"] = errors
        return self._reply(200, result, started)

    def _select(self, body: Dict[str, Any], for_delete: bool) -> Tuple[str, List[Any]]:
        """Events of one stream in (time, id) order, within the request's inclusive bounds."""
        if not valid_stream(body.get("stream")):
            raise _KronosError(f"InvalidStreamName({short_repr(body.get('stream'))},)")
        stream: str = body["stream"]
        namespace = self._namespace(body)
        if not is_int(body.get("end_time")):
            raise _KronosError("end_time must be an integer kronos time.")
        end_time: int = body["end_time"]
        if body.get("start_id") is not None:
            try:
                start = _id_key(uuid.UUID(str(body["start_id"])))
            except ValueError:
                raise _KronosError("start_id must be an event @id.") from None

            # get resumes *after* the last id seen; delete removes from that id on.
            def after_start(key: Tuple[int, bytes]) -> bool:
                return key >= start if for_delete else key > start

        elif is_int(body.get("start_time")):
            start_time = body["start_time"]

            def after_start(key: Tuple[int, bytes]) -> bool:
                return key[0] >= start_time

        else:
            raise _KronosError("start_time (an integer) or start_id is required.")
        selected = []
        for row in self.store.events(service=self.name, namespace=namespace, channel=stream):
            event = row["event"]
            try:
                key = _id_key(uuid.UUID(event["@id"]))
            except (KeyError, TypeError, ValueError):
                continue
            if after_start(key) and key[0] <= end_time:
                selected.append((key, row))
        selected.sort(key=lambda item: item[0])
        return stream, [row for _, row in selected]

    def get(self, req: ServiceRequest) -> ServiceReply:
        started = time.monotonic()
        try:
            body = self._body(req)
            _, rows = self._select(body, for_delete=False)
            order = body.get("order", "ascending")
            if order not in ("ascending", "descending"):
                raise _KronosError('order must be "ascending" or "descending".')
            limit = body.get("limit")
            if limit is not None and not is_int(limit):
                raise _KronosError("limit must be an integer.")
        except _KronosError as exc:
            return self._fail(exc.message, started)
        if order == "descending":
            rows.reverse()
        if limit is not None:
            rows = rows[: max(limit, 0)]
        lines = b"".join(json.dumps(r["event"]).encode("ascii") + b"\r\n" for r in rows)
        return ServiceReply(200, lines, "application/json")

    def delete(self, req: ServiceRequest) -> ServiceReply:
        started = time.monotonic()
        try:
            stream, rows = self._select(self._body(req), for_delete=True)
        except _KronosError as exc:
            return self._fail(exc.message, started)
        deleted = self.store.delete(r["id"] for r in rows)
        return self._reply(
            200, {stream: {"memory": {"num_deleted": deleted}}, "@success": True}, started
        )

    def streams(self, req: ServiceRequest) -> ServiceReply:
        started = time.monotonic()
        try:
            namespace = self._namespace(self._body(req, allow_empty=True))
        except _KronosError as exc:
            return self._fail(exc.message, started)
        names = self.store.channels(self.name, namespace)
        return ServiceReply(200, "".join(n + "\r\n" for n in names).encode("utf-8"), "text/plain")

    def infer_schema(self, req: ServiceRequest) -> ServiceReply:
        """``{"stream", "namespace"?}`` -> ``{"stream", "namespace", "schema", "@success"}``:
        the schema of every event stored in the stream (pykronos reads ``["schema"]``)."""
        started = time.monotonic()
        try:
            body = self._body(req)
            stream = body.get("stream")
            if not valid_stream(stream):
                raise _KronosError(f"InvalidStreamName({short_repr(stream)},)")
            namespace = self._namespace(body)
        except _KronosError as exc:
            return self._fail(exc.message, started)
        rows = self.store.events(service=self.name, namespace=namespace, channel=stream)
        schema = infer_schema([row["event"] for row in rows])
        reply = {"stream": stream, "namespace": namespace, "schema": schema, "@success": True}
        return self._reply(200, reply, started)

    def index(self, req: ServiceRequest) -> ServiceReply:
        return self._reply(
            200,
            {"service": "kronosd", "version": "loghandlers-collector", "@success": True},
            time.monotonic(),
        )
