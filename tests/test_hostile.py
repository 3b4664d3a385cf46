"""Hostile-user replays of issue 9's promises with variations the item tests did not try.

Each test names the promise it guards; every wait is bounded; loopback servers only.
"""

from __future__ import annotations

import logging

import pytest

from loghandlers import JSONHandler, OTLPHandler, SamsaraHandler

LEDGER = ("sent", "rejected", "failed", "spooled", "dropped", "queued", "in_flight")


def balances(stats: dict) -> bool:
    return stats["emitted"] == sum(stats[part] for part in LEDGER)


class PoisonedClass:
    """Like Django's SimpleLazyObject off the request thread: type checks raise."""

    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("lazy object not set up")

    def __repr__(self):
        raise RuntimeError("no repr either")


@pytest.mark.parametrize("cls", [JSONHandler, SamsaraHandler, OTLPHandler])
@pytest.mark.parametrize("with_formatter", [False, True])
def test_a_poisoned_object_logged_as_the_message_is_shipped_not_lost(
    server, make_handler, logger, capfd, cls, with_formatter
):
    """issue 9 item 1 (variation: the poisoned object is the message itself,
    ``log.info(lazy)``): emit never raises nor prints a traceback, and the record is
    delivered with a placeholder text, its neighbours too; the ledger counts all three."""
    handler = make_handler(cls, url=server.url, flush_interval=3600)
    if with_formatter:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.info("before")
    logger.info(PoisonedClass())
    logger.info("after")
    assert handler.flush(timeout=15)
    stats = handler.stats()
    assert stats["emitted"] == 3 and stats["sent"] == 3 and balances(stats), stats
    assert "Traceback" not in capfd.readouterr().err
