"""Bad input never crashes the app and never costs the record or its batch."""

import datetime
import decimal
import json
import logging
import math
import uuid

from loghandlers.records import dumps


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")

    __str__ = __repr__


class LogsInRepr:
    def __repr__(self):
        logging.getLogger("inside.repr").warning("logged from __repr__")
        return "<LogsInRepr>"


def strict_loads(text):
    def refuse(constant):
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_unserializable_extras_are_replaced_and_the_batch_survives(server, make_handler, logger):
    handler = make_handler(url=server.url)
    logger.addHandler(handler)
    cyclic = []
    cyclic.append(cyclic)
    logger.info("before")
    logger.info(
        "odd values",
        extra={
            "obj": object(),
            "a_set": {3, 1, 2},
            "raw": b"\xff\xfebytes",
            "when": datetime.datetime(2026, 1, 2, 3, 4, 5),
            "money": decimal.Decimal("12.50"),
            "nan": float("nan"),
            "inf": float("-inf"),
            "cyclic": cyclic,
            "id": uuid.UUID(int=1),
            "bad_repr": Unprintable(),
            "tuple_keys": {(1, 2): "x"},
        },
    )
    logger.info("after")
    assert handler.flush(timeout=10)
    for request in server.requests:
        strict_loads(request.decoded())  # no bare NaN/Infinity anywhere
    events = {e["message"]: e for e in server.events}
    assert set(events) == {"before", "odd values", "after"}
    odd = events["odd values"]
    assert odd["obj"].startswith("<object object")
    assert odd["a_set"] == [1, 2, 3]
    assert odd["raw"] == "\\xff\\xfebytes"
    assert odd["when"] == "2026-01-02T03:04:05"
    assert odd["money"] == "12.50"
    assert odd["nan"] == "NaN" and odd["inf"] == "-Infinity"
    assert odd["cyclic"] == ["<cycle>"]
    assert odd["id"] == str(uuid.UUID(int=1))
    assert odd["bad_repr"] == "<unrepresentable Unprintable>"
    assert odd["tuple_keys"] == {"(1, 2)": "x"}


def test_a_message_whose_str_raises_is_delivered_with_a_placeholder(server, make_handler, logger):
    handler = make_handler(url=server.url)
    logger.addHandler(handler)
    logger.info("value: %s", Unprintable())
    logger.info("too few args %s %s", 1)
    assert handler.flush(timeout=10)
    first, second = (e["message"] for e in server.events)
    assert first.startswith("<unformattable message: 'value: %s'")
    assert second.startswith("<unformattable message: 'too few args %s %s'")


def test_lone_surrogates_become_replacement_characters(server, make_handler, logger):
    handler = make_handler(url=server.url)
    logger.addHandler(handler)
    logger.info("bad \udcff unicode", extra={"k\ud800": "v\udfff"})
    logger.info("good \U0001f600 emoji")
    assert handler.flush(timeout=10)
    bad, good = server.events
    assert bad["message"] == "bad \ufffd unicode" and bad["k\ufffd"] == "v\ufffd"
    assert good["message"] == "good \U0001f600 emoji"
    for request in server.requests:
        request.decoded().decode("ascii")


def test_a_10mb_message_is_delivered_truncated(server, make_handler, logger):
    handler = make_handler(url=server.url, max_batch_bytes=1024 * 1024)
    logger.addHandler(handler)
    logger.info("m" * (10 * 1024 * 1024))
    logger.info("small neighbour")
    assert handler.flush(timeout=30)
    big, small = server.events
    assert big["message"].startswith("mmm") and "truncated" in big["message"]
    assert small["message"] == "small neighbour"


def test_logging_inside_a_repr_called_on_the_worker_is_not_shipped(server, make_handler, logger):
    handler = make_handler(url=server.url)
    logger.addHandler(handler)
    inner = logging.getLogger("inside.repr")
    inner.addHandler(handler)
    try:
        logger.info("carrier", extra={"thing": LogsInRepr()})
        assert handler.flush(timeout=10)
        assert [e["message"] for e in server.events] == ["carrier"]
        assert server.events[0]["thing"] == "<LogsInRepr>"
        assert handler.stats()["suppressed"] >= 1
    finally:
        inner.removeHandler(handler)


def test_exception_and_stack_text_are_captured_at_call_time(server, make_handler, logger):
    handler = make_handler(url=server.url)
    logger.addHandler(handler)
    try:
        raise KeyError("gone")
    except KeyError:
        logger.exception("failed")
    logger.info("with stack", stack_info=True)
    assert handler.flush(timeout=10)
    failed, stacked = server.events
    assert failed["level"] == "ERROR" and "KeyError: 'gone'" in failed["exc_info"]
    assert "test_exception_and_stack_text" in stacked["stack_info"]


def test_dict_messages_become_fields(server, make_handler, logger):
    handler = make_handler(url=server.url)
    logger.addHandler(handler)
    logger.info({"action": "login", "user": 3})
    assert handler.flush(timeout=10)
    event = server.events[0]
    assert event["action"] == "login" and event["user"] == 3 and event["message"] == ""


def test_dumps_is_strict_for_any_value():
    text = dumps({"x": [math.nan, math.inf, {1: {2, 3}}], "y": Unprintable()})
    assert strict_loads(text) == {
        "x": ["NaN", "Infinity", {"1": [2, 3]}],
        "y": "<unrepresentable Unprintable>",
    }


def test_a_plain_formatter_writes_the_message_and_its_traceback_once(server, make_handler, logger):
    handler = make_handler(url=server.url)
    handler.setFormatter(logging.Formatter("%(name)s| %(message)s"))
    logger.addHandler(handler)
    try:
        raise ValueError("nope")
    except ValueError:
        logger.exception("failed")
    assert handler.flush(timeout=10)
    event = server.events[0]
    assert event["message"].startswith(f"{logger.name}| failed\nTraceback")
    assert event["message"].count("ValueError: nope") == 1
    assert "exc_info" not in event
