"""``loghandlers.clients.kronos``: pykronos's API on our pipeline (issue 11), against the
collector over real HTTP; and the collector's ``infer_schema``. (pykronos itself is
Python 2 only: reading each other's events with it is a manual check, see the README.)"""

from __future__ import annotations

import datetime
import json
import time

import pytest
import requests

from loghandlers.clients.kronos import (
    ID_FIELD,
    TIMESTAMP_FIELD,
    KronosClient,
    KronosClientError,
    ResultOrder,
    datetime_to_kronos_time,
    epoch_time_to_kronos_time,
    kronos_time_to_datetime,
    kronos_time_to_epoch_time,
)
from loghandlers.collector import Collector
from loghandlers.collector.kronos import infer_schema
from loghandlers.version import __version__
from tests.loopback import free_port
from tests.test_clients_shared import FAST, run_script

UTC = datetime.timezone.utc

#: the README's examples, in order, in Python 3 syntax (print as a function)
README = """
from pykronos.client import ID_FIELD
from pykronos.client import TIMESTAMP_FIELD
from pykronos.client import KronosClient
from pykronos.client import ResultOrder
from pykronos.common.time import datetime_to_kronos_time
from datetime import datetime
from datetime import timedelta
from dateutil.tz import tzutc

kc = KronosClient('http://localhost:8151', namespace='kronos')
start = datetime.now(tz=tzutc())

nonblocking = KronosClient('http://localhost:8151', namespace='kronos',
                           blocking=False)

kc.put(
  {'yourproduct.website.pageviews': [
      {'source': 'http://test.com',
       'browser': {'name': 'Firefox', 'version': 26},
       'pages': ['page1.html', 'page2.html']}],
   'yourproduct.website.clicks': [
      {'user': 40, 'num_clicks': 7},
      {'user': 42, 'num_clicks': 2}]
   })

optional_time = datetime_to_kronos_time(start + timedelta(seconds=5))
kc.put({'yourproduct.website.clicks': [
  {'user': 35, 'num_clicks': 10, TIMESTAMP_FIELD: optional_time}]})

events = kc.get('yourproduct.website.clicks',
                start,
                start + timedelta(minutes=10))
for event in events:
  print('Received event', event)
  last_event_id = event[ID_FIELD]

events = kc.get('yourproduct.website.clicks',
                start,
                start + timedelta(minutes=10),
                order=ResultOrder.DESCENDING)
for event in events:
  print('Reverse event', event)
  last_event_id = event[ID_FIELD]

events = kc.get('yourproduct.website.clicks',
                start,
                start + timedelta(minutes=10),
                order=ResultOrder.DESCENDING,
                limit=1)
for event in events:
  print('Limited event', event)
  last_event_id = event[ID_FIELD]

for stream in kc.get_streams():
  print('Found stream', stream)

response = kc.infer_schema('yourproduct.website.clicks')
print(response['schema'])

kc.delete('yourproduct.website.clicks',
          start + timedelta(seconds=5),
          start + timedelta(minutes=10))

events = kc.get('yourproduct.website.clicks',
                start,
                start + timedelta(minutes=10))
for event in events:
  print('Received event', event)
"""


def ours(example: str) -> str:
    for name in ("ID_FIELD", "TIMESTAMP_FIELD", "KronosClient", "ResultOrder"):
        example = example.replace(
            f"from pykronos.client import {name}", f"from loghandlers.clients.kronos import {name}"
        )
    return example.replace(
        "from pykronos.common.time import datetime_to_kronos_time",
        "from loghandlers.clients.kronos import datetime_to_kronos_time",
    )


def printed(output: str, label: str) -> list:
    """The values the README prints after ``label`` (events are dict reprs)."""
    import ast

    found = []
    for line in output.splitlines():
        if line.startswith(label + " "):
            found.append(ast.literal_eval(line[len(label) + 1 :]))
    return found


@pytest.fixture
def collector():
    with Collector(port=0, db=":memory:") as running:
        yield running


@pytest.fixture
def kc(collector, tmp_path):
    client = KronosClient(collector.url, namespace="kronos", spool_dir=str(tmp_path), **FAST)
    yield client
    client.close()


def test_readme_examples_with_only_the_import_changed(collector, tmp_path):
    """issue 11: the whole pykronos README runs against the collector."""
    pytest.importorskip("dateutil")
    example = ours(README).replace("http://localhost:8151", collector.url)
    assert "pykronos" not in example
    output = run_script(example, env={"LOGHANDLERS_SPOOL_DIR": str(tmp_path)})
    received = printed(output, "Received event")
    users = [e["user"] for e in received]
    assert users[:3] == [40, 42, 35] or users[:3] == [42, 40, 35]
    assert sorted(users[3:]) == [40, 42]  # after the delete, user 35 is gone
    assert [e["user"] for e in printed(output, "Reverse event")][0] == 35
    assert [e["user"] for e in printed(output, "Limited event")] == [35]
    streams = [line.split(" ", 2)[2] for line in output.splitlines() if "Found stream" in line]
    assert sorted(streams) == ["yourproduct.website.clicks", "yourproduct.website.pageviews"]
    schema_line = next(line for line in output.splitlines() if "'$schema'" in line)
    assert "'num_clicks': {'type': 'integer'}" in schema_line
    for event in received:
        assert event[ID_FIELD] and isinstance(event[TIMESTAMP_FIELD], int)
        assert event["@library"] == {"version": __version__, "name": "loghandlers"}
    pageviews = collector.events(service="kronos", channel="yourproduct.website.pageviews")
    assert pageviews[0]["event"]["browser"] == {"name": "Firefox", "version": 26}
    assert {row["namespace"] for row in collector.events()} == {"kronos"}


def test_put_sends_the_events_as_given(kc, collector):
    """issue 11: put adds only @library and a missing @time (one value per call); datetimes
    (naive = UTC, aware converted) and ISO strings become kronos time; blocking returns
    the server's reply."""
    when = datetime.datetime(2016, 2, 26, 11, 10, 5, 659000)
    reply = kc.put(
        {
            "s": [
                {"a": 1},
                {"b": 2},
                {"c": 3, TIMESTAMP_FIELD: when},
                {"d": 4, TIMESTAMP_FIELD: when.replace(tzinfo=UTC)},
                {"e": 5, TIMESTAMP_FIELD: "2016-02-26T13:10:05.659+02:00"},
                {"f": 6, TIMESTAMP_FIELD: 14564850056590000},
            ]
        }
    )
    assert reply["@success"] is True and reply["s"] == {"memory": {"num_inserted": 6}}
    events = [row["event"] for row in collector.events(service="kronos")]
    assert [sorted(set(e) - {"@id", "@time", "@library"}) for e in events] == [
        ["a"],
        ["b"],
        ["c"],
        ["d"],
        ["e"],
        ["f"],
    ]
    times = [e[TIMESTAMP_FIELD] for e in events]
    assert times[0] == times[1]  # one "now" per put, as pykronos
    assert times[2:] == [14564850056590000] * 4
    body = json.loads(collector.requests(service="kronos")[-1]["body"])
    assert body["namespace"] == "kronos" and "@stream" not in body["events"]["s"][0]


def test_put_reports_what_the_server_refused(kc, collector):
    """issue 11: the server's @errors raise KronosClientError (pykronos meant to; it raised
    TypeError); the other events are stored, as the server does."""
    with pytest.raises(KronosClientError, match="InvalidStreamName"):
        kc.put({"bad stream!": [{"x": 1}], "good": [{"x": 2}]})
    with pytest.raises(KronosClientError, match="InvalidEventTime"):
        kc.put({"good": [{"x": 3, TIMESTAMP_FIELD: 1456485005.659}]})  # a float: as given
    assert [row["event"]["x"] for row in collector.events(service="kronos")] == [2]


def test_blocking_put_to_a_dead_endpoint_is_kept(tmp_path):
    """issue 11: a put that can't be delivered is spooled (replayed later), not lost; the
    reply says so instead of raising (raising would invite a duplicate put)."""
    client = KronosClient(f"http://127.0.0.1:{free_port()}", spool_dir=str(tmp_path), **FAST)
    try:
        reply = client.put({"s": [{"x": 1}]})
        assert reply["@success"] is False and reply["@pending"] == 1
        assert client.stats()["spooled"] == 1
    finally:
        client.close()


def test_non_blocking_put_buffers_per_namespace(collector, tmp_path):
    """issue 11: blocking=False buffers; sleep_block is the flush interval; a put's
    namespace goes to that namespace."""
    client = KronosClient(
        collector.url, blocking=False, sleep_block=0.05, namespace="a", spool_dir=str(tmp_path)
    )
    try:
        assert client.handler.settings.flush_interval == 0.05
        assert client.put({"s": [{"x": 1}]}) is None
        client.put({"s": [{"x": 2}]}, namespace="b")
        assert client.flush(timeout=10)
        rows = collector.events(service="kronos")
        assert sorted((r["namespace"], r["event"]["x"]) for r in rows) == [("a", 1), ("b", 2)]
        assert list(client.get_streams(namespace="b")) == ["s"]
    finally:
        client.close()


def test_read_side(kc, collector):
    """issue 11: get (bounds inclusive, order, limit, start_id), get_streams, infer_schema,
    delete and index, with the server's errors as KronosClientError."""
    base = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    kc.put(
        {"r": [{"i": i, TIMESTAMP_FIELD: base + datetime.timedelta(seconds=i)} for i in range(5)]}
    )
    end = base + datetime.timedelta(seconds=4)
    assert [e["i"] for e in kc.get("r", base, end)] == [0, 1, 2, 3, 4]
    assert [e["i"] for e in kc.get("r", base, end, order=ResultOrder.DESCENDING)] == [4, 3, 2, 1, 0]
    assert [e["i"] for e in kc.get("r", base, end, limit=2)] == [0, 1]
    first = next(iter(kc.get("r", base, end)))
    assert [e["i"] for e in kc.get("r", None, end, start_id=first[ID_FIELD])] == [1, 2, 3, 4]
    naive = base.replace(tzinfo=None)  # naive means UTC
    assert [e["i"] for e in kc.get("r", naive, naive)] == [0]
    assert list(kc.get_streams()) == ["r"]
    schema = kc.infer_schema("r")
    assert schema["schema"]["properties"]["i"] == {"type": "integer"}
    assert schema["stream"] == "r" and schema["namespace"] == "kronos"
    deleted = kc.delete("r", base + datetime.timedelta(seconds=3), end)
    assert deleted["r"]["memory"]["num_deleted"] == 2
    assert [e["i"] for e in kc.get("r", base, end)] == [0, 1, 2]
    assert kc.index()["@success"] is True
    with pytest.raises(KronosClientError, match="Bad status code: 400"):
        list(kc.get("bad stream!", base, end))
    with pytest.raises(KronosClientError):
        kc.infer_schema("bad stream!")


def test_read_side_has_timeouts(tmp_path):
    """issue 11: the read side never waits forever (pykronos's put and streams had no
    timeout): a server that does not answer is a KronosClientError."""
    from tests.loopback import LoopbackServer, hang

    with LoopbackServer(default=hang(10)) as server:
        client = KronosClient(server.url, timeout=0.3, spool_dir=str(tmp_path))
        try:
            with pytest.raises(KronosClientError, match="timed out"):
                list(client.get("s", 0, 1))
            with pytest.raises(KronosClientError, match="timed out"):
                client.infer_schema("s")
        finally:
            client.close(timeout=0.1)


def test_time_helpers_are_exact():
    """issue 11: naive and aware datetimes; exact integer arithmetic (pykronos went through
    float seconds and dropped the fraction on the way back)."""
    aware = datetime.datetime(2016, 2, 26, 13, 10, 5, 659000, tzinfo=UTC)
    assert datetime_to_kronos_time(aware) == 14564922056590000
    assert datetime_to_kronos_time(aware.replace(tzinfo=None)) == 14564922056590000
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert datetime_to_kronos_time(aware.astimezone(plus_two)) == 14564922056590000
    assert kronos_time_to_datetime(14564922056590000) == aware
    assert epoch_time_to_kronos_time(1456485005) == 14564850050000000
    assert kronos_time_to_epoch_time(14564850056590000) == 1456485005.659


def test_collector_infers_a_draft_4_schema():
    """issue 11: infer_schema's reply, so that the pykronos README runs against us."""
    schema = infer_schema(
        [
            {"user": 40, "n": 7, "tags": ["a"], "geo": {"lat": 1.5}},
            {"user": 42, "n": "x", "tags": [], "geo": {"lat": 2, "lon": 3}, "opt": None},
        ]
    )
    assert schema == {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {
            "user": {"type": "integer"},
            "n": {"type": ["integer", "string"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "geo": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "lon": {"type": "integer"}},
                "required": ["lat"],
            },
            "opt": {"type": "null"},
        },
        "required": ["geo", "n", "tags", "user"],
    }
    assert infer_schema([]) == {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {},
    }


def test_collector_answers_infer_schema_as_pykronos_sends_it(collector):
    """issue 11: pykronos posts {"stream", "namespace": null}; the reply has @success."""
    requests.post(
        collector.url + "/1.0/events/put",
        data=json.dumps({"events": {"s": [{"x": 1}]}}),
        timeout=10,
    )
    reply = requests.post(
        collector.url + "/1.0/streams/infer_schema",
        data=json.dumps({"stream": "s", "namespace": None}),
        timeout=10,
    )
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["@success"] is True and answer["namespace"] == "kronos"
    assert answer["schema"]["properties"]["x"] == {"type": "integer"}
    assert set(answer["schema"]["required"]) == {"x", "@id", "@time"}


def lines(*events) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\r\n" for e in events)


class CutStreamServer:
    """Answers each get with the next scripted body. A body marked ``cut`` is sent in full,
    then the connection closes before the promised length: the client has read every line
    but the response is broken (no reset, so no line is lost in flight)."""

    def __init__(self, *bodies):
        import http.server
        import threading

        self.bodies = list(bodies)
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                owner.requests.append(
                    json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                )
                body, cut = owner.bodies.pop(0)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if cut else 0)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if cut:
                    time.sleep(0.2)  # let the client read every line first
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("order", [ResultOrder.ASCENDING, ResultOrder.DESCENDING])
def test_a_broken_get_resumes_after_the_last_event_within_the_limit(order, tmp_path):
    """issue 11: a response cut mid-stream is resumed after the last event seen, in either
    order, without repeating events or exceeding ``limit`` (pykronos resumes with start_id
    even when descending, and asks for the whole ``limit`` again)."""
    ids = [f"0000000{i}-0000-1000-8000-000000000000" for i in range(4)]
    times = [10, 20, 20, 30]
    events = [{ID_FIELD: ids[i], TIMESTAMP_FIELD: times[i], "i": i} for i in range(4)]
    if order == ResultOrder.DESCENDING:
        events.reverse()
    # what a server answers to the resumed request: descending resumes at the edge time,
    # so the edge event comes again (and is skipped); ascending resumes strictly after it
    again = events[1:] if order == ResultOrder.DESCENDING else events[2:]
    with CutStreamServer((lines(*events[:2]), True), (lines(*again), False)) as server:
        # chunk_size=1: every byte sent before the cut is read (a bigger read would fail
        # as a whole at the cut, and the request would simply be made again)
        client = KronosClient(server.url, chunk_size=1, spool_dir=str(tmp_path))
        try:
            got = list(client.get("s", 0, 100, limit=3, order=order))
        finally:
            client.close(timeout=0.1)
        first, second = server.requests
    assert [e["i"] for e in got] == [e["i"] for e in events[:3]]
    assert first["limit"] == 3 and second["limit"] == 1
    if order == ResultOrder.ASCENDING:
        assert second["start_id"] == ids[1] and "start_time" not in second
    else:
        assert second["end_time"] == 20 and second["start_time"] == 0
