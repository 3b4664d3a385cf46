"""Per-service validation and decoding, following the server rules in protocols.md.

Each service is one small class: ``routes`` maps an exact path to ``{method: method_name}``,
and each handler method takes a :class:`Request` and returns a :class:`Reply`. The classes
know nothing about sockets, so the server can wrap every one of them the same way.
"""

import hashlib
import json
import math
import random
import re
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

from .store import Row, Store

__all__ = [
    "BodyTooLarge",
    "GenericJSON",
    "InitialState",
    "Kronos",
    "Panoply",
    "Reply",
    "Request",
    "Samsara",
]


@dataclass
class Request:
    method: str
    path: str  # the path only, without query string
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    body: bytes
    max_decoded_bytes: int  # cap for decompressed bodies (gzip bombs)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)


class BodyTooLarge(Exception):
    """A decompressed body went over the cap; the server answers 413."""


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status, json.dumps(obj).encode("ascii"), "application/json")


def error_reply(status: int, message: str) -> Reply:
    """The generic error shape, borrowed from Samsara's ingestion API."""
    return json_reply(status, {"status": "ERROR", "message": message})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: Any) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity (the real servers' parsers refuse them).

    Every failure is a ValueError so callers need one except clause; RecursionError from
    absurdly nested input is folded in because it is just another malformed body.
    """
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress every gzip member, refusing to produce more than ``limit`` bytes."""
    out: List[bytes] = []
    total = 0
    while True:
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise ValueError(f"invalid gzip body: {exc}") from None
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(f"decompressed body is over {limit} bytes")
        out.append(chunk)
        if not d.eof:
            raise ValueError("invalid gzip body: truncated")
        data = d.unused_data
        if not data.strip(b"\x00"):  # gzip tolerates zero padding after the last member
            return b"".join(out)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if _is_int(value):
        return True  # math.isfinite would overflow on a huge int
    return isinstance(value, float) and math.isfinite(value)


def _source(value: Any) -> Optional[str]:
    if isinstance(value, str):
        return value or None
    if _is_int(value) or isinstance(value, float):
        return str(value)
    return None


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- Samsara

_SAMSARA_CT = re.compile(r"^application/(.+\+)?json")
_LONG = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)


class Samsara:
    """samsara ingestion-api: ``POST /v1/events``, ``GET /v1/api-status``."""

    name = "samsara"
    routes = {"/v1/events": {"POST": "post_events"}, "/v1/api-status": {"GET": "get_status"}}

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_status(self, req: Request) -> Reply:
        return json_reply(200, {"status": "OK"})

    def post_events(self, req: Request) -> Reply:
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
        return Reply(202)

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
            ("timestamp", _is_int, "an integer (ms since epoch)"),
            ("sourceId", lambda v: isinstance(v, str), "a string"),
            ("eventName", lambda v: isinstance(v, str), "a string"),
        ):
            if key not in event:
                errors.append(f"{key}: missing required key")
            elif not ok(event[key]):
                errors.append(f"{key}: must be {want}")
        return "; ".join(errors) if errors else "OK"


# --------------------------------------------------------------------------- Initial State

IS_MAX_KEY_LENGTH = 250


def _is_error(type_: str, message: str, status: int = 400) -> Reply:
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
    def _unauthorized(req: Request) -> Optional[Reply]:
        if not (req.headers.get("X-IS-AccessKey") or "").strip():
            return json_reply(401, {"message": "unauthorized"})
        return None

    def post_bucket(self, req: Request) -> Reply:
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

    def post_events(self, req: Request) -> Reply:
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
        if "epoch" in event and not _is_number(event["epoch"]):
            return "INVALID_PAYLOAD", "epoch must be a finite number (seconds since epoch)"
        return None


# --------------------------------------------------------------------------- Panoply

SQS_MAX_BODY_BYTES = 262144
_SQS_NS = "http://queue.amazonaws.com/doc/2012-11-05/"
_ATTR_NAME = re.compile(r"MessageAttribute\.([0-9]+)\.Name", re.ASCII)


def _sqs_error(status: int, code: str, message: str) -> Reply:
    xml = (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{_SQS_NS}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message><Detail/></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return Reply(status, xml.encode("utf-8"), "text/xml")


class Panoply:
    """Panoply's SDK: an unsigned SQS ``SendMessage`` to any queue path.

    The form is decoded the standard way, so the official client's raw newlines and a
    standards-following client's ``%0A`` give the same MessageBody; a raw ``+`` in the
    official client's secret decodes to a space, which is fine since only presence is
    checked. The secret is never stored: only the records are.
    """

    name = "panoply"
    routes: Dict[str, Dict[str, str]] = {}  # matched by Content-Type, see server.py

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def wants(content_type: Optional[str]) -> bool:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        return media == "application/x-www-form-urlencoded"

    def post(self, req: Request) -> Reply:
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            return _sqs_error(400, "MalformedQueryString", "The request body is not valid UTF-8.")
        form = parse_qs(text, keep_blank_values=True)

        def first(name: str) -> Optional[str]:
            values = form.get(name)
            return values[0] if values else None

        action = first("Action")
        if action is None:
            return _sqs_error(
                400, "MissingAction", "The request must contain the parameter Action."
            )
        if action != "SendMessage":
            return _sqs_error(
                400, "InvalidAction", f"The action {action} is not valid for this endpoint."
            )
        attrs = {}
        for name, values in form.items():
            m = _ATTR_NAME.fullmatch(name)
            if m:
                attrs[values[0]] = first(f"MessageAttribute.{m.group(1)}.Value.StringValue")
        if not attrs.get("key") or not attrs.get("secret"):
            return _sqs_error(
                403, "AccessDenied", "Access to the resource is denied: missing key or secret."
            )
        if len(req.body) > SQS_MAX_BODY_BYTES:
            return _sqs_error(
                400,
                "InvalidParameterValue",
                "One or more parameters are invalid. Reason: "
                f"Message must be shorter than {SQS_MAX_BODY_BYTES} bytes.",
            )
        message = first("MessageBody")
        if not message:
            return _sqs_error(
                400, "MissingParameter", "The request must contain the parameter MessageBody."
            )
        rows = []
        for i, chunk in enumerate(message.split("\n\n")):
            if not chunk.strip():
                continue
            try:
                record = loads(chunk)
            except ValueError as exc:
                return _sqs_error(400, "InvalidParameterValue", f"record {i} is not JSON: {exc}")
            if not isinstance(record, dict) or not isinstance(record.get("__table"), str):
                return _sqs_error(
                    400,
                    "InvalidParameterValue",
                    f"record {i} must be a JSON object with a string __table",
                )
            rows.append(
                Row(self.name, _source(record.get("sourceId")), record["__table"], None, record)
            )
        if not rows:
            return _sqs_error(400, "InvalidParameterValue", "MessageBody holds no records.")
        self.store.insert(rows)
        md5 = hashlib.md5(message.encode("utf-8"), usedforsecurity=False).hexdigest()
        xml = (
            f'<?xml version="1.0"?><SendMessageResponse xmlns="{_SQS_NS}"><SendMessageResult>'
            f"<MessageId>{uuid.uuid4()}</MessageId><MD5OfMessageBody>{md5}</MD5OfMessageBody>"
            f"</SendMessageResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></SendMessageResponse>"
        )
        return Reply(200, xml.encode("utf-8"), "text/xml")


# --------------------------------------------------------------------------- Kronos

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
        "/1.0/index": {"GET": "index"},
    }

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _reply(status: int, obj: Dict[str, Any], started: float) -> Reply:
        obj["@took"] = f"{(time.monotonic() - started) * 1000:f}ms"
        return json_reply(status, obj)

    def _fail(self, message: str, started: float) -> Reply:
        return self._reply(400, {"@errors": [message], "@success": False}, started)

    @staticmethod
    def _body(req: Request, allow_empty: bool = False) -> Dict[str, Any]:
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
            raise _KronosError(f"InvalidNamespace({_short_repr(ns)},)")
        return ns

    def put(self, req: Request) -> Reply:
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
                errors.append(f"InvalidStreamName({_short_repr(stream)},)")
                continue
            if not isinstance(events, list):
                errors.append(f"InvalidEvents({_short_repr(stream)},)")
                continue
            inserted = 0
            for event in events:
                if not isinstance(event, dict):
                    errors.append(f"InvalidEvent({_short_repr(event)},)")
                    continue
                t = event.get("@time", _MISSING)
                if t is _MISSING:
                    t = now
                try:
                    if not _is_int(t):
                        raise ValueError
                    event_id = time_uuid(t)
                except ValueError:
                    errors.append(f"InvalidEventTime({_short_repr(t)},)")
                    continue
                event["@time"] = t
                event["@id"] = str(event_id)
                rows.append(
                    Row(self.name, _source(event.get("sourceId")), stream, namespace, event)
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
        stream = body.get("stream")
        if not valid_stream(stream):
            raise _KronosError(f"InvalidStreamName({_short_repr(stream)},)")
        namespace = self._namespace(body)
        end_time = body.get("end_time")
        if not _is_int(end_time):
            raise _KronosError("end_time must be an integer kronos time.")
        if body.get("start_id") is not None:
            try:
                start = _id_key(uuid.UUID(str(body["start_id"])))
            except ValueError:
                raise _KronosError("start_id must be an event @id.") from None

            # get resumes *after* the last id seen; delete removes from that id on.
            def after_start(key: Tuple[int, bytes]) -> bool:
                return key >= start if for_delete else key > start

        elif _is_int(body.get("start_time")):
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

    def get(self, req: Request) -> Reply:
        started = time.monotonic()
        try:
            body = self._body(req)
            _, rows = self._select(body, for_delete=False)
            order = body.get("order", "ascending")
            if order not in ("ascending", "descending"):
                raise _KronosError('order must be "ascending" or "descending".')
            limit = body.get("limit")
            if limit is not None and not _is_int(limit):
                raise _KronosError("limit must be an integer.")
        except _KronosError as exc:
            return self._fail(exc.message, started)
        if order == "descending":
            rows.reverse()
        if limit is not None:
            rows = rows[: max(limit, 0)]
        lines = b"".join(json.dumps(r["event"]).encode("ascii") + b"\r\n" for r in rows)
        return Reply(200, lines, "application/json")

    def delete(self, req: Request) -> Reply:
        started = time.monotonic()
        try:
            stream, rows = self._select(self._body(req), for_delete=True)
        except _KronosError as exc:
            return self._fail(exc.message, started)
        deleted = self.store.delete(r["id"] for r in rows)
        return self._reply(
            200, {stream: {"memory": {"num_deleted": deleted}}, "@success": True}, started
        )

    def streams(self, req: Request) -> Reply:
        started = time.monotonic()
        try:
            namespace = self._namespace(self._body(req, allow_empty=True))
        except _KronosError as exc:
            return self._fail(exc.message, started)
        names = self.store.channels(self.name, namespace)
        return Reply(200, "".join(n + "\r\n" for n in names).encode("utf-8"), "text/plain")

    def index(self, req: Request) -> Reply:
        return self._reply(
            200,
            {"service": "kronosd", "version": "loghandlers-collector", "@success": True},
            time.monotonic(),
        )


# --------------------------------------------------------------------------- generic JSON

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

    def post(self, req: Request) -> Reply:
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
            Row(self.name, _source(e.get("sourceId")), channel, None, e) for e in events
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


SERVICES = (Samsara, InitialState, Kronos, GenericJSON, Panoply)
