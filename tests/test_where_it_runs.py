"""Where it runs: gunicorn worker kinds and recycling, asyncio, a Django-style ``LOGGING``
dict (issue 10; the README's "Where it runs" table names these tests).

Each scenario runs in a subprocess on the interpreter running the suite (CI runs the suite
on every interpreter this machine has), against a collector in this process, and checks
that every record logged arrived once, under the source id of the process that logged it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from loghandlers.collector import Collector
from tests.where_table import record

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HOST = socket.gethostname()
needs_gunicorn = pytest.mark.skipif(
    importlib.util.find_spec("gunicorn") is None or not hasattr(os, "fork"),
    reason="needs gunicorn (pip install gunicorn)",
)
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def clean_env(collector, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env["LOGHANDLERS_JSON_URL"] = f"{collector.url}/json"
    env["LOGHANDLERS_SPOOL_DIR"] = str(tmp_path / "spool")
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    with _no_proxy.open(url, timeout=10) as response:
        return int(response.read())


@needs_gunicorn
@pytest.mark.parametrize(
    "options",
    [
        ["--worker-class", "gthread", "--threads", "4"],
        ["--max-requests", "5", "--max-requests-jitter", "0"],
        ["--worker-class", "gthread", "--threads", "4", "--preload"],
    ],
    ids=["gthread", "max-requests", "gthread-preload"],
)
def test_gunicorn_workers_deliver_every_request_under_their_own_ids(tmp_path, options, request):
    """issue 10: gunicorn's threaded workers (``gthread``, with and without ``--preload``)
    and recycled workers (``--max-requests``: a worker exits after 5 requests and a fresh
    one is forked) deliver every request's record, under the pid that served it."""
    port = _free_port()
    requests = 48
    with Collector(port=0, db=":memory:") as collector:
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", *options]
        proc = subprocess.Popen(
            [*command, "gunicorn_app:app"],
            cwd=EXAMPLES,
            env=clean_env(collector, tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.stdout.read()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "gunicorn never listened"
                    time.sleep(0.05)
            urls = [f"http://127.0.0.1:{port}/t/{i}" for i in range(requests)]
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                served_by = collections.Counter(pool.map(_get, urls))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
        assert proc.returncode == 0, output
        events = [row["event"] for row in collector.events(service="json")]
    assert sorted(e["path"] for e in events) == sorted(f"/t/{i}" for i in range(requests))
    sources = collections.Counter(e["sourceId"] for e in events)
    assert sources == collections.Counter({f"{HOST}:{pid}": n for pid, n in served_by.items()})
    assert f"{HOST}:{proc.pid}" not in sources
    if "--max-requests" in options:
        assert len(sources) >= requests // 5  # recycled workers: each one's records arrived
    record(request.node.name, requests, len(events), len(sources))


ASYNCIO_APP = """
import asyncio, logging, os
from loghandlers import JSONHandler

log = logging.getLogger("async_app")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(JSONHandler())

async def request(i):
    log.info("request %d", i, extra={"pid": os.getpid(), "where": "loop"})
    await asyncio.sleep(0.001)
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: log.info("blocking part %d", i, extra={"pid": os.getpid(), "where": "executor"})
    )

async def main():
    await asyncio.gather(*(request(i) for i in range(200)))

asyncio.run(main())
print("logged 400")
"""


def test_asyncio_app_delivers_from_the_loop_and_its_executor(tmp_path, request):
    """issue 10: an asyncio app logging from coroutines and from run_in_executor threads,
    leaving through asyncio.run's end: every record arrives (the exit drain runs after the
    loop's executor is shut down)."""
    with Collector(port=0, db=":memory:") as collector:
        done = subprocess.run(
            [sys.executable, "-c", ASYNCIO_APP],
            env=clean_env(collector, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "logged 400" in done.stdout
        events = [row["event"] for row in collector.events(service="json")]
    assert collections.Counter(e["where"] for e in events) == {"loop": 200, "executor": 200}
    assert len({e["message"] for e in events}) == 400
    assert {e["sourceId"] for e in events} == {f"{HOST}:{events[0]['pid']}"}
    record(request.node.name, 400, len(events), 1)


DJANGO_STYLE = """
import json, logging, logging.config, os, sys

# Module-level loggers exist before settings are applied, as in a Django project.
views_log = logging.getLogger("shop.views")
other_log = logging.getLogger("unlisted.module")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": DISABLE,
    "formatters": {
        "verbose": {"format": "{levelname} {name} {message}", "style": "{"},
    },
    "filters": {"info_up": {"()": "logging.Filter", "name": ""}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "ship": {
            "class": "loghandlers.JSONHandler",
            "level": "INFO",
            "formatter": "verbose",
            "filters": ["info_up"],
            "url": os.environ["LOGHANDLERS_JSON_URL"],
            "flush_interval": "0.5",
            "static_fields": {"app": "shop"},
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "shop": {"handlers": ["ship"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["ship"], "level": "ERROR", "propagate": False},
    },
}
logging.config.dictConfig(LOGGING)

logging.getLogger("shop").info("order %s paid", 1001)
views_log.info("view rendered")  # a child of a configured logger: never disabled
logging.getLogger("django.request").error("Internal Server Error: /cart")
logging.getLogger("django.request").info("not shipped: below ERROR")
other_log.warning("only to the console, if not disabled")
print(json.dumps({"disabled": other_log.disabled}))
"""


@pytest.mark.parametrize("disable", [True, False], ids=["disable-existing", "keep-existing"])
def test_django_style_logging_dict(tmp_path, disable, request):
    """issue 10: a Django-style ``LOGGING`` dict (``"class": "loghandlers.JSONHandler"``
    with a ``{``-style formatter, a filter, string options, ``disable_existing_loggers``)
    configures on every interpreter, 3.12.0-3.12.3 included, and ships what it routes."""
    script = DJANGO_STYLE.replace("DISABLE", str(disable))
    with Collector(port=0, db=":memory:") as collector:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=clean_env(collector, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        events = [row["event"] for row in collector.events(service="json")]
    assert json.loads(done.stdout)["disabled"] is disable
    assert [(e["logger"], e["message"]) for e in events] == [
        ("shop", "INFO shop order 1001 paid"),
        ("shop.views", "INFO shop.views view rendered"),
        ("django.request", "ERROR django.request Internal Server Error: /cart"),
    ]
    assert all(e["app"] == "shop" for e in events)
    assert ("only to the console" in done.stderr) is not disable
    assert "Traceback" not in done.stderr
    record(request.node.name, 3, len(events), 1, "3 routed to the handler; 1 below its level")
