"""The one place the benchmark reaches inside a handler, to time its worker's stages one by
one and to read its worker thread's CPU. Nothing else in ``benchmarks/`` touches private
attributes, so when the pipeline's internals move only this file follows them."""

from __future__ import annotations

import logging


def worker_native_id(handler: logging.Handler) -> int | None:
    """The OS thread id of the thread that drains ``handler`` (its ``listener``)."""
    return listener_native_id(getattr(handler, "listener", None))


def listener_native_id(listener) -> int | None:
    """The OS thread id of a ``QueueListener`` (ours or the stdlib's) once started."""
    thread = getattr(listener, "_thread", None)
    return getattr(thread, "native_id", None)


def convert_batch(handler, snapshots: list) -> list:
    """What the worker does to a batch of buffered snapshots before packing: the service's
    events (fields, ``Service.event``, ``freeze``)."""
    return handler._convert_batch(snapshots)


def fit_batch(handler, events: list) -> list:
    """``[(events, request), ...]``: the requests the worker would send for one batch."""
    return list(handler._exporter._fit(events))


def transport_of(handler):
    """The handler's HTTP transport (``compress`` and ``send``)."""
    return handler._transport
