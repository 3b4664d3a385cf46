"""Property: record -> event -> wire -> collector round-trips, for each of the five handlers.

Random messages and random ``extra=`` dicts of JSON-ish values (nested lists and dicts,
floats including NaN and infinities, integers far beyond 64 bits, keys that are Python
identifiers or any text) are logged through each handler to the local collector, which
validates like the real services. Each record must arrive exactly once, and what the
collector stored must decode to the value logged after the documented replacements
(README "What happens to bad input"; the docstrings of ``loghandlers/services/*.py``):
NaN/Infinity become strings, tuples lists, and text is what JSON's UTF-16 escapes mean
(see :func:`expected_text`).

One collector and one handler per test function (not per example) keep this file fast;
examples are derandomized, so a run is repeatable.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loghandlers import (
    InitialStateHandler,
    JSONHandler,
    KronosHandler,
    PanoplyHandler,
    SamsaraHandler,
    __version__,
)
from loghandlers.collector import Collector
from loghandlers.records import RESERVED

SERVICES = ("json", "samsara", "initialstate", "panoply", "kronos")
PANOPLY_SECRET = (
    "UkFORDI+Pj4vMGUxZjJhM2ItNWVjNy00ZTdhLTljMWQtNWVjN2U3MDAwMDAxLzEyMzQ1Njc4OTAxMi9ldS13ZXN0LTE="
)
MAX_EXAMPLES = 100
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# ----------------------------------------------------------------------------- strategies
_PROBE = logging.LogRecord("probe", logging.INFO, __file__, 0, "", (), None)
#: keys ``logging`` refuses in extra=, keys python-json-logger reserves, and the fields each
#: service gives a meaning of its own (those are covered by the services' own tests)
EXCLUDED_KEYS = (
    set(_PROBE.__dict__)
    | {"message", "asctime"}
    | set(RESERVED)
    | {"probe", "key", "timestamp", "sourceId", "eventName", "table", "stream", "level"}
    | {"logger", "exc_info", "stack_info", "receivedAt", "publishedAt", "__table"}
    | {"@time", "@library", "@stream", "@id", "epoch"}
)
PIECES = ["\U0001f600", "\u00e9", "abcd", "\x00", "\\", '"', "%s", "\n", "\u2028", "\ufeff"]
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def texts(surrogates: bool):
    parts = [st.characters(), st.sampled_from(PIECES)]
    if surrogates:
        parts += [SURROGATE, st.just("\ud83d\ude00")]  # lone ones, and a pair as two
    return st.lists(st.one_of(*parts), max_size=12).map("".join)


def extras(surrogates: bool):
    text = texts(surrogates)
    keys = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True), text)
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([2**63, -(2**63) - 1, 10**40, -(10**40)]),
        st.floats(allow_nan=True, allow_infinity=True),
        text,
    )
    values = st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(text, children, max_size=4),
        ),
        max_leaves=10,
    )
    return st.dictionaries(keys.filter(lambda k: k not in EXCLUDED_KEYS), values, max_size=5)


LEVELS = st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR])


# ----------------------------------------------------------------------------- the model
def expected_text(text: str) -> str:
    """What a Python str becomes on the strict-JSON wire: a high+low surrogate pair is the
    character the pair encodes (as JSON's \\uXXXX escapes and ``json.dumps`` have it), any
    other surrogate is U+FFFD, and the result must not depend on other values in the batch."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def expected(value):
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, str):
        return expected_text(value)
    if isinstance(value, (list, tuple)):
        return [expected(item) for item in value]
    out = {}
    for key, item in value.items():
        out[expected_text(key)] = expected(item)
    return out


def iso(created: float) -> str:
    second = int(created)
    moment = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((created - second) * 1000):03d}Z"


def strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def common_fields(record, message, extra) -> dict:
    fields = {
        "message": expected_text(message),
        "level": record.levelname,
        "logger": record.name,
    }
    for key, value in extra.items():
        fields[expected_text(key)] = expected(value)
    return fields


def raw_key(name: str) -> str:
    if len(name) > 250:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{name[:241]}~{digest}"
    return name


def log_object_model(prefix: str, value) -> list:
    """A non-empty list, tuple or dict field is flattened one level, as log_object does."""
    if isinstance(value, (list, tuple)) and value:
        return [(f"{prefix}_{i}", item) for i, item in enumerate(value)]
    if isinstance(value, dict) and value:
        return [(f"{prefix}_{k}", item) for k, item in value.items()]
    return [(prefix, value)]


def is_value(value):
    if isinstance(value, (str, float)):
        return expected(value)
    if isinstance(value, int):  # bool too
        return value
    return ("json text", expected(value))


# ----------------------------------------------------------------------------- per service
class Catcher(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def build(service: str, url: str, spool_dir: str):
    common = dict(spool_dir=spool_dir, flush_interval=3600, retries=0, timeout=10)
    if service == "json":
        return JSONHandler(url=url + "/json", **common)
    if service == "samsara":
        return SamsaraHandler(url=url, **common)
    if service == "initialstate":
        return InitialStateHandler(url=url, access_key="ist_key", bucket_key="bk", **common)
    if service == "panoply":
        return PanoplyHandler(
            url=url + "/123456789012/sdk-acct-RAND2",
            api_key="acct/r1",
            api_secret=PANOPLY_SECRET,
            **common,
        )
    return KronosHandler(url=url, namespace="ns", **common)


def check_rows(service, rows, handler, record, message, extra, n) -> None:
    """Compare what the collector stored for one record with the model."""
    events = [row["event"] for row in rows]
    source = handler.source_id
    if service == "initialstate":
        key = f"p{n}"
        by_key = {}  # one value per key in a record: a later field flattened onto it wins
        if message or not extra:
            by_key[key] = expected_text(message)
        for name, value in extra.items():
            for sub_key, sub_value in log_object_model(f"{key}_{name}", value):
                by_key[raw_key(sub_key)] = is_value(sub_value)
        want = [{"key": expected_text(k), "value": v} for k, v in by_key.items()]
        assert len(events) == len(want), events
        for got, wanted in zip(events, want):
            assert got["epoch"] == record.created
            assert got["key"] == wanted["key"]
            if isinstance(wanted["value"], tuple):  # a nested value travels as JSON text
                assert isinstance(got["value"], str)
                assert strict_loads(got["value"]) == wanted["value"][1]
            else:
                assert got["value"] == wanted["value"]
                assert type(got["value"]) is type(wanted["value"])
        return
    assert len(events) == 1, events  # exactly once
    event = dict(events[0])
    want = common_fields(record, message, extra)
    want["probe"] = n
    if service == "json":
        want.update(timestamp=iso(record.created), sourceId=source)
    elif service == "samsara":
        assert isinstance(event.pop("receivedAt"), int)
        assert isinstance(event.pop("publishedAt"), int)
        want.update(
            eventName=f"log.{record.levelname.lower()}",
            sourceId=source,
            timestamp=int(record.created * 1000),
        )
    elif service == "panoply":
        want.update(timestamp=iso(record.created), sourceId=source, __table="logs")
        assert rows[0]["channel"] == "logs"
    else:  # kronos
        assert isinstance(event.pop("@id"), str)
        want.update(sourceId=source)
        want["@time"] = int(record.created * 1e7)
        want["@library"] = {"version": __version__, "name": "loghandlers"}
        assert rows[0]["channel"] == "prop.kronos" and rows[0]["namespace"] == "ns"
    assert event == want


def round_trip(service: str, tmp_path, surrogates: bool, examples=()):
    with Collector(port=0, db=":memory:") as collector:
        handler = build(service, collector.url, str(tmp_path / "spool"))
        catcher = Catcher()
        log = logging.getLogger(f"prop.{service}")
        log.propagate = False
        log.setLevel(logging.DEBUG)
        log.handlers[:] = [catcher, handler]
        state = {"n": 0, "last_id": None}

        def one(message, extra, level):
            state["n"] += 1
            n = state["n"]
            tag = {"key": f"p{n}"} if service == "initialstate" else {"probe": n}
            log.log(level, message, extra={**extra, **tag})
            assert handler.flush(timeout=20)
            rows = collector.events(service=service, after_id=state["last_id"])
            if rows:
                state["last_id"] = rows[-1]["id"]
            for request in collector.requests(service=service)[-1:]:
                assert request["status"] < 300, request["status"]
            check_rows(service, rows, handler, catcher.records[-1], message, extra, n)

        test = given(message=texts(surrogates), extra=extras(surrogates), level=LEVELS)(one)
        for chosen in examples:
            test = example(**chosen)(test)
        try:
            SETTINGS(test)()
            assert state["n"] >= MAX_EXAMPLES  # the examples did run
            stats = handler.stats()
            assert stats["sent"] == state["n"], stats
            assert stats["rejected"] == stats["failed"] == stats["spooled"] == 0, stats
        finally:
            log.handlers[:] = []
            handler.close()


@pytest.mark.parametrize("service", SERVICES)
def test_round_trip(service, tmp_path):
    """Any text but surrogates: everything else a record can carry."""
    round_trip(
        service,
        tmp_path,
        surrogates=False,
        examples=[
            {"message": "", "extra": {}, "level": logging.INFO},
            {
                "message": "m",
                "extra": {"x" * 260: [1.5, float("nan"), {"\u00e9": (None, 2**80)}]},
                "level": logging.WARNING,
            },
        ],
    )


@pytest.mark.parametrize("service", SERVICES)
def test_round_trip_with_surrogates(service, tmp_path):
    """Any unicode, lone and paired surrogates included."""
    round_trip(
        service,
        tmp_path,
        surrogates=True,
        examples=[
            {"message": "caf\u00e9\udc80", "extra": {}, "level": logging.INFO},
            {"message": "\ud83d\ude00", "extra": {"r": float("nan")}, "level": logging.INFO},
        ],
    )
