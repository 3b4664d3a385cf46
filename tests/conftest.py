"""Fixtures every test module shares: the loopback server, handler factories, a logger."""

import logging
import os

import pytest

try:
    import fcntl
except ImportError:  # Windows: no flock; "alone" tests then share the machine
    fcntl = None  # type: ignore[assignment]

from tests.helpers import FAST
from tests.loopback import LoopbackServer, ok


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No LOGHANDLERS_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LOGHANDLERS_"):
            monkeypatch.delenv(name)


def pytest_collection_modifyitems(items):
    """Tests marked ``alone`` go last: they wait for every other test to finish anyway."""
    items.sort(key=lambda item: item.get_closest_marker("alone") is not None)


@pytest.fixture(autouse=True)
def alone_when_marked(request, tmp_path_factory):
    """Under pytest-xdist, a test marked ``alone`` runs while no other test runs.

    Tests that bound a wall-clock duration (``close()`` within its deadline) are marked:
    on a 2-core machine a neighbour's CPU burst could otherwise eat their slack. Every
    test holds ``alone.lock`` shared, an ``alone`` test holds it exclusive. Collected last,
    an ``alone`` test waits at most until the other workers run out of tests, so the wait
    is bounded by the suite's own (bounded) tests.
    """
    if fcntl is None or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    alone = request.node.get_closest_marker("alone") is not None
    with open(tmp_path_factory.getbasetemp().parent / "alone.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def server_default():
    """What ``server`` answers once its script is empty; a service's test module overrides
    this with that service's success reply."""
    return ok()


@pytest.fixture
def server(server_default):
    """A :class:`tests.loopback.LoopbackServer` on 127.0.0.1, stopped after the test."""
    with LoopbackServer(default=server_default) as srv:
        yield srv


@pytest.fixture
def handler_class():
    """The handler ``make`` builds; a service's test module overrides this."""
    from loghandlers import JSONHandler

    return JSONHandler


@pytest.fixture
def make(handler_class, tmp_path):
    """Build ``handler_class`` handlers with :data:`tests.helpers.FAST` options (nothing
    ships until ``flush()``) and a private spool; all are closed after the test."""
    made = []

    def build(**options):
        handler = handler_class(**{**FAST, "spool_dir": str(tmp_path / "spool"), **options})
        made.append(handler)
        return handler

    yield build
    for handler in made:
        handler.close()


@pytest.fixture
def make_handler(tmp_path):
    """Build handlers that ship on their own (50 ms flushes), with a private spool
    directory; all are closed after the test."""
    made = []

    def build(cls=None, **options):
        if cls is None:
            from loghandlers import JSONHandler as cls
        options.setdefault("spool_dir", str(tmp_path / "spool"))
        options.setdefault("flush_interval", 0.05)
        options.setdefault("close_timeout", 5)
        handler = cls(**options)
        made.append(handler)
        return handler

    yield build
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
