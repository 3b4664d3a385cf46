"""Initial State: the ``Streamer`` client (ISStreamer's API) and the handler semantics it
shares with it (issue 11), over real HTTP against the collector or the loopback server."""

from __future__ import annotations

import datetime
import gc
import json
import logging
import time
import uuid

import pytest

from loghandlers import InitialStateHandler
from loghandlers.collector import Collector
from loghandlers.services.initialstate_objects import log_object_items
from tests.helpers import attach
from tests.loopback import status
from tests.test_clients_shared import FAST as FAST_CLIENT
from tests.test_clients_shared import run_script, with_import

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


# ------------------------------------------------------------------ the Streamer client

#: the README's examples, in order (Python 3 syntax). Harness changes, marked "harness":
#: the endless loop runs twice without sleeping, with a stand-in for get_stuff(), and the
#: last streamers are closed so that the official client sends at all.
README = """
from ISStreamer.Streamer import Streamer

# create or append to a Streamer instance
streamer = Streamer(bucket_name="Some Bucket Name", bucket_key="bucket_key", access_key="YourAccessKey")

# send some data
streamer.log("test", "hi")
streamer.log("temperature", 32)

# flush data (force the buffer to empty and send)
streamer.flush()

# close the stream
streamer.close()

streamer = Streamer(bucket_name="Hi!", access_key="YourAccessKey", buffer_size=200)

streamer = Streamer(bucket_name="Dynamic Buffer", access_key="YourAccessKey", buffer_size=200)

counter = 0
while counter < 2:  # harness: was `while 1`
    streamer.log("loop_counter", counter)

    some_dict = {
        "a": 1,
        "b": 2,
        "c": 3
    }
    streamer.log_object(some_dict, key_prefix="some_dict")

    dynamic_list = [counter, "x", 2.5]  # harness: SomeOtherModule.PracticalClass.get_stuff()

    streamer.log_object(dynamic_list)

    streamer.flush()

    # increment counter
    counter += 1

import time

time = time.time()

streamer.log("siganl", 5, epoch=time)
streamer.close()  # harness

streamer = Streamer(bucket_name="Starting Bucket", access_key="YourAccessKey")

streamer.log("key1", "starting")
streamer.set_bucket(bucket_name="New Bucket")
streamer.log("key1", "starting")
streamer.close()  # harness

logger = Streamer(bucket_name="SomeBucketName", access_key="YourAccessKey", debug_level=2)
"""


def per_bucket_name(collector, after: int = 0) -> dict:
    """{bucket name: sorted (key, value) pairs} of the events stored after row ``after``."""
    names = {b["bucketKey"]: b["bucketName"] for b in collector.buckets()}
    out: dict = {}
    for row in collector.events(service="initialstate")[after:]:
        event = row["event"]
        out.setdefault(names.get(row["channel"]), []).append(
            (event["key"], json.dumps(event["value"]))
        )
    return {name: sorted(pairs) for name, pairs in out.items()}


def ini_dir(tmp_path, collector) -> dict:
    """A working directory whose ./isstreamer.ini points ISStreamer at the collector (the
    only way to aim it), and an empty HOME; returns run_script's keyword arguments."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (work / "isstreamer.ini").write_text(
        "[isstreamer.client_config]\noffline_mode = false\n"
        f"[isstreamer.api_config]\nstream_api_base = {collector.url}\n"
    )
    env = {"HOME": str(home), "LOGHANDLERS_SPOOL_DIR": str(tmp_path / "spool")}
    return {"cwd": str(work), "env": env}


@pytest.fixture
def collector():
    with Collector(port=0, db=":memory:") as running:
        yield running


def test_readme_examples_with_only_the_import_changed(collector, tmp_path):
    """issue 11: the README runs with only the import changed (./isstreamer.ini aims both
    clients at the collector), and stores what the official client stores, apart from the
    epochs and the documented differences: events logged before set_bucket() stay in the
    old bucket (the SDK moves them to the new one), and a bucket is created before its
    first events (the SDK creates one per Streamer, even one that never logs)."""
    where = ini_dir(tmp_path, collector)
    run_script(README, **where)
    official = per_bucket_name(collector)
    official_buckets = {b["bucketName"] for b in collector.buckets()}
    before = len(collector.events(service="initialstate"))
    example = with_import(
        README,
        "from ISStreamer.Streamer import Streamer",
        "from loghandlers.clients.initialstate import Streamer",
    )
    run_script(example, **where)
    ours = per_bucket_name(collector, before)
    starting = [("key1", '"starting"')]
    assert official.pop("New Bucket") == starting * 2
    assert (ours.pop("Starting Bucket"), ours.pop("New Bucket")) == (starting, starting)
    assert ours == official
    assert official["Some Bucket Name"] == [("temperature", "32"), ("test", '"hi"')]
    assert ("list_2", "2.5") in official["Dynamic Buffer"]
    assert official_buckets >= {"Hi!", "SomeBucketName"}  # buckets that never got events
    given_epoch = [
        row["event"]["epoch"]
        for row in collector.events(service="initialstate")
        if row["event"]["key"] == "siganl"
    ]
    assert len(given_epoch) == 2 and all(isinstance(e, float) for e in given_epoch)


def test_log_keeps_types_and_epochs_as_the_sdk(collector, tmp_path):
    """issue 11: numbers and bools stay JSON numbers and bools; an epoch is sent as given
    (an int stays an int); an unusable one is replaced by now; nested values go as JSON
    text (documented difference)."""
    from loghandlers.clients.initialstate import Streamer

    streamer = Streamer(
        bucket_name="T",
        bucket_key="t",
        access_key="ist_k",
        url=collector.url,
        spool_dir=str(tmp_path),
    )
    try:
        streamer.log("i", 32, epoch=1456485005)
        streamer.log("f", 0.5, epoch=1456485005.659)
        streamer.log("b", True, epoch="not-a-time")
        streamer.log("n", {"a": [1]})
        streamer.log("k" * 300, "long key")
        with pytest.raises(ValueError):
            streamer.log("", "empty key")
        assert streamer.flush(timeout=10)
    finally:
        streamer.close()
    events = [row["event"] for row in collector.events(service="initialstate")]
    assert [(e["key"][:3], e["value"]) for e in events] == [
        ("i", 32),
        ("f", 0.5),
        ("b", True),
        ("n", '{"a": [1]}'),
        ("kkk", "long key"),
    ]
    assert type(events[0]["epoch"]) is int and events[1]["epoch"] == 1456485005.659
    assert abs(events[2]["epoch"] - time.time()) < 600
    assert len(events[4]["key"]) == 250


def test_log_object_flattens_as_isstreamer(collector, tmp_path):
    """issue 11: lists list_0.., dicts dict_<key>.., objects their properties; key_prefix
    replaces the type name, "" means none; one epoch for all; a tuple counts as a list."""
    from loghandlers.clients.initialstate import Streamer

    streamer = Streamer(
        bucket_key="t", access_key="ist_k", url=collector.url, spool_dir=str(tmp_path)
    )
    try:
        streamer.log_object([5, "x"])
        streamer.log_object({"a": 1}, key_prefix="")
        streamer.log_object({"a": 2}, key_prefix="p", epoch=1456485005)
        streamer.log_object(Reading())
        streamer.log_object((7,), key_prefix="t")
        streamer.log_object({1: "int key", "1": "str key"}, key_prefix="dup")
        assert streamer.flush(timeout=10)
    finally:
        streamer.close()
    events = [row["event"] for row in collector.events(service="initialstate")]
    assert [(e["key"], e["value"]) for e in events] == [
        ("list_0", 5),
        ("list_1", "x"),
        ("a", 1),
        ("p_a", 2),
        ("Reading_broken", "<unreadable property: RuntimeError>"),
        ("Reading_temp", 21.5),
        ("t_0", 7),
        ("dup_1", "int key"),
        ("dup_1", "str key"),  # both sent, as ISStreamer does
    ]
    assert events[0]["epoch"] == events[1]["epoch"] and events[3]["epoch"] == 1456485005


def test_set_bucket_creates_each_bucket_once_before_its_events(collector, tmp_path):
    """issue 11: the bucket call is made once per bucket, before its events; set_bucket
    without a key makes a uuid4 one."""
    from loghandlers.clients.initialstate import Streamer

    streamer = Streamer(
        bucket_name="One",
        bucket_key="one",
        access_key="ist_k",
        url=collector.url,
        spool_dir=str(tmp_path),
        **FAST_CLIENT,
    )
    try:
        streamer.log("k", 1)
        streamer.log("k", 2)
        assert streamer.flush(timeout=10)
        streamer.set_bucket(bucket_name="Two")
        key = streamer.BucketKey
        assert str(uuid.UUID(key)) == key and streamer.BucketName == "Two"
        streamer.log("k", 3)
        assert streamer.flush(timeout=10)
    finally:
        streamer.close()
    paths = [(r["path"], json.loads(r["body"])) for r in collector.requests("initialstate")]
    assert paths[0] == ("/api/buckets", {"bucketKey": "one", "bucketName": "One"})
    assert [p for p, _ in paths] == ["/api/buckets", "/api/events"] * 2
    assert paths[2][1] == {"bucketKey": key, "bucketName": "Two"}
    rows = collector.events(service="initialstate")
    assert [(r["channel"], r["event"]["value"]) for r in rows] == [
        ("one", 1),
        ("one", 2),
        (key, 3),
    ]


def test_ini_file_and_environment(collector, tmp_path, monkeypatch):
    """issue 11: ISStreamer's ini file is read (access_key, default_bucket,
    stream_api_base); LOGHANDLERS_INITIALSTATE_* variables beat it; offline is refused."""
    from loghandlers.clients.initialstate import Streamer

    ini = tmp_path / "custom.ini"
    ini.write_text(
        "[isstreamer.client_config]\naccess_key = ist_from_ini\ndefault_bucket = Ini Bucket\n"
        f"[isstreamer.api_config]\nstream_api_base = {collector.url}\n"
    )
    streamer = Streamer(bucket_key="b", ini_file_location=str(ini), spool_dir=str(tmp_path))
    try:
        assert streamer.handler.settings.url == collector.url
        assert streamer.BucketName == "Ini Bucket"
        assert "ist_from_ini" not in repr(streamer)
        streamer.log("k", "v")
        assert streamer.flush(timeout=10)
        request = collector.requests("initialstate")[-1]
        assert request["headers"]["X-IS-AccessKey"] == "ist_from_ini"
    finally:
        streamer.close()
    monkeypatch.setenv("LOGHANDLERS_INITIALSTATE_URL", "http://127.0.0.1:9")
    streamer = Streamer(bucket_key="b", ini_file_location=str(ini), spool_dir="")
    try:
        assert streamer.handler.settings.url == "http://127.0.0.1:9"
    finally:
        streamer.close(timeout=0)
    with pytest.raises(FileNotFoundError):
        Streamer(bucket_key="b", access_key="k", ini_file_location=str(tmp_path / "none.ini"))
    with pytest.raises(ValueError, match="offline"):
        Streamer(bucket_key="b", access_key="k", offline=True)


def test_a_dropped_streamer_still_delivers(collector, tmp_path):
    """issue 11: as the SDK's __del__ closes, dropping a Streamer drains it (and stops its
    worker) without close()."""
    from loghandlers.clients.initialstate import Streamer

    streamer = Streamer(
        bucket_key="d",
        access_key="ist_k",
        url=collector.url,
        spool_dir=str(tmp_path),
        flush_interval=3600,
    )
    streamer.log("k", "dropped")
    handler = streamer.handler
    del streamer
    gc.collect()
    handler.finish_close()
    assert [r["event"]["value"] for r in collector.events(service="initialstate")] == ["dropped"]


class Poisoned:
    """Every way of looking at it raises."""

    @property
    def __class__(self):
        raise RuntimeError("poisoned __class__")

    def __repr__(self):
        raise RuntimeError("poisoned __repr__")

    __str__ = __format__ = __repr__


def test_poisoned_objects_never_raise_out_of_log_or_log_object(collector, tmp_path):
    """issue 11 (hostile users): values, keys, properties and objects whose __class__,
    __str__, __repr__ or __format__ raise cost only their own value."""
    from loghandlers.clients.initialstate import Streamer

    streamer = Streamer(
        bucket_key="p", access_key="ist_k", url=collector.url, spool_dir=str(tmp_path)
    )
    try:
        streamer.log("poisoned", Poisoned())
        streamer.log_object(Poisoned(), key_prefix="obj")
        streamer.log_object({Poisoned(): 1, "ok": Poisoned()}, key_prefix="d")
        streamer.log_object([Poisoned()], key_prefix="l")
        streamer.log("after", "still fine")
        assert streamer.flush(timeout=10)
    finally:
        streamer.close()
    events = {
        r["event"]["key"]: r["event"]["value"] for r in collector.events(service="initialstate")
    }
    assert events["poisoned"] == "<unrepresentable Poisoned>"
    assert events["d_ok"] == events["l_0"] == "<unrepresentable Poisoned>"
    assert events["after"] == "still fine"
    assert any(key.startswith("d_<unrepresentable") for key in events)
