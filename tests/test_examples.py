"""Every example runs on its own, against its own local collector, and shows what arrived.

Each example runs as a subprocess exactly as examples/README.md says (``python
examples/x.py`` from the repository root), without any LOGHANDLERS_* variable from the
outer shell, and must exit 0 within a bounded time and print the expected counts.
"""

import collections
import concurrent.futures
import importlib.util
import multiprocessing
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from loghandlers.collector import Collector

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HOST = socket.gethostname()
TIMEOUT = 60  # seconds for one example; each takes a few
HAS_GUNICORN = importlib.util.find_spec("gunicorn") is not None
needs_gunicorn = pytest.mark.skipif(
    not HAS_GUNICORN or not hasattr(os, "fork"), reason="needs gunicorn (pip install gunicorn)"
)
COUNT_LINE = re.compile(r"^  (\w+) +(\d+) events$", re.M)


def clean_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # a default spool would land here
    env.update(extra)
    return env


def run_example(name, tmp_path, **env):
    done = subprocess.run(
        [sys.executable, f"examples/{name}"],
        cwd=ROOT,
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, (
        f"{name} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def counts(stdout):
    """{service: n} from the "  service   n events" lines."""
    return {service: int(n) for service, n in COUNT_LINE.findall(stdout)}


def test_examples_readme_lists_every_example():
    listed = (EXAMPLES / "README.md").read_text()
    for path in EXAMPLES.iterdir():
        if path.suffix in (".py", ".yaml", ".ini"):
            assert f"`{path.name}`" in listed, path.name
    for script in EXAMPLES.glob("*.py"):
        if script.name != "gunicorn.conf.py":
            assert f"python examples/{script.name}`" in listed, script.name


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", tmp_path)
    assert counts(out) == {
        "samsara": 3,
        "initialstate": 8,
        "panoply": 3,
        "kronos": 3,
        "json": 3,
    }


def test_dictconfig_yaml(tmp_path):
    out = run_example("dictconfig_yaml.py", tmp_path)
    assert counts(out) == {"json": 3, "kronos": 1}  # Kronos only gets WARNING and worse
    assert "INFO    shop: order 1001 paid" in out  # the stdlib console handler, too
    assert out.count('"app": "shop", "env": "demo"') == 3  # the JSON formatter's fields
    assert '"logger": "shop"' in out and '"stream"' not in out


def test_dictconfig_yaml_says_how_to_install_pyyaml(tmp_path):
    fake = tmp_path / "nopyyaml" / "yaml"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no yaml here')\n")
    done = subprocess.run(
        [sys.executable, "examples/dictconfig_yaml.py"],
        cwd=ROOT,
        env=clean_env(tmp_path, PYTHONPATH=str(fake.parent)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1
    assert "pip install pyyaml" in done.stderr


def test_fileconfig_ini(tmp_path):
    out = run_example("fileconfig_ini.py", tmp_path)
    assert counts(out) == {"samsara": 3, "json": 2}  # the JSON handler's level is WARNING
    # kwargs= reached the handlers: event_name, source_id, static_fields, the formatter
    assert out.count('"eventName": "shop.') == 3
    assert out.count('"sourceId": "web-1"') == 3
    assert '"message": "WARNING [shop] stock low"' in out
    assert out.count('"app": "shop"') == 2


def test_env_only(tmp_path):
    out = run_example("env_only.py", tmp_path)
    flush = dict(re.findall(r"^  (\w+Handler\(\S*\)) +(\S+) ", out, re.M))
    assert flush == {
        "JSONHandler()": "0.25",  # LOGHANDLERS_JSON_FLUSH_INTERVAL beats LOGHANDLERS_FLUSH_INTERVAL
        "SamsaraHandler()": "2.0",  # only LOGHANDLERS_FLUSH_INTERVAL applies
        "JSONHandler(flush_interval=0.1)": "0.1",  # an argument beats both
    }
    assert (
        "bad value: invalid batch_size='lots' from environment variable "
        "LOGHANDLERS_JSON_BATCH_SIZE" in out
    )
    assert counts(out) == {"json": 2, "samsara": 2}
    assert out.count('"app": "shop", "env": "demo"') == 4  # LOGHANDLERS_STATIC_FIELDS
    assert out.count('"sourceId": "web-1"') == 2  # LOGHANDLERS_SAMSARA_SOURCE_ID
    assert out.count('"eventName": "shop.') == 2  # LOGHANDLERS_SAMSARA_EVENT_NAME


def test_panoply_datasource_example(tmp_path):
    """issue 12: the SQLite data source runs under the runner, resumes from its state."""
    out = run_example("panoply_datasource.py", tmp_path)
    assert counts(out) == {"panoply": 2800}  # 2500 rows, then the 300 added before run 2
    assert "tables ['orders']; ids 1..2800, each once: True" in out
    assert out.count("exit status 0") == 2
    assert "| batch 5: 500 object(s) delivered to 'orders'" in out
    assert "| batch 1: 300 object(s) delivered to 'orders'" in out
    assert "state file mode: 0o600" in out


def test_multiprocessing_example(tmp_path):
    out = run_example("multiprocessing_example.py", tmp_path)
    parent_pid = re.search(r"^parent pid (\d+)", out, re.M).group(1)
    parent = f"{HOST}:{parent_pid}"
    methods = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
    sections = re.split(r"^(?=\w+ pool: )", out, flags=re.M)[1:]
    assert [s.split()[0] for s in sections] == methods
    for section in sections:
        sources = dict(re.findall(r"^  (?:parent|child ) (\S+) +(\d+) events", section, re.M))
        children = {s: int(n) for s, n in sources.items() if s != parent}
        assert sum(children.values()) == 9, section  # one event per task, from the children
        assert len(children) >= 2, section
        assert all(s.startswith(f"{HOST}:") for s in children)
        assert "each task's event under the pid that ran it: True" in section
        # fork: the parent's own record, under the parent's pid; spawn: none from the parent
        assert sources.get(parent) == ("1" if section.startswith("fork") else None), section


@needs_gunicorn
def test_gunicorn_example(tmp_path):
    out = run_example("gunicorn_app.py", tmp_path)
    sections = re.split(r"^(?=with(?:out)? preload_app: )", out, flags=re.M)[1:]
    assert [s.split()[0] for s in sections] == ["without", "with"]
    for section in sections:
        master = re.search(r"master pid (\d+), exit status (\S+), (\d+) requests", section)
        assert master.group(2) == "0", section
        answered = int(master.group(3))
        workers = {
            s: int(n) for s, n in re.findall(r"^  worker (\S+) +(\d+) events", section, re.M)
        }
        assert len(workers) >= 2, section
        assert f"{HOST}:{master.group(1)}" not in workers, section
        assert all(s.startswith(f"{HOST}:") for s in workers)
        assert sum(workers.values()) == answered, section  # one event per request
        assert "master's among them: False" in section
        assert "each under the pid of the worker that served it: True" in section


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return int(response.read())


@needs_gunicorn
@pytest.mark.parametrize("preload", [False, True], ids=["per-worker-import", "preload_app"])
def test_gunicorn_workers_ship_under_their_own_pids(tmp_path, preload):
    """Drive examples/gunicorn.conf.py + gunicorn_app:app directly, then read the collector."""
    port = _free_port()
    with Collector(port=0, db=":memory:") as collector:
        env = clean_env(
            tmp_path,
            LOGHANDLERS_JSON_URL=f"{collector.url}/json",
            LOGHANDLERS_SPOOL_DIR=str(tmp_path / "spool"),
        )
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
        command += ["--preload"] if preload else []
        proc = subprocess.Popen(
            [*command, "gunicorn_app:app"],
            cwd=EXAMPLES,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, proc.stdout.read()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "gunicorn never listened"
                    time.sleep(0.05)
            # Rounds of 4 concurrent requests until two workers have answered (bounded):
            # the first worker to boot takes whatever is waiting.
            served_by = collections.Counter()
            requests = 0
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                for _ in range(25):
                    urls = [f"http://127.0.0.1:{port}/t/{requests + i}" for i in range(4)]
                    served_by.update(pool.map(_get, urls))
                    requests += len(urls)
                    if requests >= 12 and len(served_by) >= 2:
                        break
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
        assert proc.returncode == 0, output
        # Workers drain their handlers before they exit, and the master waits for them.
        events = [row["event"] for row in collector.events(service="json")]
    assert len(events) == requests, output
    sources = collections.Counter(event["sourceId"] for event in events)
    assert sources == collections.Counter({f"{HOST}:{pid}": n for pid, n in served_by.items()})
    assert len(sources) >= 2
    assert f"{HOST}:{proc.pid}" not in sources  # nothing under the master's pid
    assert all(event["sourceId"] == f"{HOST}:{event['pid']}" for event in events)
    assert sorted(event["path"] for event in events) == sorted(f"/t/{i}" for i in range(requests))
