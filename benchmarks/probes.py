"""The one place the benchmark reaches inside a handler, to time its worker's stages one by
one and to read its worker thread's CPU. Nothing else in ``benchmarks/`` touches private
attributes, so when the pipeline's internals move only this file follows them."""

from __future__ import annotations

import logging


def worker_native_id(handler: logging.Handler) -> int | None:
    """The OS thread id of the thread that drains ``handler`` (ours or a QueueListener's)."""
    for owner in (getattr(handler, "listener", None), handler):
        thread = getattr(owner, "_thread", None)
        if thread is not None:
            return getattr(thread, "native_id", None)
    return None


def listener_native_id(listener) -> int | None:
    thread = getattr(listener, "_thread", None)
    return getattr(thread, "native_id", None)


def convert_one(handler, snapshot) -> dict:
    """What the worker does to one buffered snapshot before encoding: the service's event."""
    return handler._convert(snapshot)


def fit_batch(handler, events: list) -> list:
    """``[(events, request), ...]``: the requests the worker would send for one batch."""
    return list(handler._exporter._fit(events))


def transport_of(handler):
    """The handler's HTTP transport (``compress`` and ``send``)."""
    return handler._transport
