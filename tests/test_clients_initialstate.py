"""Initial State: the ``Streamer`` client (ISStreamer's API) and the handler semantics it
shares with it (issue 11), over real HTTP against the collector or the loopback server."""

from __future__ import annotations

import datetime
import json
import logging

import pytest

from loghandlers import InitialStateHandler
from loghandlers.collector import Collector
from loghandlers.services.initialstate_objects import log_object_items
from tests.helpers import attach
from tests.loopback import status

CREDS = {"access_key": "ist_TESTKEY", "bucket_key": "wire_bucket"}


@pytest.fixture
def server_default():
    return status(200, body={})


@pytest.fixture
def handler_class():
    return InitialStateHandler


class Reading:
    """An object whose properties log_object streams (plain attributes are not)."""

    def __init__(self):
        self.ignored = "plain attribute"

    @property
    def temp(self):
        return 21.5

    @property
    def broken(self):
        raise RuntimeError("poisoned property")


def sent_events(server, handler, count=2) -> list:
    assert handler.flush(timeout=5)
    assert server.wait_for_requests(count)
    return server.requests[-1].json()


# ------------------------------------------------------------------ handler semantics


def test_bare_number_or_bool_message_is_sent_as_that_value(server, make):
    """issue 11: log.info(32, extra={"key": "temperature"}) reaches Initial State as 32."""
    handler = make(url=server.url, **CREDS)
    log, _ = attach(handler)
    log.info(32, extra={"key": "temperature"})
    log.info(0.5, extra={"key": "ratio"})
    log.info(True, extra={"key": "door_open"})
    log.info("32", extra={"key": "text"})  # a string stays a string
    log.info("%d", 7, extra={"key": "formatted"})  # interpolated text stays text
    events = sent_events(server, handler)
    values = {e["key"]: e["value"] for e in events}
    assert values == {
        "temperature": 32,
        "ratio": 0.5,
        "door_open": True,
        "text": "32",
        "formatted": "7",
    }
    assert type(values["temperature"]) is int and type(values["door_open"]) is bool


def test_bare_number_with_a_formatter_is_the_formatters_text(server, make):
    """issue 11: a Formatter decides the text, so the message is no longer a bare value."""
    handler = make(url=server.url, **CREDS)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log, _ = attach(handler)
    log.info(32, extra={"key": "temperature"})
    assert sent_events(server, handler) == [
        {"key": "temperature", "value": "INFO 32", "epoch": pytest.approx(0, abs=1e10)}
    ]


def test_epoch_extra_sets_the_event_time(server, make):
    """issue 11: extra={"epoch": t} sets the Initial State time (sent as given, as
    ISStreamer's log(..., epoch=t)); an unusable one falls back to the record's time."""
    handler = make(url=server.url, **CREDS)
    log, caught = attach(handler)
    aware = datetime.datetime(2016, 2, 26, 13, 10, 5, 659000, tzinfo=datetime.timezone.utc)
    log.info("int", extra={"key": "a", "epoch": 1456485005})
    log.info("float", extra={"key": "b", "epoch": 1456485005.659, "temp": 3})
    log.info("naive", extra={"key": "c", "epoch": aware.replace(tzinfo=None)})
    log.info("bad", extra={"key": "d", "epoch": "not-a-time"})
    log.info("huge", extra={"key": "e", "epoch": 1e300})
    events = sent_events(server, handler)
    by_key = {e["key"]: e for e in events}
    assert set(by_key) == {"a", "b", "b_temp", "c", "d", "e"}  # epoch is never a field
    assert type(by_key["a"]["epoch"]) is int and by_key["a"]["epoch"] == 1456485005
    assert by_key["b"]["epoch"] == by_key["b_temp"]["epoch"] == 1456485005.659
    assert by_key["c"]["epoch"] == aware.timestamp()
    created = [r.created for r in caught.records]
    assert by_key["d"]["epoch"] == created[3] and by_key["e"]["epoch"] == created[4]


def test_list_and_object_extras_are_flattened_as_log_object(server, make):
    """issue 11: extra= values that are lists or objects are flattened one level, as
    log_object(value, key_prefix="<key>_<field>") does; deeper values stay JSON text."""
    handler = make(url=server.url, **CREDS)
    log, _ = attach(handler)
    extra = {
        "key": "s",
        "temps": [20, 21.5, [1, 2]],
        "pos": {"x": 1, "y": {"z": 2}},
        "reading": Reading(),
        "empty": [],
        "pair": (1, 2),
    }
    log.info("tick", extra=extra)
    events = sent_events(server, handler)
    assert [(e["key"], e["value"]) for e in events] == [
        ("s", "tick"),
        ("s_temps_0", 20),
        ("s_temps_1", 21.5),
        ("s_temps_2", "[1, 2]"),
        ("s_pos_x", 1),
        ("s_pos_y", '{"z": 2}'),
        ("s_reading_broken", "<unreadable property: RuntimeError>"),
        ("s_reading_temp", 21.5),
        ("s_empty", "[]"),
        ("s_pair_0", 1),
        ("s_pair_1", 2),
    ]


def test_log_object_items_match_isstreamer():
    """issue 11: the flattening rules of ISStreamer 2.0.0's log_object, prefix rules included."""
    assert log_object_items([5, 6]) == [("list_0", 5), ("list_1", 6)]
    assert log_object_items({"a": 1}) == [("dict_a", 1)]
    assert log_object_items({"a": 1}, key_prefix="") == [("a", 1)]
    assert log_object_items({"a": 1}, key_prefix="p") == [("p_a", 1)]
    assert log_object_items(Reading())[1] == ("Reading_temp", 21.5)


# ------------------------------------------------------------------ official vs ours


def test_handler_semantics_match_the_official_client_on_the_collector(tmp_path):
    """issue 11: what streamer.log(key, 32, epoch=t) stores, log.info(32, extra=...) stores."""
    pytest.importorskip("ISStreamer")
    from tests.test_official_clients import run_official

    with Collector(port=0, db=":memory:") as collector:
        ini = tmp_path / "isstreamer.ini"
        ini.write_text(
            "[isstreamer.client_config]\naccess_key = ist_TESTKEY\noffline_mode = false\n"
            f"[isstreamer.api_config]\nstream_api_base = {collector.url}\n"
        )
        run_official(
            f"""
            from ISStreamer.Streamer import Streamer
            s = Streamer(bucket_name="w", bucket_key="wire_bucket", access_key="ist_TESTKEY",
                         ini_file_location={str(ini)!r}, use_async=False)
            s.log("temperature", 32, epoch=1456485005)
            s.log("door", True, epoch=1456485005.5)
            s.log_object([1, 2.5], key_prefix="door_list", epoch=1456485005.5)
            s.close()
            """
        )
        official = [row["event"] for row in collector.events(service="initialstate")]
        handler = InitialStateHandler(
            url=collector.url, bucket_name="w", spool_dir=str(tmp_path / "spool"), **CREDS
        )
        log = logging.getLogger("test.clients.is.official")
        log.propagate = False
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            log.info(32, extra={"key": "temperature", "epoch": 1456485005})
            log.info(True, extra={"key": "door", "epoch": 1456485005.5, "list": [1, 2.5]})
            assert handler.flush(timeout=10)
        finally:
            handler.close()
        ours = [row["event"] for row in collector.events(service="initialstate")][len(official) :]
        assert json.dumps(ours) == json.dumps(official)
