"""Seam 2 (SEAMS.md): the pipeline without a logging.Handler in front."""

from __future__ import annotations

import time

from loghandlers import ExportResult
from tests.loopback import hang, ok, status


def ledger_balances(stats: dict) -> bool:
    parts = ("sent", "rejected", "failed", "spooled", "dropped", "queued", "in_flight")
    return stats["emitted"] == sum(stats[p] for p in parts)


def test_submit_ships_ready_made_events_through_the_buffer(server, make_handler):
    """Seam 2: submit() enqueues an event as is, counted in emitted."""
    handler = make_handler(url=server.url, flush_interval=0.05)
    handler.submit({"message": "ready", "sourceId": "me", "n": 1})
    assert handler.flush(timeout=10)
    assert server.events == [{"message": "ready", "sourceId": "me", "n": 1}]
    stats = handler.stats()
    assert stats["emitted"] == stats["sent"] == 1
    assert ledger_balances(stats)


def test_export_now_returns_the_outcome_with_the_reply(server, make_handler):
    """Seam 2: export_now() exports its own batch and returns an ExportResult."""
    handler = make_handler(url=server.url)
    server.push(ok(body=b'{"stored": 2}'))
    result = handler.export_now([{"message": "a"}, {"message": "b"}], timeout=10)
    assert isinstance(result, ExportResult)
    assert result.outcome == "delivered" and result.delivered == 2
    assert result.status == 200 and result.reply_json == {"stored": 2}
    assert [e["message"] for e in server.events] == ["a", "b"]
    assert ledger_balances(handler.stats())


def test_export_now_reports_a_rejection(server, make_handler):
    """Seam 2: a final refusal is outcome "rejected" with the server's reason."""
    handler = make_handler(url=server.url)
    server.push(status(400, body=b"bad batch"))
    result = handler.export_now([{"message": "a"}], timeout=10)
    assert result.outcome == "rejected" and result.rejected == 1
    assert result.status == 400 and any("bad batch" in r for r in result.reasons)


def test_export_now_times_out_as_pending_and_keeps_one_fate(server, make_handler):
    """Seam 2: a wait that ends first says "pending"; the events are delivered once."""
    handler = make_handler(url=server.url, timeout=5, retries=1, backoff=0.01)
    server.push(hang(1.0))
    started = time.monotonic()
    result = handler.export_now([{"message": "slow"}], timeout=0.2)
    assert result.outcome == "pending"
    assert time.monotonic() - started < 5
    assert handler.flush(timeout=20)
    deadline = time.monotonic() + 10
    while handler.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = handler.stats()
    assert stats["sent"] + stats["spooled"] == 1 and ledger_balances(stats)
