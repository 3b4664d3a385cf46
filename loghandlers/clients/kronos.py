"""pykronos's ``KronosClient`` and time helpers, on the loghandlers pipeline (Python 3).

Migrating is one changed import (``from pykronos.client import ...`` and
``from pykronos.common.time import ...``)::

    from loghandlers.clients.kronos import (ID_FIELD, TIMESTAMP_FIELD, KronosClient,
                                            ResultOrder, datetime_to_kronos_time)

    kc = KronosClient("http://localhost:8151", namespace="kronos")
    kc.put({"yourproduct.website.clicks": [{"user": 40, "num_clicks": 7}]})
    for event in kc.get("yourproduct.website.clicks", start, end):
        ...

The write side goes through a :class:`~loghandlers.KronosHandler` per namespace, attached
to no logger: a blocking ``put`` has the handler's worker send the events now and returns
the server's reply (``handler.export_now``); a non-blocking one buffers them
(``handler.submit``). Either way retries, ``Retry-After``, spool and replay, fork handling
and the drain at interpreter exit apply, where pykronos's non-blocking thread dies on the
first error and loses what is queued at exit. Events are sent as given, plus ``@library``
(naming loghandlers) and an ``@time`` where missing, as pykronos does.

The read side (``get``, ``get_streams``, ``infer_schema``, ``delete``, ``index``) is
direct HTTP through a ``requests`` session, always with a timeout (the handler's
``timeout`` option, default 30 s, or the call's ``timeout``).

Threading: every method may be called from any thread. Each thread (and each forked
process) gets its own ``requests`` session; no lock is held while user code runs.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import threading
import time
from typing import Any, Iterator, Mapping

import requests

from ..services.kronos import LIBRARY, STREAM, KronosHandler, kronos_time
from ._shared import HandlerSet

ERRORS_FIELD = "@errors"
ID_FIELD = "@id"
LIBRARY_FIELD = "@library"
SUCCESS_FIELD = "@success"
TIMESTAMP_FIELD = "@time"

_DEFAULT_CHUNK_SIZE = 131072  # 128 KiB, as pykronos
_UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
#: get() gives up after this many broken attempts in a row (pykronos: 10)
_GET_ATTEMPTS = 10


class ResultOrder:
    """The order ``get`` returns events in (by ``@id``, which sorts by ``@time``)."""

    ASCENDING = "ascending"
    DESCENDING = "descending"


class KronosClientError(Exception):
    """A Kronos request failed: a bad status, the server's ``@errors``, or a timeout.
    ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- time helpers


def datetime_to_epoch_time(dt: datetime.datetime | datetime.date) -> float:
    """Seconds since the epoch; a naive datetime (or a date) is taken as UTC."""
    if not isinstance(dt, datetime.datetime):
        dt = datetime.datetime(dt.year, dt.month, dt.day)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_UTC)
    return (dt - EPOCH).total_seconds()


def datetime_to_kronos_time(dt: datetime.datetime | datetime.date) -> int:
    """Kronos time (100 ns units since the epoch), exact to the microsecond; a naive
    datetime (or a date) is taken as UTC, an aware one converted."""
    if not isinstance(dt, datetime.datetime):
        dt = datetime.datetime(dt.year, dt.month, dt.day)
    return kronos_time(dt, 0.0)


def kronos_time_to_datetime(time: int) -> datetime.datetime:
    """An aware UTC datetime, exact to the microsecond (pykronos drops the fraction)."""
    return EPOCH + datetime.timedelta(microseconds=time // 10)


def epoch_time_to_kronos_time(time: float) -> int:
    """Seconds since the epoch (int or float) -> kronos time."""
    if isinstance(time, int):
        return time * 10**7
    return int(time * 1e7)


def kronos_time_to_epoch_time(time: int) -> float:
    """Kronos time -> seconds since the epoch, with the fraction (pykronos truncates)."""
    return time / 1e7


def kronos_time_now() -> int:
    return epoch_time_to_kronos_time(time_now())


def timedelta_to_kronos_time(td: datetime.timedelta) -> int:
    """A duration in kronos units (100 ns)."""
    return (td.days * 86400 + td.seconds) * 10**7 + td.microseconds * 10


def time_now() -> float:
    return time.time()


def _to_kronos_time(value: Any, name: str) -> Any:
    """A time argument or ``@time`` value: ints as they are, datetimes and ISO 8601
    strings converted (naive = UTC); anything else is left for the server to judge."""
    kind = type(value)  # not isinstance(): a poisoned __class__ must not raise
    if issubclass(kind, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from None
        return kronos_time(parsed, 0.0)
    if issubclass(kind, datetime.datetime):
        return kronos_time(value, 0.0)
    if issubclass(kind, datetime.date):
        return datetime_to_kronos_time(value)
    return value


# --------------------------------------------------------------------------- the client


def _build(url: str | None, options: dict, namespace: str | None) -> KronosHandler:
    """One namespace's handler (a plain function: no reference back to the client).
    ``None``: the client's own namespace (``namespace=``, or the environment's)."""
    options = dict(options)
    if url is not None:
        options["url"] = url
    if namespace is not None:
        options["namespace"] = namespace
    return KronosHandler(**options)


class KronosClient:
    """pykronos's client. ``blocking=True`` (the default): ``put`` sends now and returns the
    server's reply; ``blocking=False``: ``put`` buffers and a background worker sends
    every ``sleep_block`` seconds (``flush()`` waits for it)."""

    def __init__(
        self,
        http_url: str | None = None,
        blocking: bool = True,
        sleep_block: float = 0.1,
        namespace: str | None = None,
        chunk_size: int = _DEFAULT_CHUNK_SIZE,
        **options: Any,
    ):
        if not blocking and options.get("flush_interval") is None:
            options["flush_interval"] = sleep_block
        self._blocking = bool(blocking)
        self._chunk_size = chunk_size
        url = http_url.rstrip("/") if http_url else None
        own = namespace
        built_options = dict(options)

        def build(ns: str | None) -> KronosHandler:
            return _build(url, built_options, own if ns is None else ns)

        self._handlers: HandlerSet[KronosHandler] = HandlerSet(build)
        # the handler of the client's own namespace is built now (bad options are an error
        # here, not at put()) and kept under None; other namespaces get theirs on first use
        settings = self._handlers.get(None).settings
        self.namespace = namespace or settings.namespace
        self._url = settings.url.rstrip("/")
        self._timeout = settings.timeout
        self._verify = settings.verify
        self._local = threading.local()

    # ----------------------------------------------------------------- write side
    def put(self, event_dict: Mapping[str, list], namespace: str | None = None) -> Any:
        """Insert ``{stream: [event, ...], ...}``. Each event is copied and sent as given,
        plus ``@library`` and, where missing, an ``@time`` of now (one value per call); an
        ``@time`` that is a datetime (naive = UTC) or an ISO 8601 string is converted.

        Blocking: returns the server's reply (``{stream: {backend: {"num_inserted": n}},
        "@success": true, "@took": ...}``); raises :class:`KronosClientError` with the
        server's ``@errors`` when it refused events (the others are stored, as the server
        does) or the whole request. If the server can't be reached within the retries, the
        events are kept on disk and replayed later: ``put`` then returns
        ``{"@success": false, "@pending": n, "@errors": [...]}`` (don't put them again).
        Non-blocking: returns None.
        """
        now = kronos_time_now()
        events = []
        for stream, stream_events in event_dict.items():
            for event in stream_events:
                event = _copy(event)
                if TIMESTAMP_FIELD not in event:
                    event[TIMESTAMP_FIELD] = now
                else:
                    event[TIMESTAMP_FIELD] = _to_kronos_time(event[TIMESTAMP_FIELD], "@time")
                event[LIBRARY_FIELD] = LIBRARY
                event[STREAM] = stream if type(stream) is str else str(stream)
                events.append(event)
        handler = self._handler_for(namespace)
        if not self._blocking:
            for event in events:
                handler.submit(event)
            return None
        if not events:
            return {SUCCESS_FIELD: True}
        result = handler.export_now(events)
        reply = result.reply_json
        if result.outcome in ("delivered", "partial") and isinstance(reply, dict):
            if not reply.get(SUCCESS_FIELD):
                raise KronosClientError(f"Encountered errors: {_errors(reply)}")
            return reply
        if result.outcome in ("rejected", "failed"):
            raise KronosClientError(
                f"Bad status code: {result.status}. {list(result.reasons)}", result.status
            )
        return {
            SUCCESS_FIELD: False,
            "@pending": len(events),
            ERRORS_FIELD: [
                f"not stored yet ({result.outcome}): the events are kept and sent later",
                *result.reasons,
            ],
        }

    def _handler_for(self, namespace: str | None) -> KronosHandler:
        if not namespace or namespace == self.namespace:
            return self._handlers.get(None)
        return self._handlers.get(namespace)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event put so far is delivered or spooled (False if ``timeout``
        ran out first)."""
        return self._handlers.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain within ``close_timeout`` (or ``timeout``), spool the rest, stop. Optional:
        interpreter exit does the same."""
        self._handlers.close(timeout)
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()

    def stats(self) -> dict:
        """Counters of every namespace's handler, added up."""
        return self._handlers.stats()

    @property
    def handler(self) -> KronosHandler:
        """The service handler of the client's own namespace."""
        return self._handlers.get(None)

    # ----------------------------------------------------------------- read side
    def index(self) -> Any:
        return self._request("GET", "/1.0/index")

    def get(
        self,
        stream: str,
        start_time: Any,
        end_time: Any,
        start_id: str | None = None,
        limit: int | None = None,
        order: str = ResultOrder.ASCENDING,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[dict]:
        """Yield the events of ``stream`` from ``start_time`` to ``end_time`` (both
        inclusive; datetimes, naive = UTC, ISO strings or kronos times), or after
        ``start_id``. A broken response is resumed after the last event seen (in either
        order, and never past ``limit``); a 4xx or a timeout raises
        :class:`KronosClientError`."""
        body: dict = {
            "stream": stream,
            "end_time": _to_kronos_time(end_time, "end_time"),
            "order": order,
        }
        if start_id is not None:
            body["start_id"] = start_id
        else:
            body["start_time"] = _to_kronos_time(start_time, "start_time")
        if limit is not None:
            body["limit"] = limit
        namespace = namespace or self.namespace
        if namespace is not None:
            body["namespace"] = namespace
        descending = order == ResultOrder.DESCENDING
        seen_at_edge: set = set()  # ids already yielded at the time we resume from
        failures = 0
        while True:
            try:
                with self._post("/1.0/events/get", body, stream=True, timeout=timeout) as reply:
                    for line in reply.iter_lines(chunk_size=self._chunk_size):
                        if not line:
                            continue
                        event = json.loads(line)
                        event_id = event.get(ID_FIELD)
                        if event_id in seen_at_edge:
                            continue
                        yield event
                        failures = 0
                        if limit is not None:
                            body["limit"] -= 1
                            if body["limit"] <= 0:
                                return
                        if descending:  # resume below this time, skipping what we had
                            if body["end_time"] != event.get(TIMESTAMP_FIELD):
                                seen_at_edge = set()
                                body["end_time"] = event.get(TIMESTAMP_FIELD)
                            seen_at_edge.add(event_id)
                        else:
                            body.pop("start_time", None)
                            body["start_id"] = event_id
                return
            except requests.Timeout:
                raise KronosClientError("Request timed out.") from None
            except (requests.RequestException, ValueError, KronosClientError) as exc:
                if isinstance(exc, KronosClientError) and (exc.status or 0) < 500:
                    raise  # the request itself is wrong: asking again won't help
                failures += 1
                if failures >= _GET_ATTEMPTS:
                    raise KronosClientError(f"get failed {failures} times: {exc}") from None
                time.sleep(min(2.0, failures * 0.1))

    def get_streams(self, namespace: str | None = None) -> Iterator[str]:
        """Yield the names of the streams in ``namespace``."""
        body = {}
        namespace = namespace or self.namespace
        if namespace is not None:
            body["namespace"] = namespace
        with self._post("/1.0/streams", body, stream=True) as reply:
            for line in reply.iter_lines(chunk_size=self._chunk_size):
                if line:
                    yield line.decode("utf-8")

    def infer_schema(self, stream: str, namespace: str | None = None) -> Any:
        """The server's JSON Schema (draft 4) for ``stream``, in ``reply["schema"]``."""
        return self._request(
            "POST",
            "/1.0/streams/infer_schema",
            {"stream": stream, "namespace": namespace or self.namespace},
        )

    def delete(
        self,
        stream: str,
        start_time: Any,
        end_time: Any,
        start_id: str | None = None,
        namespace: str | None = None,
    ) -> Any:
        """Delete the events of ``stream`` from ``start_time`` (or ``start_id``) to
        ``end_time``, both inclusive; returns the server's reply."""
        body: dict = {"stream": stream, "end_time": _to_kronos_time(end_time, "end_time")}
        if start_id:
            body["start_id"] = start_id
        else:
            body["start_time"] = _to_kronos_time(start_time, "start_time")
        namespace = namespace or self.namespace
        if namespace is not None:
            body["namespace"] = namespace
        return self._request("POST", "/1.0/events/delete", body)

    # ----------------------------------------------------------------- HTTP
    def _session(self) -> requests.Session:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # a forked child: a fresh pool
            local.session = requests.Session()
            local.pid = os.getpid()
        return local.session

    def _post(self, path: str, body: dict, stream: bool = False, timeout: float | None = None):
        reply = self._session().post(
            self._url + path,
            data=json.dumps(body),
            stream=stream,
            timeout=self._timeout if timeout is None else timeout,
            verify=self._verify,
        )
        if reply.status_code != 200:
            text = reply.text[:500]
            reply.close()
            raise KronosClientError(
                f"Bad status code: {reply.status_code}. {text}".strip(), reply.status_code
            )
        return reply

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        try:
            if method == "GET":
                reply = self._session().get(
                    self._url + path, timeout=self._timeout, verify=self._verify
                )
                if reply.status_code != 200:
                    raise KronosClientError(
                        f"Bad status code: {reply.status_code}.", reply.status_code
                    )
            else:
                reply = self._post(path, body or {})
            answer = reply.json()
        except requests.Timeout:
            raise KronosClientError("Request timed out.") from None
        except ValueError:
            raise KronosClientError("The reply is not JSON.") from None
        if isinstance(answer, dict) and not answer.get(SUCCESS_FIELD, True):
            raise KronosClientError(f"Encountered errors: {_errors(answer)}")
        return answer

    def __repr__(self) -> str:
        mode = "blocking" if self._blocking else "non-blocking"
        return f"<KronosClient {self._url} namespace={self.namespace!r} {mode}>"


def _copy(event: Any) -> dict:
    """pykronos deep-copies what it is given; an object that can't be copied is kept."""
    if not issubclass(type(event), Mapping):  # type(): a poisoned __class__ can't raise
        raise TypeError(f"a Kronos event must be a dict, not {type(event).__name__}")
    try:
        return copy.deepcopy(dict(event))
    except Exception:
        return dict(event)


def _errors(answer: Mapping) -> list:
    """Every ``@errors`` entry in a reply, at any depth (what pykronos meant to collect)."""
    found: list = []
    for key, value in answer.items():
        if key == ERRORS_FIELD:
            found.extend(value if isinstance(value, list) else [value])
        elif isinstance(value, Mapping):
            found.extend(_errors(value))
    return found
