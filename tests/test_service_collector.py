"""The four handlers against the project's own collector, which validates like the servers."""

from __future__ import annotations

import base64

import pytest

from loghandlers import InitialStateHandler, KronosHandler, PanoplyHandler, SamsaraHandler
from loghandlers.collector import server as collector_server
from tests.helpers import FAST, attach

SECRET = base64.b64encode(b"RAND2>>>/uuid-1/123456789012/us-east-1").decode()


@pytest.fixture
def collector():
    with collector_server.Collector() as running:
        yield running


def ship(handler, logger_name: str):
    log, caught = attach(handler, logger_name)
    try:
        log.info("plain")
        log.warning("with extras", extra={"count": 3, "nested": {"a": [1, None]}, "u": "\u2603"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        assert handler.flush(timeout=10)
        stats = handler.stats()
    finally:
        handler.close()
    assert (stats["sent"], stats["rejected"], stats["spooled"]) == (3, 0, 0), stats
    return caught.records


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_samsara_is_accepted(collector, tmp_path, compression):
    handler = SamsaraHandler(
        url=collector.url + "/ignored/path",
        compression=compression,
        spool_dir=str(tmp_path),
        **FAST,
    )
    ship(handler, "col.samsara")
    events = [row["event"] for row in collector.events(service="samsara")]
    assert [e["eventName"] for e in events] == ["log.info", "log.warning", "log.error"]
    assert all(isinstance(e["publishedAt"], int) for e in events)


def test_initialstate_is_accepted(collector, tmp_path):
    handler = InitialStateHandler(
        url=collector.url,
        access_key="ist_key",
        bucket_key="bk",
        bucket_name="Bucket",
        spool_dir=str(tmp_path),
        **FAST,
    )
    records = ship(handler, "col.is")
    assert [(b["bucketKey"], b["bucketName"]) for b in collector.buckets()] == [("bk", "Bucket")]
    events = [row["event"] for row in collector.events(service="initialstate", channel="bk")]
    assert [e["key"] for e in events] == [
        "col.is",
        "col.is",
        "col.is_count",
        "col.is_nested_a",  # a dict field is flattened one level (issue 11)
        "col.is_u",
        "col.is",
    ]
    assert {e["epoch"] for e in events} == {r.created for r in records}


def test_panoply_is_accepted(collector, tmp_path):
    handler = PanoplyHandler(
        url=collector.url + "/123456789012/sdk-acct-RAND2",
        api_key="acct/r1",
        api_secret=SECRET,
        spool_dir=str(tmp_path),
        **FAST,
    )
    ship(handler, "col.panoply")
    rows = collector.events(service="panoply")
    assert [r["channel"] for r in rows] == ["logs"] * 3
    assert [r["event"]["message"] for r in rows] == ["plain", "with extras", "failed"]


def test_kronos_is_accepted(collector, tmp_path):
    handler = KronosHandler(url=collector.url, namespace="ns", spool_dir=str(tmp_path), **FAST)
    records = ship(handler, "col kronos")
    rows = collector.events(service="kronos", namespace="ns", channel="col_kronos")
    assert [r["event"]["@time"] for r in rows] == [int(r.created * 1e7) for r in records]
