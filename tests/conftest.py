import logging
import os

import pytest

from tests.faultserver import FaultServer


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No LOGHANDLERS_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LOGHANDLERS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def make_handler(tmp_path):
    """Build handlers that are always closed, with a private spool directory."""
    made = []

    def make(cls=None, **options):
        if cls is None:
            from loghandlers import JSONHandler as cls
        options.setdefault("spool_dir", str(tmp_path / "spool"))
        options.setdefault("flush_interval", 0.05)
        options.setdefault("close_timeout", 5)
        handler = cls(**options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close(timeout=2)


@pytest.fixture
def logger(request):
    """A private logger that does not propagate to the root logger."""
    log = logging.getLogger(f"test.{request.node.name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
