"""panoply-python-sdk's ``SDK``, on the loghandlers pipeline.

Migrating is one changed import (``import panoply``)::

    import loghandlers.clients.panoply as panoply

    conn = panoply.SDK("APIKEY", "APISECRET")
    conn.write("tablename", {"foo": "bar"})

``write`` sends exactly ``data`` plus the SDK's ``__table`` (nothing of ours: no
timestamp, level or source id), in the same SQS ``SendMessage`` form as the SDK. The
client owns a :class:`~loghandlers.PanoplyHandler` attached to no logger and hands it each
record (``handler.submit``): so unlike the SDK (a daemon thread that drops a failed batch
and whatever is queued at exit), failed sends are retried and then spooled and replayed,
a request never exceeds SQS's 256 KiB, a ``+`` in the secret survives, and what is
buffered is delivered (or spooled) at interpreter exit. Any handler option works as a
keyword argument (``url`` replaces the queue URL, e.g. for the local collector;
``spool_dir``, ``flush_interval``, ...), and ``LOGHANDLERS_PANOPLY_*`` variables apply to
every option not given (``LOGHANDLERS_PANOPLY_API_KEY``/``_API_SECRET`` stand in for the
credentials).

This module is also where the SDK's other public names live (the data-source framework),
so that ``import loghandlers.clients.panoply as panoply`` serves code written for either.

Threading: every method may be called from any thread; callbacks registered with ``on``
run on the handler's worker thread. The client holds no lock.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..services.panoply import PanoplyHandler
from ..status import EVENTS, Event, HandlerStats
from .panoply_datasource import DataSource, PanoplyException, validate_token  # noqa: F401

#: the events ``on`` accepts (status.EVENTS); "*" receives every event as ``fn(name, data)``


class SendError(Exception):
    """What ``on("error", fn)`` receives (the SDK passes the exception it caught): the
    reason, with ``kind`` (e.g. ``"http_500"``, ``"network"``) and ``events`` (how many
    records it concerns). Secrets are already blanked out of the text."""

    def __init__(self, info: Mapping[str, Any]):
        super().__init__(info.get("message", ""))
        self.kind = info.get("kind", "")
        self.events = info.get("events", 0)
        self.info = dict(info)


class SDK:
    """The Panoply SDK: ``write(table, data)`` buffers a record; ``on(name, fn)`` listens.

    ``apikey`` is ``ACCOUNT/KEY`` and ``apisecret`` the base64 secret, both as Panoply
    issues them (a malformed one is a ``ValueError`` that never shows its value).
    """

    def __init__(self, apikey: str | None = None, apisecret: str | None = None, **options: Any):
        if apikey is not None:
            options["api_key"] = apikey
        if apisecret is not None:
            options["api_secret"] = apisecret
        self._handler = PanoplyHandler(**options)
        self.apikey = self._handler.settings.api_key

    @property
    def qurl(self) -> str:
        """The queue URL the records go to (holds no secret)."""
        return self._handler.service.endpoint()

    def write(self, table: str, data: Mapping[str, Any]) -> None:
        """Buffer one record: a copy of ``data`` with ``"__table": table`` added. Sent within
        about ``flush_interval`` (1 s; the SDK: up to 2 s). Values JSON can't encode are
        written as the handlers write them (datetime -> ISO 8601, ...) where the SDK raised
        ``TypeError``. The copy is shallow: don't mutate nested values after writing."""
        if not issubclass(type(data), Mapping):  # type(): a poisoned __class__ can't raise
            raise TypeError(f"data must be a dict, not {type(data).__name__}")
        record = dict(data)
        record["__table"] = table
        self._handler.submit(record)

    def on(self, evname: str, handlerfn: Callable) -> SDK:
        """Call ``handlerfn`` on ``"send"`` (before each request: ``{"url", "events",
        "bytes"}``), ``"flush"`` (after a success: ``{"events", "status", "seconds"}``) or
        ``"error"`` (a :class:`SendError`); ``"*"`` gets every event as
        ``handlerfn(name, data)``. Returns the SDK, as the SDK's emitter does. Callbacks
        run on the worker thread; one that raises is reported, never fatal."""
        names: tuple[Event, ...] = EVENTS if evname == "*" else (evname,)  # type: ignore[assignment]
        for name in names:
            self._handler.on(name, _adapter(name, handlerfn, with_name=evname == "*"))
        return self

    # ----------------------------------------------------------------- ours
    def flush(self, timeout: float | None = None) -> bool:
        """Send what is buffered now; True once delivered or spooled (False if ``timeout``
        ran out first). The SDK has none: you had to sleep past its 2 s timer."""
        return self._handler.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain within ``close_timeout`` (or ``timeout``), spool the rest, stop. Optional:
        interpreter exit does the same."""
        self._handler.close(timeout)

    def stats(self) -> HandlerStats:
        """The handler's counters (see ``BatchingHandler.stats``)."""
        return self._handler.stats()

    @property
    def handler(self) -> PanoplyHandler:
        """The service handler this SDK object feeds."""
        return self._handler

    def __enter__(self) -> SDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<panoply SDK via {self._handler!r}>"


def _adapter(name: str, fn: Callable, with_name: bool) -> Callable[[dict], None]:
    """The handler's ``info`` dict, as the SDK's emitter passes it."""

    def call(info: dict) -> None:
        data: Any = SendError(info) if name == "error" else info
        if with_name:
            fn(name, data)
        else:
            fn(data)

    return call
