"""samsara-sdk's ``SamsaraClient``, on the loghandlers pipeline.

Migrating is one changed import (``from samsara_sdk import SamsaraClient`` and
``from samsara_sdk.helpers import current_time_millis``)::

    from loghandlers.clients.samsara import SamsaraClient, current_time_millis

    client = SamsaraClient(url="http://samsara.internal:9000/", sourceId="device-7")
    client.record_event(eventName="user.logged", color="blue")     # buffered
    client.publish_events([{"eventName": "user.logged", "sourceId": "device-7",
                            "timestamp": current_time_millis()}])   # sent now

The client owns a :class:`~loghandlers.SamsaraHandler` attached to no logger:
``record_event`` hands it a finished event (``handler.submit``), ``publish_events`` has its
worker send a batch now and waits for the outcome (``handler.export_now``). So, unlike the
SDK, an error answer never kills the sending thread, 5xx/429 and network errors are retried
(honouring ``Retry-After``) and then spooled and replayed, and whatever is buffered is
delivered (or spooled) at interpreter exit without a ``close()``.

SDK options (milliseconds, as the SDK) map to the handler's: ``publish_interval`` ->
``flush_interval``, ``send_timeout`` -> ``timeout``, ``max_buffer_size`` ->
``max_queue_size``, ``min_buffer_size`` -> ``min_batch_size``, ``sourceId`` ->
``source_id``, ``compression`` ``"gzip"``/``"none"``/``None``. Any handler option works
too (``spool_dir``, ``retries``, ``close_timeout``...), as do ``LOGHANDLERS_SAMSARA_*``
variables for every option not given.

Threading: every method may be called from any thread; the client holds no lock of its
own (the handler's buffer append is atomic) and runs no user code.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping

from ..exporter import ExportResult
from ..services.samsara import SamsaraHandler
from ..status import Callback, Event, HandlerStats
from ._shared import given, merge_options

API_PATH = "/v1/events"
#: the SDK's defaults (milliseconds) for the options it names; see SamsaraClient
DEFAULT_CONFIG: dict[str, Any] = {
    "start_publishing_thread": True,
    "publish_interval": 30000,
    "max_buffer_size": 10000,
    "min_buffer_size": 100,
    "send_timeout": 30000,
    "compression": "gzip",
}
#: with start_publishing_thread=False: no timed flush (a year), as the SDK without a thread
_NO_TIMER_SECONDS = 365 * 24 * 3600.0
_UNSET: Any = object()


def current_time_millis() -> int:
    """Milliseconds since the epoch, as Samsara's ``timestamp`` field wants them."""
    return int(time.time() * 1000)


class InvalidEvent(ValueError):
    """An event without a string ``eventName``/``sourceId`` or an integer ``timestamp`` >= 0
    (the SDK's schema, which the ingestion API enforces too)."""


class InvalidConfiguration(ValueError):
    """A SamsaraClient option the client can't work with (no ``url``, a bad value...)."""


class PublishError(RuntimeError):
    """``publish_events`` could not store every event now.

    ``result`` is the pipeline's :class:`~loghandlers.exporter.ExportResult`: ``outcome``
    ``"rejected"`` or ``"partial"`` (the server refused events for good; ``reasons`` holds
    its per-event reasons, and with ``"partial"`` the valid events *were* stored),
    ``"spooled"`` (unreachable after the retries: kept on disk and replayed later, so don't
    publish them again), ``"pending"`` (still being sent when the wait ended; they will be
    delivered or spooled) or ``"failed"`` (undeliverable and no ``spool_dir``: lost).
    A ``RuntimeError``, like what the SDK raises on any error answer.
    """

    def __init__(self, result: ExportResult):
        self.result = result
        what = {
            "rejected": "the server refused them",
            "partial": "the server refused some; the others were stored",
            "spooled": "unreachable: kept on disk and replayed later (do not publish again)",
            "pending": "still being sent: they will be delivered or spooled (do not publish again)",
            "failed": "undeliverable and no spool_dir: lost",
        }.get(result.outcome, result.outcome)
        reasons = "; ".join(result.reasons[:5])
        text = f"publish_events: {what} ({result.delivered} delivered, {result.rejected} rejected"
        text += f", HTTP {result.status})" if result.status is not None else ")"
        super().__init__(f"{text}: {reasons}" if reasons else text)

    @property
    def outcome(self) -> str:
        return self.result.outcome

    @property
    def reasons(self) -> tuple:
        """The server's reasons (for a per-event 400, ``"event N: <reason>"``)."""
        return self.result.reasons

    @property
    def status(self) -> int | None:
        return self.result.status


def validate_event(event: Any) -> None:
    """The SDK's schema: raise :class:`InvalidEvent` naming every problem."""
    if not issubclass(type(event), Mapping):  # type(): a poisoned __class__ can't raise
        raise InvalidEvent(f"Invalid event found: expected a dict, got {type(event).__name__}")
    errors: dict = {}
    for name in ("eventName", "sourceId"):
        if name not in event:
            errors[name] = ["required field"]
        elif not issubclass(type(event[name]), str):
            errors[name] = ["must be of string type"]
    stamp = event.get("timestamp")
    if "timestamp" not in event:
        errors["timestamp"] = ["required field"]
    elif issubclass(type(stamp), bool) or not issubclass(type(stamp), int):
        errors["timestamp"] = ["must be of integer type"]
    elif stamp < 0:
        errors["timestamp"] = ["min value is 0"]
    if errors:
        raise InvalidEvent(f"Invalid event found, errors:\n{errors}")


def _seconds(option: str, millis: Any) -> float | None:
    if millis is None:
        return None
    if isinstance(millis, bool) or not isinstance(millis, (int, float)) or millis < 0:
        raise InvalidConfiguration(f"{option} must be a number of milliseconds >= 0")
    return None if millis == 0 else millis / 1000.0  # the SDK: 0 means its default


def _compression(value: Any) -> str | None:
    if value is _UNSET:
        return None
    if value is None or value == "none":
        return "none"
    if value == "gzip":
        return "gzip"
    raise InvalidConfiguration(f'compression must be "gzip", "none" or None, not {value!r}')


class SamsaraClient:
    """samsara-sdk's client: ``record_event`` buffers, ``publish_events`` sends now.

    Differences from the SDK (each on purpose, see the README): options not given take the
    handler's defaults (a 1 s ``flush_interval`` and ``min_batch_size`` 1 instead of 30 s
    and 100 events, so events arrive sooner) and ``LOGHANDLERS_SAMSARA_*`` variables;
    ``compression="none"`` works; ``sourceId`` defaults to ``"<hostname>:<pid>"``; a
    ``timestamp`` of 0 is kept (the SDK replaces any falsy one).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        sourceId: str | None = None,  # noqa: N803 (the SDK's name)
        start_publishing_thread: bool = True,
        publish_interval: float | None = None,
        max_buffer_size: int | None = None,
        min_buffer_size: int | None = None,
        send_timeout: float | None = None,
        compression: Any = _UNSET,
        send_client_stats: bool = False,
        **options: Any,
    ):
        sdk = given(
            url=url,
            source_id=sourceId,
            flush_interval=_seconds("publish_interval", publish_interval),
            timeout=_seconds("send_timeout", send_timeout),
            max_queue_size=max_buffer_size,
            min_batch_size=min_buffer_size,
            compression=_compression(compression),
        )
        if min_buffer_size is not None:
            most = DEFAULT_CONFIG["max_buffer_size"] if max_buffer_size is None else max_buffer_size
            if min_buffer_size == 0 or min_buffer_size > most:
                sdk["min_batch_size"] = 1  # as the SDK
        if not start_publishing_thread:
            # nothing is sent until publish_events/flush/close (or the buffer runs deep)
            sdk["flush_interval"] = _NO_TIMER_SECONDS
            options.pop("flush_interval", None)
        del send_client_stats  # accepted, as the SDK accepts it, and unsupported there too
        try:
            self._handler = SamsaraHandler(**merge_options(sdk, options))
        except ValueError as exc:
            raise InvalidConfiguration(str(exc)) from None

    # ----------------------------------------------------------------- the SDK's API
    def record_event(self, **event: Any) -> None:
        """Buffer one event. ``sourceId`` (when missing or empty) and ``timestamp`` (when
        missing or None) are filled in as the SDK does; then the SDK's schema is checked
        (:class:`InvalidEvent`). Sent by the handler's worker with the next batch."""
        if not event.get("sourceId"):
            event["sourceId"] = self._handler.source_id
        if event.get("timestamp") is None:
            event["timestamp"] = current_time_millis()
        validate_event(event)
        self._handler.submit(event)

    def publish_events(self, events: Iterable[Mapping[str, Any]]) -> bool:
        """Send ``events`` now, as they are (no filling in, as the SDK), in one request
        with the handler's retries; ``True`` once the server stored them all.

        Raises :class:`PublishError` (a ``RuntimeError``) with the outcome and the
        server's reasons otherwise, and :class:`InvalidEvent` if an item is not a dict.
        Blocks at most the handler's ``timeout`` x (``retries`` + 1) plus backoff.
        """
        batch = []
        for event in events:
            if not issubclass(type(event), Mapping):
                raise InvalidEvent(f"Invalid event found: expected a dict, got {type(event)}")
            batch.append(dict(event))
        if not batch:
            return True
        result = self._handler.export_now(batch)
        if result.outcome == "delivered":
            return True
        raise PublishError(result)

    # ----------------------------------------------------------------- ours
    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now; True once delivered or spooled (False if
        ``timeout`` ran out first). With ``start_publishing_thread=False`` this (or
        ``close()``, or interpreter exit) is what sends ``record_event``'s events."""
        return self._handler.flush(timeout)

    def _flush_buffer(self) -> None:
        """The SDK's (private) name for a synchronous publish of the buffer; scripts that
        drive the SDK with ``start_publishing_thread=False`` call it."""
        self.flush()

    def close(self, timeout: float | None = None) -> None:
        """Drain within ``close_timeout`` (or ``timeout``), spool the rest, stop. Optional:
        interpreter exit does the same."""
        self._handler.close(timeout)

    def stats(self) -> HandlerStats:
        """The handler's counters (see ``BatchingHandler.stats``)."""
        return self._handler.stats()

    def on(self, event: Event, callback: Callback) -> None:
        """``callback(info)`` on "send", "flush" or "error" (see ``BatchingHandler.on``)."""
        self._handler.on(event, callback)

    @property
    def handler(self) -> SamsaraHandler:
        """The service handler this client feeds (for its options and ``stats()``)."""
        return self._handler

    def __enter__(self) -> SamsaraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SamsaraClient via {self._handler!r}>"
