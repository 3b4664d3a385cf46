"""Issue 15: the typed face of the public API agrees with the options table, and type checks.

``loghandlers/option_types.py`` describes each handler's options to IDEs and type
checkers; the options table stays the truth, and these tests fail when the two differ.
"""

from __future__ import annotations

import inspect
import pathlib
import subprocess
import sys
import typing

import pytest

from loghandlers import option_types
from loghandlers.__main__ import handler_classes
from loghandlers.options import COMMON, SPOOL_DEFAULT
from loghandlers.status import EVENTS, Event, HandlerStats, SpoolSummary

ROOT = pathlib.Path(__file__).resolve().parent.parent
TYPED_NAMES = {
    "samsara": "SamsaraOptions",
    "initialstate": "InitialStateOptions",
    "panoply": "PanoplyOptions",
    "kronos": "KronosOptions",
    "json": "JSONOptions",
    "otlp": "OTLPOptions",
}


def test_every_handler_has_typed_options():
    assert set(handler_classes()) == set(TYPED_NAMES)


@pytest.mark.parametrize("service", sorted(TYPED_NAMES))
def test_typed_options_are_the_options_table(service):
    cls = handler_classes()[service]
    typed = getattr(option_types, TYPED_NAMES[service])
    table = [spec.name for spec in COMMON + tuple(cls.service_class.options)]
    assert set(typing.get_type_hints(typed)) == set(table)
    assert f"Unpack[{TYPED_NAMES[service]}]" in inspect.getsource(cls), (
        f"{cls.__name__}.__init__ does not show its options to type checkers"
    )


def _fits(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is typing.Union:
        return any(_fits(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float))
    return isinstance(value, origin or annotation)


@pytest.mark.parametrize("service", sorted(TYPED_NAMES))
def test_each_default_fits_its_declared_type(service):
    cls = handler_classes()[service]
    hints = typing.get_type_hints(getattr(option_types, TYPED_NAMES[service]))
    for spec in COMMON + tuple(cls.service_class.options):
        if spec.default is not SPOOL_DEFAULT:
            assert _fits(spec.default, hints[spec.name]), (spec.name, spec.default)


def test_stats_keys_are_the_typed_dict(tmp_path):
    handler = handler_classes()["json"](url="http://127.0.0.1:9", spool_dir=str(tmp_path))
    try:
        stats = handler.stats()
    finally:
        handler.close(timeout=0)
    assert set(stats) == set(typing.get_type_hints(HandlerStats))
    assert set(stats["spool"]) == set(typing.get_type_hints(SpoolSummary))
    assert EVENTS == typing.get_args(Event)


def _mypy(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_mypy_is_clean_and_a_strictly_typed_program_can_use_the_public_api():
    """CI runs mypy too; here it fails before a landing rather than after. One test, so
    two mypy processes never share the cache at once."""
    done = _mypy("loghandlers")
    assert done.returncode == 0, done.stdout + done.stderr
    done = _mypy("--strict", "--follow-imports=silent", "tests/typecheck/public_api.py")
    assert done.returncode == 0, done.stdout + done.stderr
