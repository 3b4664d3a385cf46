"""``loghandlers.clients.samsara``: samsara-sdk's API on our pipeline (issue 11), against
the collector over real HTTP; the official client runs the same calls for comparison."""

from __future__ import annotations

import time

import pytest

from loghandlers.clients.samsara import (
    InvalidConfiguration,
    InvalidEvent,
    PublishError,
    SamsaraClient,
    current_time_millis,
)
from loghandlers.collector import Collector
from tests.loopback import free_port
from tests.test_clients_shared import FAST, run_script, with_import
from tests.test_official_clients import installed

TIME_FIELDS = {"timestamp", "receivedAt", "publishedAt"}

#: the README's examples, in order (Python 3 syntax; only the server address is ours)
README = """
from samsara_sdk import SamsaraClient
from samsara_sdk.helpers import current_time_millis

client = SamsaraClient(url="URL/", sourceId="source identifier"START)

client.record_event(eventName="user.logged", sourceId="device1", timestamp=current_time_millis())
client.record_event(eventName="user.logged")
client.record_event(eventName="user.logged", color="blue", level=10)
client.publish_events([{"eventName": "user.logged",
                        "timestamp": current_time_millis(),
                        "sourceId": "e6f01efd-04a9-4c18-a210-2806718b6d43"}])
"""


def ours(example: str) -> str:
    example = with_import(
        example,
        "from samsara_sdk import SamsaraClient",
        "from loghandlers.clients.samsara import SamsaraClient",
    )
    return with_import(
        example,
        "from samsara_sdk.helpers import current_time_millis",
        "from loghandlers.clients.samsara import current_time_millis",
    )


def without_time(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in TIME_FIELDS}


@pytest.fixture
def collector():
    with Collector(port=0, db=":memory:") as running:
        yield running


@pytest.fixture
def client(collector, tmp_path):
    made = SamsaraClient(url=collector.url, sourceId="src", spool_dir=str(tmp_path), **FAST)
    yield made
    made.close()


def test_readme_examples_with_only_the_import_changed(collector, tmp_path):
    """issue 11: the README runs as is; what record_event buffered arrives at exit, without
    close() (the SDK's 30 s timer would still be waiting: its thread keeps the process)."""
    example = ours(README).replace("URL", collector.url).replace("START", "")
    run_script(example, env={"LOGHANDLERS_SPOOL_DIR": str(tmp_path)})
    events = [without_time(row["event"]) for row in collector.events(service="samsara")]
    published = {"eventName": "user.logged", "sourceId": "e6f01efd-04a9-4c18-a210-2806718b6d43"}
    assert events[0] == published  # sent now, ahead of the buffer
    assert events[1:] == [
        {"eventName": "user.logged", "sourceId": "device1"},
        {"eventName": "user.logged", "sourceId": "source identifier"},
        {"eventName": "user.logged", "color": "blue", "level": 10, "sourceId": "source identifier"},
    ]
    assert all(isinstance(row["event"]["timestamp"], int) for row in collector.events())


@pytest.mark.skipif(not installed("samsara_sdk"), reason="samsara-sdk not installed ([test] extra)")
def test_the_official_client_stores_the_same_events(collector, tmp_path):
    """issue 11: same calls, same stored events (time fields aside), same headers."""
    manual = README.replace("URL", collector.url).replace(
        "START", ", start_publishing_thread=False"
    )
    manual += "client._flush_buffer()\n"
    run_script(manual)
    official = [without_time(row["event"]) for row in collector.events(service="samsara")]
    run_script(ours(manual), env={"LOGHANDLERS_SPOOL_DIR": str(tmp_path)})
    rows = collector.events(service="samsara")[len(official) :]
    assert [without_time(row["event"]) for row in rows] == official
    assert len(official) == 4
    theirs, mine = collector.requests(service="samsara")[1], collector.requests()[-1]
    for header in ("Content-Type", "Content-Encoding", "Accept"):
        assert mine["headers"][header] == theirs["headers"][header]


def test_record_event_fills_in_and_validates(client, collector):
    """issue 11: sourceId/timestamp filled in as the SDK does; a bad event is InvalidEvent
    at the call, and nothing of it is buffered."""
    client.record_event(eventName="a", timestamp=0)  # the SDK would replace a 0
    client.record_event(eventName="b", sourceId="", timestamp=None)
    for bad in (
        {},
        {"eventName": 7},
        {"eventName": "c", "timestamp": -1},
        {"eventName": "c", "timestamp": True},
        {"eventName": "c", "timestamp": "now"},
        {"eventName": "c", "sourceId": 5},
    ):
        with pytest.raises(InvalidEvent):
            client.record_event(**bad)
    assert client.flush(timeout=10)
    events = [row["event"] for row in collector.events(service="samsara")]
    assert [(e["eventName"], e["sourceId"]) for e in events] == [("a", "src"), ("b", "src")]
    assert events[0]["timestamp"] == 0
    assert abs(events[1]["timestamp"] - current_time_millis()) < 60_000
    assert client.stats()["emitted"] == 2


def test_publish_events_raises_with_the_servers_reasons(client, collector):
    """issue 11: publish_events returns True, or raises a documented exception carrying the
    server's per-event reasons; the valid events of that batch are stored (the SDK: none)."""
    good = {"eventName": "ok", "sourceId": "s", "timestamp": current_time_millis()}
    assert client.publish_events([good]) is True
    with pytest.raises(PublishError) as info:
        client.publish_events([good, {"eventName": "no-time", "sourceId": "s"}])
    error = info.value
    assert isinstance(error, RuntimeError)  # what the SDK raises on an error answer
    assert error.outcome == "partial" and error.status in (202, 400)
    assert error.result.delivered == 1 and error.result.rejected == 1
    assert any("event 1" in reason and "timestamp" in reason for reason in error.reasons)
    assert "timestamp" in str(error)
    assert [row["event"]["eventName"] for row in collector.events()] == ["ok", "ok"]
    with pytest.raises(InvalidEvent):
        client.publish_events(["not a dict"])
    assert client.publish_events([]) is True


def test_publish_events_to_a_dead_endpoint_is_spooled_not_lost(tmp_path):
    """issue 11: send-now calls get the handler's retries and spool too."""
    client = SamsaraClient(url=f"http://127.0.0.1:{free_port()}", spool_dir=str(tmp_path), **FAST)
    try:
        with pytest.raises(PublishError) as info:
            client.publish_events([{"eventName": "e", "sourceId": "s", "timestamp": 1}])
        assert info.value.outcome == "spooled"
        assert "do not publish again" in str(info.value)
        assert client.stats()["spooled"] == 1
    finally:
        client.close()


def test_without_the_publishing_thread_nothing_is_sent_until_flush(collector, tmp_path):
    """issue 11: start_publishing_thread=False sends nothing until the user publishes or
    flushes (whatever flush_interval says)."""
    client = SamsaraClient(
        url=collector.url,
        start_publishing_thread=False,
        spool_dir=str(tmp_path),
        flush_interval=0.01,
    )
    try:
        client.record_event(eventName="held")
        time.sleep(0.5)  # many flush_intervals: a timer would have sent it by now
        assert collector.events(service="samsara") == []
        client._flush_buffer()  # the SDK's name, as scripts driving the SDK call it
        assert [row["event"]["eventName"] for row in collector.events()] == ["held"]
    finally:
        client.close()


def test_sdk_options_map_to_the_handlers(collector, tmp_path):
    """issue 11: the SDK's options (milliseconds) become the handler's (seconds)."""
    client = SamsaraClient(
        url=collector.url + "/ignored/path",
        sourceId="device",
        publish_interval=250,
        send_timeout=1500,
        max_buffer_size=50,
        min_buffer_size=80,  # > max: the SDK resets it to 1
        compression=None,
        spool_dir=str(tmp_path),
    )
    try:
        settings = client.handler.settings
        assert (settings.flush_interval, settings.timeout) == (0.25, 1.5)
        assert (settings.max_queue_size, settings.min_batch_size) == (50, 1)
        assert (settings.compression, settings.source_id) == ("none", "device")
        client.record_event(eventName="plain")
        assert client.flush(timeout=10)
        request = collector.requests(service="samsara")[-1]
        assert request["headers"]["Content-Encoding"] == "identity"
        assert request["path"] == "/v1/events"
    finally:
        client.close()
    with pytest.raises(InvalidConfiguration):
        SamsaraClient(url=collector.url, compression="brotli")
    with pytest.raises(InvalidConfiguration):
        SamsaraClient()  # no url (and no LOGHANDLERS_SAMSARA_URL)
    with pytest.raises(TypeError):
        SamsaraClient(url=collector.url, publish_interval=100, flush_interval=1)
