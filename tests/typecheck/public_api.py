"""A strictly typed program using loghandlers' public API: ``mypy --strict`` must pass on
it (tests/test_option_types.py runs it). Never executed."""

from __future__ import annotations

import logging

import loghandlers
from loghandlers import ExportResult, JSONHandler, KronosHandler, OTLPHandler, SamsaraHandler
from loghandlers.clients import initialstate, kronos, panoply, samsara
from loghandlers.status import HandlerStats


def on_error(report: dict[str, object]) -> None:
    print(report)


def use_handlers() -> None:
    handler = JSONHandler(url="http://127.0.0.1:9", spool_dir="", format="ndjson", retries=2)
    logging.getLogger("app").addHandler(handler)
    handler.on("error", on_error)
    delivered: bool = handler.flush(timeout=1.0)
    stats: HandlerStats = handler.stats()
    sent: int = stats["sent"]
    handler.submit({"message": "x"})
    result: ExportResult = handler.export_now([{"message": "y"}], timeout=1.0)
    held: bool = handler.held()
    handler.close()
    samsara_handler = SamsaraHandler(url="http://127.0.0.1:9", event_name="app.{level}")
    kronos_handler = KronosHandler(url="http://127.0.0.1:9", namespace="ns")
    otlp_handler = OTLPHandler(url="http://127.0.0.1:9", service_name="app")
    for each in (samsara_handler, kronos_handler, otlp_handler):
        each.close(timeout=0)
    print(delivered, sent, result.outcome, held, loghandlers.__version__)


def use_clients() -> None:
    print(initialstate, kronos, panoply, samsara)
