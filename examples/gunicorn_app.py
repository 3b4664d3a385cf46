"""A tiny WSGI app that logs each request, under gunicorn with several pre-forked workers.

Each worker ships its records under its own source id ``"<hostname>:<pid>"``. The app's
logging setup is two lines at import (the handler reads its URL from
``LOGHANDLERS_JSON_URL``), and works whether gunicorn imports the app in each worker or,
with ``preload_app``, once in the master before forking (see gunicorn.conf.py).

    pip install gunicorn
    python examples/gunicorn_app.py

runs the whole demo: a local collector in this process, gunicorn (3 workers, on a free
loopback port) in a subprocess, a few concurrent requests, SIGTERM, and what arrived per
source id; once as configured, once with ``--preload``. By hand:

    python -m loghandlers collect --port 8787 &
    LOGHANDLERS_JSON_URL=http://127.0.0.1:8787/json \
        gunicorn -c examples/gunicorn.conf.py --chdir examples gunicorn_app:app &
    curl http://127.0.0.1:8000/orders/1; curl http://127.0.0.1:8000/orders/2
    kill %2; python -m loghandlers events --service json
"""

import collections
import concurrent.futures
import importlib.util
import logging
import os
import pathlib
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from loghandlers import JSONHandler

log = logging.getLogger("app")


def setup_logging() -> None:
    # url (and any other option) from LOGHANDLERS_JSON_URL, LOGHANDLERS_JSON_*, LOGHANDLERS_*
    log.addHandler(JSONHandler())
    log.setLevel(logging.INFO)


def app(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    log.info("%s %s", environ["REQUEST_METHOD"], path, extra={"path": path, "pid": os.getpid()})
    time.sleep(0.02)  # a little work, so concurrent requests spread over the workers
    body = f"{os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ != "__main__":  # imported by gunicorn: in each worker, or in the master to preload
    setup_logging()


# --------------------------------------------------------------------------- the demo

HERE = pathlib.Path(__file__).resolve().parent
CONCURRENCY = 6
MIN_ROUNDS, MAX_ROUNDS = 4, 25  # rounds of CONCURRENCY requests
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited early with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"gunicorn did not listen on port {port} within {timeout} s")


def get(url: str) -> int:
    """GET url; return the pid of the worker that answered."""
    with _no_proxy.open(url, timeout=10) as response:
        return int(response.read())


def send_requests(port: int, workers: int) -> collections.Counter:
    """Concurrent requests, in rounds, until every worker has answered (bounded)."""
    served_by: collections.Counter = collections.Counter()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        for round_ in range(MAX_ROUNDS):
            first = round_ * CONCURRENCY
            urls = [f"http://127.0.0.1:{port}/orders/{first + i}" for i in range(CONCURRENCY)]
            served_by.update(pool.map(get, urls))
            # workers boot at their own pace: the first one up takes whatever is waiting
            if round_ + 1 >= MIN_ROUNDS and len(served_by) >= workers:
                break
    return served_by


def run_gunicorn(collector, spool_dir: str, preload: bool) -> dict:
    """Serve some requests under gunicorn, stop it with SIGTERM; report what arrived."""
    config = HERE / "gunicorn.conf.py"
    workers = runpy.run_path(str(config))["workers"]
    port = free_port()
    channel = "preload" if preload else "default"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env["LOGHANDLERS_JSON_URL"] = f"{collector.url}/json/{channel}"
    env["LOGHANDLERS_SPOOL_DIR"] = spool_dir
    command = [sys.executable, "-m", "gunicorn", "-c", str(config)]
    command += ["--chdir", str(HERE), "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    command += ["--preload"] if preload else []
    proc = subprocess.Popen([*command, "gunicorn_app:app"], env=env)
    try:
        wait_for_port(port, proc)
        served_by = send_requests(port, workers)
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: workers finish, drain and exit
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    mode = "with" if preload else "without"
    print(
        f"{mode} preload_app: master pid {proc.pid}, exit status {proc.returncode}, "
        f"{sum(served_by.values())} requests answered by {len(served_by)} of {workers} workers"
    )
    host = socket.gethostname()
    master = f"{host}:{proc.pid}"
    by_source = collections.Counter()
    own_pid = True
    for row in collector.events(service="json", channel=channel):
        event = row["event"]
        by_source[event["sourceId"]] += 1
        own_pid = own_pid and event["sourceId"] == f"{host}:{event['pid']}"
    for source, count in sorted(by_source.items()):
        print(f"  worker {source:<24} {count} events")
    print(
        f"  {sum(by_source.values())} events from {len(by_source)} source ids; "
        f"master's among them: {master in by_source}; "
        f"each under the pid of the worker that served it: {own_pid}"
    )
    return by_source


def main() -> None:
    if importlib.util.find_spec("gunicorn") is None:
        sys.exit("this example needs gunicorn: pip install gunicorn")
    from loghandlers.collector import Collector

    with Collector(port=0, db=":memory:") as collector, tempfile.TemporaryDirectory() as spool_dir:
        print(f"collector at {collector.url}")
        for preload in (False, True):
            run_gunicorn(collector, spool_dir, preload)


if __name__ == "__main__":
    main()
