"""The services' batch encoders are byte for byte what encoding each record on its own
gives (issue 14: "the wire bytes stay identical"), for any values: NaN, lone surrogates,
characters form-encoding must escape, nested values, and values that hold the marks the
fast paths use to encode a whole batch in one call.

The references here are written from the wire's definition (docs/protocols.md), not from the
services' code: Panoply's MessageBody is ``quote_plus(json.dumps(record), safe="")`` plus
``%0A%0A`` per record (strict JSON as :func:`loghandlers.records.dumps` writes it).
"""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loghandlers import PanoplyHandler
from loghandlers.records import dumps
from loghandlers.service import pack_chunks

PANOPLY_SECRET = (
    "UkFORDI+Pj4vMGUxZjJhM2ItNWVjNy00ZTdhLTljMWQtNWVjN2U3MDAwMDAxLzEyMzQ1Njc4OTAxMi9ldS13ZXN0LTE="
)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
MARKS = [
    "\x00",  # Panoply's batch mark, as a value a user might log
    ", ",
    "\n\n",
    "%0A%0A",
    "}, {",
]
PIECES = ["\U0001f600", "\u00e9", "\x7f", "\x00", "\\", '"', "%", "+", " ", "&=?#/", "\n"]
#: text the one-call paths take (no lone surrogates)
PLAIN_TEXT = st.lists(
    st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(PIECES + MARKS)),
    max_size=8,
).map("".join)
TEXT = st.lists(
    st.one_of(
        st.characters(),
        st.sampled_from(PIECES + MARKS),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    ),
    max_size=8,
).map("".join)


def events(text, floats):
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), floats, text)
    values = st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=8,
    )
    return st.dictionaries(text, values, max_size=5)


#: mostly records the one-call paths take, some that need the per-record repairs
EVENT = st.one_of(
    events(PLAIN_TEXT, st.floats(allow_nan=False, allow_infinity=False)),
    events(PLAIN_TEXT, st.floats(allow_nan=False, allow_infinity=False)),
    events(PLAIN_TEXT, st.floats(allow_nan=False, allow_infinity=False)),
    events(TEXT, st.floats()),
)


@pytest.fixture(scope="module")
def panoply():
    handler = PanoplyHandler(
        url="http://127.0.0.1:9/q", api_key="acct/RAND1", api_secret=PANOPLY_SECRET, spool_dir=""
    )
    yield handler.service
    handler.close(timeout=1)


def panoply_chunk(event: dict, table: str = "logs") -> str:
    if "__table" not in event:
        event = {**event, "__table": table}
    return quote_plus(dumps(event), safe="") + "%0A%0A"


def panoply_reference(service, events: list, max_bytes: int) -> list:
    """(events, body or None) per request: each record encoded alone, packed by bytes."""
    head = b"Action=SendMessage&MessageBody="
    tail = service.encode([]).body[len(head) :]
    bodies = []

    def request_of(chunks):
        return head + "".join(chunks).encode("ascii") + tail

    for part, body in pack_chunks(
        events, max_bytes, len(head) + len(tail), panoply_chunk, request_of
    ):
        bodies.append((part, body))
    return bodies


@SETTINGS
@given(
    st.lists(st.one_of(EVENT, EVENT.map(lambda e: {**e, "__table": "t"})), min_size=1, max_size=12),
    st.sampled_from([900, 2_000, 262_144]),
)
def test_panoply_batch_is_each_record_encoded_alone(panoply, events, max_bytes):
    """issue 14: Panoply's one-call batch encoding is wire-identical, packing included."""
    expected = panoply_reference(panoply, events, max_bytes)
    got = [(part, r.body if r is not None else None) for part, r in panoply.pack(events, max_bytes)]
    assert got == expected
    assert panoply.encode(events).body == panoply_reference(panoply, events, 10**9)[0][1]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"emoji": "\U0001f600 \u00e9"},
        {"mark": [1, MARKS[0], 2]},  # the batch mark between two list items, as in the batch
        {"mark": MARKS[0], MARKS[0]: [MARKS[0]]},
        {"lone": "\ud800"},
    ],
)
def test_panoply_one_call_path_for_plain_records(panoply, extra):
    """The one-call path runs for ordinary records (else this file tests nothing new), and a
    record holding the batch's mark still gets its own bytes."""
    events = [
        {"message": f"m {i} 100% + more", "n": i, **extra, "__table": "logs"} for i in range(50)
    ]
    if not extra or "emoji" in extra:
        assert panoply.quoted_records(events) is not None
    expected = panoply_reference(panoply, events, 2_000)
    got = [(part, r.body if r is not None else None) for part, r in panoply.pack(events, 2_000)]
    assert got == expected and len(got) > 1


@pytest.mark.parametrize(
    "template, cached",
    [
        ("log.{level}", True),
        ("{level:>8}|{level!r}", True),
        ("constant", True),
        ("{logger}.{level}", False),
        ("{level}{user:>4}", False),
    ],
)
def test_samsara_event_names_formatted_once_per_level_are_the_same(template, cached):
    """issue 14: Samsara formats an event-name template that depends only on the level once
    per level; every record still gets the name its own fields give."""
    from loghandlers import SamsaraHandler
    from loghandlers.services.samsara import depends_on_level_only

    assert depends_on_level_only(template) is cached
    handler = SamsaraHandler(url="http://127.0.0.1:9", event_name=template, spool_dir="")
    try:
        service = handler.service
        for fields in [
            {"level": "INFO", "logger": "a", "user": 1},
            {"level": "INFO", "logger": "b", "user": 22},
            {"level": "ERROR", "logger": "a", "user": 333},
            {"level": "INFO", "logger": "c"},
            {"logger": "d"},
        ]:
            values = {**fields, "level": str(fields.get("level", "")).lower()}
            try:
                expected = template.format_map({"logger": "", "user": "", **values})
            except Exception:
                expected = "log.{level}".format_map(values)
            assert service.event_name(fields) == expected
    finally:
        handler.close(timeout=1)


# ----------------------------------------------------------------------------- Kronos, Panoply
SPECIAL_KEYS = ["@time", "stream", "@library", "sourceId", "table", "timestamp", "__table"]
FIELDS = st.dictionaries(
    st.one_of(st.sampled_from(SPECIAL_KEYS), PLAIN_TEXT),
    st.one_of(st.none(), st.integers(), PLAIN_TEXT, st.sampled_from(["", "s.1", "x y"])),
    max_size=6,
).map(lambda f: {"message": "m", "level": "INFO", "logger": "app.x", **f})


def kronos_event_reference(service, fields, created, source_id):
    """KronosService.event as it was written before issue 14 (a generator per record)."""
    from loghandlers.services.kronos import LIBRARY, STREAM, kronos_time, stream_name

    stream = fields.get("stream")
    event = {"@time": kronos_time(fields.get("@time"), created), "@library": LIBRARY}
    event.update((k, v) for k, v in fields.items() if k != "stream" and k != "@time")
    event.setdefault("sourceId", source_id)
    default = stream_name(service.settings.stream or fields.get("logger") or "log")
    event[STREAM] = default if stream in (None, "") else stream_name(stream)
    return event


def kronos_body_reference(service, events):
    """The put body: events grouped by stream in order of first appearance, without the
    stream the pipeline carries in each event."""
    from loghandlers.services.kronos import STREAM, stream_name

    streams: dict = {}
    for event in events:
        stream = event.get(STREAM)
        if not (isinstance(stream, str) and stream):
            stream = stream_name(service.settings.stream or event.get("logger") or "log")
        streams.setdefault(stream, []).append({k: v for k, v in event.items() if k != STREAM})
    body = {"events": streams}
    if service.settings.namespace is not None:
        body = {"namespace": service.settings.namespace, **body}
    return dumps(body).encode("ascii")


@pytest.fixture(scope="module")
def kronos():
    from loghandlers import KronosHandler

    handler = KronosHandler(url="http://127.0.0.1:9", namespace="ns", spool_dir="")
    yield handler.service
    handler.close(timeout=1)


@SETTINGS
@given(st.lists(FIELDS, min_size=1, max_size=6), st.booleans())
def test_kronos_events_and_body_are_what_they_were(kronos, batch, drop_some_streams):
    """issue 14: Kronos's cheaper event mapping and stream grouping are wire-identical (key
    order included), and encode leaves the events as they were (a retry or the spool reads
    them again)."""
    from loghandlers.services.kronos import STREAM

    events = []
    for i, fields in enumerate(batch):
        event = kronos.event(fields, 1_700_000_000.5 + i, "src")
        expected = kronos_event_reference(kronos, fields, 1_700_000_000.5 + i, "src")
        assert list(event.items()) == list(expected.items())
        if drop_some_streams and i % 2:
            del event[STREAM]  # a spooled event from an older version, say
        events.append(event)
    before = [list(e.items()) for e in events]
    assert kronos.encode(events).body == kronos_body_reference(kronos, events)
    assert [list(e.items()) for e in events] == before


def panoply_event_reference(service, fields, created, source_id):
    """PanoplyService.event as it was written before issue 14."""
    from loghandlers.service import iso_utc

    table = fields.get("table")
    event = {"timestamp": iso_utc(created)}
    event.update((k, v) for k, v in fields.items() if k != "table")
    event.setdefault("sourceId", source_id)
    event["__table"] = service.settings.table if table in (None, "") else str(table)
    return event


@SETTINGS
@given(FIELDS)
def test_panoply_event_is_what_it_was(panoply, fields):
    """issue 14: Panoply's cheaper event mapping keeps every key in its place."""
    event = panoply.event(fields, 1_700_000_000.25, "src")
    expected = panoply_event_reference(panoply, fields, 1_700_000_000.25, "src")
    assert list(event.items()) == list(expected.items())


def test_kronos_events_pass_freeze_without_a_copy(kronos):
    """issue 14: the shared ``@library`` value is JSON already, so freezing a Kronos event
    (on the worker, for every record) returns it as it is instead of copying it deeply."""
    from loghandlers.records import freeze

    event = kronos.event({"message": "m", "level": "INFO", "logger": "a"}, 1.5, "src")
    frozen, bad = freeze(event)
    assert frozen is event and bad == 0
    poisoned = {**event, "x": object()}  # anything else still gets its freezing
    frozen, _ = freeze(poisoned)
    assert frozen is not poisoned and frozen["@library"] == event["@library"]


# ----------------------------------------------------------------------------- Initial State
def initialstate_body_reference(events):
    """Each record's fields as ``{"key", "value", "epoch"}`` events (``epoch`` left out when
    the record has no number for it), in one JSON array."""
    out = []
    for record in events:
        epoch = record.get("")
        for key, value in record.items():
            if key == "":
                continue
            event = {"key": key, "value": value}
            if isinstance(epoch, (int, float)):
                event["epoch"] = epoch
            out.append(event)
    return dumps(out).encode("ascii")


IS_VALUES = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    PLAIN_TEXT,
    st.sampled_from(['"epoch": 0}', '{"epoch": 0}', "\ud800"]),
    st.just({"epoch": 0}),  # a value whose own JSON holds the slot the encoder uses
    st.just([{"a": 1, "epoch": 0}]),
)
IS_RECORD = st.builds(
    lambda epoch, fields: {**({"": epoch} if epoch is not None else {}), **fields},
    st.one_of(
        st.none(),
        st.floats(min_value=0, max_value=4e9),
        st.integers(0, 2**40),
        st.sampled_from([float("nan"), True, "1.5", 1_700_000_000.123456789]),
    ),
    st.dictionaries(st.one_of(PLAIN_TEXT, st.just("epoch")), IS_VALUES, min_size=1, max_size=4),
)


@pytest.fixture(scope="module")
def initialstate():
    from loghandlers import InitialStateHandler

    handler = InitialStateHandler(
        url="http://127.0.0.1:9", access_key="a", bucket_key="b", spool_dir=""
    )
    yield handler.service
    handler.close(timeout=1)


@SETTINGS
@given(st.lists(IS_RECORD, min_size=1, max_size=8))
def test_initialstate_epoch_written_once_per_record_is_the_same_wire(initialstate, records):
    """issue 14: Initial State writes each record's epoch text once (not once per field),
    and the body is byte for byte the per-event encoding."""
    assert initialstate.encode(records).body == initialstate_body_reference(records)
