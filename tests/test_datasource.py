"""Issue 12: the Panoply SDK's DataSource framework, and the runner that streams one into Panoply.

The framework's methods are tested directly; ``validate_token`` against a loopback OAuth2
server (:class:`OAuthAPI`). The runner is tested in process with a scripted delivery
function (its retry, stop and state rules) and as ``python -m loghandlers datasource`` in
a subprocess against the local collector (crash, SIGKILL, SIGTERM, token refresh), with
``tests/datasource_stream.py`` as the data source, written as the SDK's README says.

Delivery is at-least-once at batch granularity: a batch's state is saved only after the
batch was delivered, so a kill between the two sends that one batch again.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import logging
import os
import pathlib
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import types
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from loghandlers.__main__ import main
from loghandlers.clients.panoply import DataSource, PanoplyException, validate_token
from loghandlers.collector import Collector
from loghandlers.datasource_runner import (
    EXIT_FAILED,
    EXIT_OK,
    Console,
    Run,
    StateFile,
    StateLog,
    Stop,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
STREAM = "tests/datasource_stream.py"
RUN_TIMEOUT = 90  # seconds for one runner subprocess
WAIT = 30  # seconds for a condition polled in a test
RETRY_LINE = re.compile(r"retry \d of \d")


# --------------------------------------------------------------------------- helpers
class OAuthAPI:
    """Rows behind a bearer token that expires after ``uses`` calls; refresh tokens rotate.

    ``GET /rows?offset=&limit=`` needs ``Authorization: Bearer <access token>`` (401 once
    the token is used up). ``POST /token`` (form with ``refresh_token``) answers a new
    access token and a new refresh token and revokes the old refresh token, as many
    providers do; a wrong refresh token gets 400 ``invalid_grant``.
    """

    def __init__(self, total: int = 0, uses: int = 2):
        self.total = total
        self.uses = uses
        self.lock = threading.Lock()
        self.access: dict = {}  # token -> uses left
        self.issued: list = []
        self.refresh_forms: list = []
        self.refreshes = 0
        self.refresh_token = self._new("RT")
        self.access_token = self._issue_access()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                token = (self.headers.get("Authorization") or "").partition(" ")[2]
                with api.lock:
                    left = api.access.get(token, 0)
                    if left <= 0:
                        return self._reply(401, {"error": "invalid_token"})
                    api.access[token] = left - 1
                offset, limit = int(query["offset"][0]), int(query["limit"][0])
                end = min(api.total, offset + limit)
                self._reply(200, [{"id": i} for i in range(offset, end)])

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with api.lock:
                    api.refresh_forms.append(form)
                    if form.get("refresh_token") != api.refresh_token:
                        return self._reply(400, {"error": "invalid_grant"})
                    api.refreshes += 1
                    api.refresh_token = api._new("RT")
                    access = api._issue_access()
                    refresh = api.refresh_token
                self._reply(200, {"access_token": access, "refresh_token": refresh})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _new(self, kind: str) -> str:
        token = f"{kind}-{uuid.uuid4().hex}"
        self.issued.append(token)
        return token

    def _issue_access(self) -> str:
        token = self._new("AT")
        self.access[token] = self.uses
        return token

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def forms(secret: str) -> list:
    """How a token may look in output: raw, %-encoded, base64."""
    from urllib.parse import quote

    return [secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()]


def assert_no_token(text: str, tokens) -> None:
    for token in tokens:
        for form in forms(token):
            assert form not in text, "a token appeared in the output"


def runner_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.update(extra)
    return env


def runner_command(source: dict, state, url: str, *more: str) -> list:
    command = [sys.executable, "-m", "loghandlers", "datasource", STREAM]
    command += ["--source", json.dumps(source), "--batch-size", "10"]
    command += ["--url", url] if url else []
    command += ["--retry-wait", "0.01"]
    if state is not None:
        command += ["--state", str(state)]
    return command + list(more)


def run_runner(tmp_path, source, state, url, *more, env=None):
    return subprocess.run(
        runner_command(source, state, url, *more),
        cwd=ROOT,
        env=env or runner_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def start_runner(tmp_path, source, state, url, env=None):
    return subprocess.Popen(
        runner_command(source, state, url),
        cwd=ROOT,
        env=env or runner_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(collector, count: int, proc=None) -> None:
    deadline = time.monotonic() + WAIT
    while collector.count("panoply") < count:
        assert time.monotonic() < deadline, "the runner never delivered enough rows"
        if proc is not None:
            assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def ids_by_table(collector) -> dict:
    """{table: Counter of row ids} for what the collector stored."""
    out: dict = collections.defaultdict(collections.Counter)
    for row in collector.events(service="panoply"):
        assert row["channel"] == row["event"]["__table"]
        out[row["channel"]][row["event"]["id"]] += 1
    return dict(out)


def read_state(path) -> dict:
    with open(path) as f:
        return json.load(f)


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --------------------------------------------------------------------------- framework
class Echo(DataSource):
    def read(self, n=None):
        return None


def test_destination_defaults_to_type_and_attributes_are_kept():
    """issue 12: source and options as attributes; destination defaults to type."""
    source, options = {"type": "orders", "user": "u"}, {"hint": 1}
    ds = Echo(source, options)
    assert ds.source is source and ds.options is options
    assert ds.source["destination"] == "orders"
    assert Echo({"type": "a", "destination": "b"}, {}).source["destination"] == "b"
    assert Echo({"type": "a"}, None).options == {}


def test_a_source_without_destination_or_type_is_a_clear_error():
    """issue 12: the SDK's KeyError becomes an error that names what is missing."""
    with pytest.raises(ValueError, match="destination"):
        Echo({}, {})


def test_read_is_abstract_and_close_is_optional():
    """issue 12: read() is the one abstract method; close() may be left out."""
    ds = DataSource({"type": "t"}, {})
    with pytest.raises(NotImplementedError):
        ds.read()
    assert ds.close() is None


def test_fire_calls_named_and_wildcard_listeners():
    """issue 12: fire(type, data) as the SDK's emitter: fn(data), and fn(name, data) for *."""
    ds = Echo({"type": "t"}, {})
    named, every = [], []
    ds.on("source-change", named.append).on("*", lambda name, data: every.append((name, data)))
    assert ds.fire("source-change", {"a": 1}) is ds
    ds.fire("other", 2)
    assert named == [{"a": 1}]
    assert every == [("source-change", {"a": 1}), ("other", 2)]


def test_progress_and_state_fire_the_sdk_events():
    """issue 12: progress(loaded, total, msg) and state(state_id, state) are events."""
    ds = Echo({"type": "t"}, {})
    seen = []
    ds.on("*", lambda name, data: seen.append((name, data)))
    ds.progress(3, 6)
    ds.progress(4, 6, "4/6 files loaded")
    ds.state("s1", {"orders": {"loaded": 500}})
    assert seen == [
        ("progress", {"loaded": 3, "total": 6, "msg": ""}),
        ("progress", {"loaded": 4, "total": 6, "msg": "4/6 files loaded"}),
        ("source-state", {"stateId": "s1", "state": {"orders": {"loaded": 500}}}),
    ]


def test_raw_builds_the_sdk_message():
    """issue 12: raw(tag, raw, metadata) -> {"type": "raw", tag, base64 raw, metadata}."""
    ds = Echo({"type": "t"}, {})
    msg = ds.raw("file-1.csv", b"\x00\xffa,b\n", {"__state": "s1"})
    assert msg == {
        "type": "raw",
        "tag": "file-1.csv",
        "raw": base64.b64encode(b"\x00\xffa,b\n").decode(),
        "metadata": {"__state": "s1"},
    }
    assert json.loads(json.dumps(msg)) == msg  # it travels as JSON
    assert base64.b64decode(ds.raw("t", "héllo")["raw"]) == "héllo".encode()
    assert ds.raw("t", b"x")["metadata"] == {}


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append((record.name, record.levelname, record.getMessage()))


def test_log_goes_through_logging_and_never_shows_credentials():
    """issue 12: log(*msgs) through standard logging; credentials are blanked in any form."""
    token = "AT-" + uuid.uuid4().hex + "+/="
    ds = Echo({"type": "t", "access_token": token, "password": "hunter2!"}, {})
    handler = ListHandler()
    logger = logging.getLogger("loghandlers.datasource")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        from urllib.parse import quote, quote_plus

        ds.log("token", token, "url", f"?t={quote(token, safe='')}&p={quote_plus(token)}")
        ds.log(json.dumps({"pw": "hunter2!"}), 42, None)
        ds.log(types.SimpleNamespace(__str__=None))  # an object whose str() raises
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    names = {name for name, _, _ in handler.lines}
    assert names == {"loghandlers.datasource.Echo"}
    text = "\n".join(message for _, _, message in handler.lines)
    assert "token **** url ?t=****&p=****" in text
    assert '{"pw": "****"} 42 None' in text
    assert_no_token(text, [token, "hunter2!"])


def test_credential_names():
    """issue 12: which source/options keys count as credentials."""
    from loghandlers.clients.panoply_datasource import SECRET_NAME

    for name in (
        "access_token",
        "key",
        "api_key",
        "apiKey",
        "client_secret",
        "password",
        "pass",
        "Authorization",
        "x-signature",
        "session_id",
        "private-key",
    ):
        assert SECRET_NAME.search(name), name
    for name in ("user", "database", "destination", "author", "author_id", "keyword", "table"):
        assert not SECRET_NAME.search(name), name


def test_progress_messages_never_show_credentials():
    """issue 12: a progress message is as safe as a log line."""
    ds = Echo({"type": "t", "api_key": "k-" + "9" * 20}, {})
    seen = []
    ds.on("progress", seen.append)
    ds.progress(1, 2, "with " + "k-" + "9" * 20)
    assert seen == [{"loaded": 1, "total": 2, "msg": "with ****"}]


def test_panoply_exception_is_retryable_unless_told():
    """issue 12: PanoplyException(message, retryable=True)."""
    assert PanoplyException("x").retryable is True
    exc = PanoplyException("HTTP 404", retryable=False)
    assert exc.retryable is False and str(exc) == "HTTP 404"


class TokenExpired(Exception):
    pass


def oauth_source(api, **extra) -> dict:
    return {
        "type": "t",
        "access_token": api.access_token,
        "refresh_token": api.refresh_token,
        **extra,
    }


def make_client(api, callback="remember"):
    class Client(DataSource):
        calls = 0
        remembered: list = []

        def read(self, n=None):
            return None

        @validate_token(f"{api.url}/token", TokenExpired, callback)
        def fetch(self, what, *, times=1):
            type(self).calls += 1
            token = self.source["access_token"]
            with api.lock:
                if api.access.get(token, 0) <= 0:
                    raise TokenExpired("401")
                api.access[token] -= 1
            return what * times

        def remember(self, token):
            type(self).remembered.append(token)

    return Client


def test_validate_token_refreshes_against_a_loopback_oauth_server():
    """issue 12: on one of `exceptions`: POST the refresh token, store the new token,
    call the callback with it, call the method again once."""
    with OAuthAPI(uses=1) as api:
        old_access, old_refresh = api.access_token, api.refresh_token
        Client = make_client(api)
        ds = Client(oauth_source(api), {"refresh": {"client_id": "cid"}})
        changes = []
        ds.on("source-change", changes.append)
        assert ds.fetch("a", times=2) == "aa"  # uses the one use of the first token
        assert api.refreshes == 0
        assert ds.fetch("b") == "b"  # 401, refresh, again
        assert api.refreshes == 1 and Client.calls == 3
        assert api.refresh_forms == [{"client_id": "cid", "refresh_token": old_refresh}]
        assert ds.source["access_token"] not in (old_access, None)
        assert ds.source["access_token"] == api.issued[-1]
        assert ds.source["refresh_token"] == api.refresh_token != old_refresh  # rotated
        assert changes == [
            {"access_token": ds.source["access_token"], "refresh_token": api.refresh_token}
        ]
        assert Client.remembered == [ds.source["access_token"]]


def test_validate_token_takes_a_callable_callback():
    """issue 12: callback is a method name or a callable."""
    got = []
    with OAuthAPI(uses=1) as api:
        api.access[api.access_token] = 0  # expired already
        Client = make_client(api, callback=got.append)
        ds = Client(oauth_source(api), {})
        assert ds.fetch("x") == "x"
    assert got == [ds.source["access_token"]]


def test_validate_token_calls_a_readme_style_callback_without_self():
    """issue 12: the README's `def my_callback(new_token)` (no self) works as written."""
    got = []
    with OAuthAPI(uses=1) as api:
        api.access[api.access_token] = 0
        Client = make_client(api, callback="my_callback")

        def my_callback(new_token):
            got.append(new_token)

        Client.my_callback = my_callback
        ds = Client(oauth_source(api), {})
        assert ds.fetch("x") == "x"
    assert got == [ds.source["access_token"]]


def test_a_failed_refresh_is_not_retryable_and_shows_no_token():
    """issue 12: the refresh failing means the user must re-authenticate: retryable=False."""
    with OAuthAPI(uses=0) as api:
        Client = make_client(api)
        source = oauth_source(api)
        source["refresh_token"] = "RT-revoked-" + uuid.uuid4().hex
        ds = Client(source, {})
        with pytest.raises(PanoplyException) as caught:
            ds.fetch("x")
        assert caught.value.retryable is False
        assert "HTTP 400" in str(caught.value)
        assert_no_token(str(caught.value), api.issued + [source["refresh_token"]])
        assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_a_refresh_endpoint_that_is_down_is_not_retryable():
    """issue 12: a refresh that cannot even connect is reported without the token."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = types.SimpleNamespace(url=f"http://127.0.0.1:{port}", lock=threading.Lock(), access={})
    Client = make_client(api)
    ds = Client({"type": "t", "access_token": "AT-x" * 4, "refresh_token": "RT-y" * 4}, {})
    with pytest.raises(PanoplyException) as caught:
        ds.fetch("x")
    assert caught.value.retryable is False
    assert_no_token(str(caught.value), ["AT-x" * 4, "RT-y" * 4])


def test_validate_token_leaves_other_exceptions_and_a_second_failure_alone():
    """issue 12: only `exceptions` trigger a refresh, and the method runs again only once."""
    with OAuthAPI(uses=0) as api:

        class Client(DataSource):
            calls = 0

            def read(self, n=None):
                return None

            @validate_token(f"{api.url}/token", (TokenExpired,))
            def broken(self):
                raise ValueError("not about the token")

            @validate_token(f"{api.url}/token", TokenExpired)
            def always_expired(self):
                type(self).calls += 1
                raise TokenExpired("401 again")

        ds = Client(oauth_source(api), {})
        with pytest.raises(ValueError):
            ds.broken()
        assert api.refreshes == 0
        with pytest.raises(TokenExpired):
            ds.always_expired()
        assert api.refreshes == 1 and Client.calls == 2


# --------------------------------------------------------------------------- state rules
def tagged(state_id, n=2):
    return [{"id": i, "__state": state_id} for i in range(n)]


def test_a_state_is_committed_only_once_its_batch_was_delivered():
    """issue 12: persist the merged state() after each delivered batch; states merge."""
    log = StateLog({"users": {"loaded": 7}})
    log.report({"stateId": "a", "state": {"orders": {"loaded": 10}}})
    log.report({"stateId": "b", "state": {"orders": {"loaded": 20}}})
    assert log.committed == {"users": {"loaded": 7}}
    assert log.delivered(tagged("a")) is True
    assert log.committed == {"users": {"loaded": 7}, "orders": {"loaded": 10}}
    assert log.delivered(tagged("b")) is True
    assert log.committed == {"users": {"loaded": 7}, "orders": {"loaded": 20}}
    assert log.delivered(tagged("unknown")) is False


def test_raw_messages_commit_by_their_metadata_state():
    """issue 12: a raw message ties to a state through metadata["__state"]."""
    ds = Echo({"type": "t"}, {})
    log = StateLog()
    log.report({"stateId": "r1", "state": {"files": {"done": 1}}})
    assert log.delivered([ds.raw("f", b"x", {"__state": "r1"})])
    assert log.committed == {"files": {"done": 1}}


def test_untagged_batches_commit_the_states_reported_so_far():
    """issue 12: a data source that does not tag objects still resumes."""
    log = StateLog()
    log.report({"stateId": 1, "state": {"offset": 10}})
    assert log.delivered([{"id": 1}])
    assert log.committed == {"offset": 10}


def test_states_of_a_failed_read_and_later_mutations_do_not_count():
    """issue 12: at-least-once: a state never gets ahead of what was delivered."""
    log = StateLog()
    mark = log.mark()
    log.report({"stateId": "x", "state": {"offset": 99}})
    log.forget_since(mark)  # that read() raised
    state = {"offset": 10}
    log.report({"stateId": "y", "state": state})
    state["offset"] = 1000  # the data source reuses its dict
    log.delivered(tagged("y"))
    assert log.committed == {"offset": 10}
    assert log.finish() is False


def test_state_file_is_private_and_seals_changed_credentials(tmp_path):
    """issue 12: tokens from the command line are not written; refreshed ones are sealed
    (no form of them in the file), opened only with the same command-line credentials."""
    path = tmp_path / "s.state"
    given = {"type": "t", "access_token": "AT-cli-secret-1", "refresh_token": "RT-cli-secret-1"}
    f = StateFile(str(path))
    f.load()
    f.data["state"] = {"offset": 3}
    changes = {"refresh_token": "RT-new-2", "cursor": "c-9", "state": "ignored"}
    f.record_source_change(given, changes)
    f.save()
    assert mode_of(path) == 0o600
    text = path.read_text()
    assert_no_token(text, ["AT-cli-secret-1", "RT-cli-secret-1", "RT-new-2"])
    assert read_state(path)["source_changes"] == {"cursor": "c-9"}  # not a credential
    again = StateFile(str(path))
    again.load()
    restored = again.source_for(given)
    assert restored["refresh_token"] == "RT-new-2" and restored["cursor"] == "c-9"
    assert again.opened
    # the user re-authenticated: what the command line says now wins
    renewed = {**given, "refresh_token": "RT-cli-secret-3"}
    third = StateFile(str(path))
    third.load()
    assert third.source_for(renewed)["refresh_token"] == "RT-cli-secret-3"
    assert not third.opened
    assert [p.name for p in tmp_path.iterdir()] == ["s.state"]  # no temporary left


# --------------------------------------------------------------------------- the run, in process
class Pages(DataSource):
    """``rows`` rows in pages of n; ``script``: per read() call, an exception to raise."""

    script: list = []
    reads = 0
    closes = 0

    def __init__(self, source, options):
        super().__init__(source, options)
        self.offset = ((source.get("state") or {}).get("pages") or {}).get("offset", 0)

    def read(self, n=None):
        type(self).reads += 1
        if self.script:
            step = self.script.pop(0)
            if step is not None:
                raise step
        if self.offset >= self.source["rows"]:
            return None
        end = min(self.source["rows"], self.offset + n)
        rows = [{"id": i, "__state": end} for i in range(self.offset, end)]
        self.state(end, {"pages": {"offset": end}})
        self.progress(end, self.source["rows"])
        self.offset = end
        return rows

    def close(self):
        type(self).closes += 1


CONFIG = {"title": "Pages", "params": [{"name": "rows", "title": "Rows"}]}


class Delivery:
    def __init__(self, outcomes=()):
        self.outcomes = list(outcomes)
        self.batches = []

    def __call__(self, events):
        outcome = self.outcomes.pop(0) if self.outcomes else "delivered"
        if outcome == "delivered":
            self.batches.append(events)
        return types.SimpleNamespace(
            outcome=outcome, delivered=len(events), rejected=0, reasons=("HTTP 503",), status=503
        )


def run_pages(tmp_path, script=(), outcomes=(), rows=25, source=None, name="pages"):
    cls = type("Pages", (Pages,), {"script": list(script), "reads": 0, "closes": 0})
    delivery = Delivery(outcomes)
    out = io.StringIO()
    run = Run(
        cls,
        CONFIG,
        source or {"type": "pages", "rows": rows},
        {},
        delivery,
        StateFile(str(tmp_path / f"{name}.state")),
        Console(out, lambda text: text, tty=False),
        batch_size=10,
        retry_wait=0.001,
        stop=Stop(),
    )
    status = run.run()
    return status, cls, delivery, out.getvalue()


def test_a_transient_read_failure_is_retried_three_times(tmp_path):
    """issue 12: a failing read() is retried 3 times."""
    status, cls, delivery, out = run_pages(tmp_path, [None, OSError("blip")])
    assert status == EXIT_OK
    assert [e["id"] for batch in delivery.batches for e in batch] == list(range(25))
    assert "read() failed (OSError: blip); retry 1 of 3" in out
    flaky = [OSError("1"), OSError("2"), OSError("3")]
    status, cls, delivery, out = run_pages(tmp_path, flaky, name="flaky")
    assert status == EXIT_OK and cls.reads == 3 + 3 + 1  # 3 failures, then 3 pages, EOF
    assert "retry 3 of 3" in out


def test_a_fourth_failure_gives_up(tmp_path):
    """issue 12: after 3 retries the run fails, state kept after the last delivered batch."""
    status, cls, delivery, out = run_pages(tmp_path, [None] + [OSError("down")] * 4)
    assert status == EXIT_FAILED
    assert cls.reads == 1 + 4 and cls.closes == 1
    assert len(delivery.batches) == 1
    assert read_state(tmp_path / "pages.state")["state"] == {"pages": {"offset": 10}}
    assert "read() failed (4 attempt(s)): OSError: down" in out


def test_a_non_retryable_exception_stops_at_once(tmp_path):
    """issue 12: PanoplyException(retryable=False) is not retried."""
    script = [None, PanoplyException("HTTP 404", retryable=False)]
    status, cls, delivery, out = run_pages(tmp_path, script)
    assert status == EXIT_FAILED
    assert cls.reads == 2 and cls.closes == 1 and len(delivery.batches) == 1
    assert "read() failed (not retryable): PanoplyException: HTTP 404" in out
    assert not RETRY_LINE.search(out)


def test_an_undelivered_batch_stops_the_run_and_keeps_the_state(tmp_path):
    """issue 12: the state moves only with delivered batches."""
    status, cls, delivery, out = run_pages(tmp_path, outcomes=["delivered", "failed"])
    assert status == EXIT_FAILED
    assert read_state(tmp_path / "pages.state")["state"] == {"pages": {"offset": 10}}
    assert "was not delivered: failed (HTTP 503: HTTP 503)" in out
    status, cls, delivery, out = run_pages(tmp_path)  # resume, same state file
    assert status == EXIT_OK
    assert [e["id"] for batch in delivery.batches for e in batch] == list(range(10, 25))
    assert read_state(tmp_path / "pages.state")["complete"] is True


def test_objects_go_to_the_destination_with_their_state(tmp_path):
    """issue 12: every object is written to source["destination"], carrying __state."""
    source = {"type": "pages", "destination": "my_table", "rows": 3}
    status, cls, delivery, out = run_pages(tmp_path, source=source)
    assert status == EXIT_OK
    assert delivery.batches == [[{"id": i, "__state": 3, "__table": "my_table"} for i in range(3)]]


def test_source_change_is_saved_at_once_and_given_back(tmp_path):
    """issue 12: fire("source-change", data) merges into the saved source."""

    class Changer(Pages):
        def read(self, n=None):
            if "cursor" not in self.source:
                self.fire("source-change", {"cursor": "c-2", "access_token": "AT-new-xyz"})
                raise PanoplyException("stop here", retryable=False)
            assert self.source["access_token"] == "AT-new-xyz"
            return None

    out = io.StringIO()
    given = {"type": "t", "rows": 1, "access_token": "AT-old-xyz"}
    for expected in (EXIT_FAILED, EXIT_OK):
        run = Run(
            Changer,
            CONFIG,
            dict(given),
            {},
            Delivery(),
            StateFile(str(tmp_path / "c.state")),
            Console(out, lambda text: text, tty=False),
            stop=Stop(),
        )
        assert run.run() == expected
    saved = read_state(tmp_path / "c.state")
    assert saved["source_changes"] == {"cursor": "c-2"}
    assert_no_token((tmp_path / "c.state").read_text(), ["AT-old-xyz", "AT-new-xyz"])


class Poisoned(dict):
    def keys(self):
        raise RuntimeError("poisoned keys")

    def __iter__(self):
        raise RuntimeError("poisoned iter")


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


def test_hostile_objects_and_exceptions_stop_the_run_cleanly(tmp_path):
    """issue 12 / hostile users: an object that cannot be copied, an exception whose
    __str__ raises: a clear error and exit 1, never a crash of the runner."""
    bad_object = [None]

    class Hostile(Pages):
        def read(self, n=None):
            if bad_object[0] == "object":
                return [{"id": 1}, Poisoned(id=2)]
            raise Unprintable()

    for kind, expected in (("object", "cannot be copied"), ("exception", "Unprintable")):
        bad_object[0] = kind
        out = io.StringIO()
        run = Run(
            Hostile,
            CONFIG,
            {"type": "t", "rows": 1},
            {},
            Delivery(),
            StateFile(None),
            Console(out, lambda text: text, tty=False),
            retry_wait=0.001,
            stop=Stop(),
        )
        assert run.run() == EXIT_FAILED
        assert expected in out.getvalue()


def test_a_data_source_that_fails_to_start_shows_no_token(tmp_path):
    """issue 12: an exception from __init__ is reported, scrubbed, exit 1."""

    class Broken(Pages):
        def __init__(self, source, options):
            super().__init__(source, options)
            raise ConnectionError(f"cannot log in with {source['api_key']}")

    out = io.StringIO()
    source = {"type": "t", "rows": 1, "api_key": "key-" + uuid.uuid4().hex}
    run = Run(
        Broken,
        CONFIG,
        dict(source),
        {},
        Delivery(),
        StateFile(None),
        Console(out, lambda text: text, tty=False),
        stop=Stop(),
    )
    run.console.scrub = run.scrub
    assert run.run() == EXIT_FAILED
    assert "could not start" in out.getvalue() and "cannot log in with ****" in out.getvalue()
    assert_no_token(out.getvalue(), [source["api_key"]])


def test_a_stop_while_waiting_to_retry_ends_the_run_at_once(tmp_path):
    """issue 12: Ctrl-C/SIGTERM stop the run (exit 128+N), even between read() retries."""
    stop = Stop()

    class Failing(Pages):
        reads = 0

        def read(self, n=None):
            type(self).reads += 1
            stop.signum = signal.SIGTERM  # as the signal handler does
            raise OSError("down")

    run = Run(
        Failing,
        CONFIG,
        {"type": "t", "rows": 1},
        {},
        Delivery(),
        StateFile(None),
        Console(io.StringIO(), lambda text: text, tty=False),
        retry_wait=30,
        stop=stop,
    )
    assert run.run() == 128 + signal.SIGTERM
    assert Failing.reads == 1  # no retry after the stop (nor a 30 s wait for one)


def test_missing_required_param_is_named(tmp_path, capsys):
    """issue 12: a missing required param is a clear error naming it."""
    status = main(["datasource", str(ROOT / STREAM), "--source", '{"type": "t"}'])
    err = capsys.readouterr().err
    assert status == 2
    assert "missing required parameter 'rows' (Number of rows)" in err


def test_unusable_arguments_are_clear_errors(tmp_path, capsys):
    """issue 12: bad JSON, a module without Stream/CONFIG, a missing module: exit 2."""
    secret = '{"type": "t", "password": "pw-123456'  # broken JSON is never echoed
    assert main(["datasource", str(ROOT / STREAM), "--source", secret]) == 2
    assert "--source is not valid JSON" in capsys.readouterr().err
    assert main(["datasource", "json", "--source", "{}"]) == 2
    assert "must expose Stream" in capsys.readouterr().err
    assert main(["datasource", "no_such_module_here", "--source", "{}"]) == 2
    assert "no data source module named 'no_such_module_here'" in capsys.readouterr().err


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    """issue 12: a progress bar driven by progress(), plain lines when not a TTY."""
    tty, plain = io.StringIO(), io.StringIO()
    for out, is_tty in ((tty, True), (plain, False)):
        console = Console(out, lambda text: text.replace("s3cret", "****"), tty=is_tty)
        console.progress({"loaded": 15, "total": 60, "msg": "15/60 s3cret"})
        console.batch_delivered(1, 15, "t")
        console.line("a log line")
        console.done()
    assert tty.getvalue().startswith("\r\x1b[K[#######.......................] 15/60 (25%)")
    assert "a log line\n" in tty.getvalue() and tty.getvalue().endswith("\n")
    assert plain.getvalue().splitlines() == [
        "progress: 15/60 (25%) 15/60 ****",
        "batch 1: 15 object(s) delivered to 't' (15 this run)",
        "a log line",
    ]


# --------------------------------------------------------------------------- the runner, for real
@pytest.fixture
def collector():
    with Collector(port=0, db=":memory:") as c:
        yield c


def test_runner_delivers_every_row_to_the_destination_table(tmp_path, collector):
    """issue 12: read() until None; every object to source["destination"]; progress."""
    state = tmp_path / "run.state"
    source = {"type": "numbers", "destination": "numbers_v2", "rows": 95}
    done = run_runner(tmp_path, source, state, collector.url)
    assert done.returncode == 0, done.stderr
    assert ids_by_table(collector) == {"numbers_v2": collections.Counter(range(95))}
    assert all(r["event"]["__state"] for r in collector.events(service="panoply"))
    assert "progress: 50/95 (52%) 50/95 rows" in done.stderr  # plain lines: not a TTY
    assert "batch 10: 5 object(s) delivered to 'numbers_v2'" in done.stderr
    saved = read_state(state)
    assert saved["complete"] is True and saved["state"] == {"rows": {"offset": 95}}
    assert mode_of(state) == 0o600
    # a finished run's state makes the next run continue from there: nothing new
    again = run_runner(tmp_path, source, state, collector.url)
    assert again.returncode == 0 and collector.count("panoply") == 95


def test_the_collector_url_may_come_from_the_environment(tmp_path, collector):
    """issue 12: LOGHANDLERS_PANOPLY_URL works like --url (placeholder credentials too)."""
    env = runner_env(tmp_path, LOGHANDLERS_PANOPLY_URL=collector.url)
    done = run_runner(tmp_path, {"type": "env", "rows": 12}, None, None, env=env)
    assert done.returncode == 0, done.stderr
    assert "no --state FILE" in done.stderr
    assert ids_by_table(collector) == {"env": collections.Counter(range(12))}


def test_resume_after_a_crash_mid_run_delivers_every_row_once(tmp_path, collector):
    """issue 12: the process dies mid-run; a restart resumes after the last delivered batch."""
    state = tmp_path / "crash.state"
    source = {
        "type": "crashy",
        "rows": 80,
        "crash_page": 4,
        "crash_marker": str(tmp_path / "crashed"),
    }
    first = run_runner(tmp_path, source, state, collector.url)
    assert first.returncode == 3  # os._exit(3) in read() of page 4
    assert collector.count("panoply") == 40
    assert read_state(state)["state"] == {"rows": {"offset": 40}}
    second = run_runner(tmp_path, source, state, collector.url)
    assert second.returncode == 0, second.stderr
    assert "resuming 'crashy' from the saved state (40 object(s) delivered before)" in (
        second.stderr
    )
    assert ids_by_table(collector) == {"crashy": collections.Counter(range(80))}


def test_transient_failures_are_retried_end_to_end(tmp_path, collector):
    """issue 12: a failing read() is retried; every row still arrives once."""
    source = {"type": "flaky", "rows": 60, "fail_pages": [1, 4]}
    done = run_runner(tmp_path, source, tmp_path / "f.state", collector.url)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("retry 1 of 3") == 2
    assert "ConnectionError: transient failure on page 1" in done.stderr
    assert ids_by_table(collector) == {"flaky": collections.Counter(range(60))}


def test_a_non_retryable_exception_stops_the_runner_at_once(tmp_path, collector):
    """issue 12: PanoplyException(retryable=False) stops the run, exit 1, state kept."""
    state = tmp_path / "n.state"
    source = {"type": "gone", "rows": 60, "fatal_page": 3}
    done = run_runner(tmp_path, source, state, collector.url)
    assert done.returncode == EXIT_FAILED
    assert "read() failed (not retryable): PanoplyException: HTTP 404 on page 3" in done.stderr
    assert not RETRY_LINE.search(done.stderr)
    assert collector.count("panoply") == 30
    assert read_state(state)["state"] == {"rows": {"offset": 30}}


def test_sigkill_mid_run_then_restart_loses_nothing(tmp_path, collector):
    """issue 12: killed mid-run and restarted: every row in the right table, none lost,
    duplicates at most one batch (the one between its delivery and its state write)."""
    state = tmp_path / "k.state"
    source = {"type": "killed", "rows": 200, "sleep": 0.02}
    proc = start_runner(tmp_path, source, state, collector.url)
    try:
        wait_for_rows(collector, 45, proc)
    finally:
        proc.kill()
        proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    before = collector.count("panoply")
    assert before < 200
    done = run_runner(tmp_path, source, state, collector.url)
    assert done.returncode == 0, done.stderr
    counts = ids_by_table(collector)
    assert set(counts) == {"killed"}
    assert set(counts["killed"]) == set(range(200))  # none lost
    duplicates = sum(n - 1 for n in counts["killed"].values())
    assert duplicates <= 10  # at most one batch (--batch-size 10)


def test_sigterm_stops_after_the_current_batch(tmp_path, collector):
    """issue 12: SIGTERM stops after the current batch, saves state, exits non-zero;
    a restart then finishes with no row twice."""
    state = tmp_path / "t.state"
    source = {"type": "termed", "rows": 300, "sleep": 0.02}
    proc = start_runner(tmp_path, source, state, collector.url)
    try:
        wait_for_rows(collector, 30, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal" in err
    delivered = collector.count("panoply")
    assert delivered < 300
    assert read_state(state)["state"] == {"rows": {"offset": delivered}}
    done = run_runner(tmp_path, source, state, collector.url)
    assert done.returncode == 0, done.stderr
    assert ids_by_table(collector) == {"termed": collections.Counter(range(300))}


def test_token_refresh_end_to_end_and_tokens_never_shown(tmp_path, collector):
    """issue 12: a token refresh against a loopback OAuth endpoint works; its tokens never
    appear in any output. The refreshed tokens are saved in the 0600 state file."""
    with OAuthAPI(total=70, uses=2) as api:
        state = tmp_path / "o.state"
        source = {"rows": 70, "api": True, **oauth_source(api), "type": "oauth"}
        env = runner_env(tmp_path, TEST_DATASOURCE_API=api.url)
        done = run_runner(tmp_path, source, state, collector.url, env=env)
        assert done.returncode == 0, done.stderr
        assert api.refreshes >= 3
        assert ids_by_table(collector) == {"oauth": collections.Counter(range(70))}
        assert_no_token(done.stdout + done.stderr, api.issued)
        assert "Revalidating the access token" in done.stderr
        assert_no_token(state.read_text(), api.issued)  # the refreshed ones are sealed
        assert read_state(state)["sealed_changes"]
        assert mode_of(state) == 0o600


def test_a_careless_data_source_cannot_show_its_token(tmp_path, collector):
    """issue 12: log(), progress() and an exception holding the token are all blanked."""
    with OAuthAPI(total=20, uses=100) as api:
        source = {**oauth_source(api), "type": "leaky", "rows": 20, "api": True, "leak": True}
        env = runner_env(tmp_path, TEST_DATASOURCE_API=api.url)
        done = run_runner(tmp_path, source, tmp_path / "l.state", collector.url, env=env)
        assert done.returncode == EXIT_FAILED
        assert_no_token((tmp_path / "l.state").read_text(), api.issued)
        assert "using token **** for" in done.stderr
        assert "access_token=****" in done.stderr and "token=****" in done.stderr
        assert "gave up with token ****" in done.stderr
        assert_no_token(done.stdout + done.stderr, api.issued)


def test_kill_mid_run_with_rotating_refresh_tokens_then_restart(tmp_path, collector):
    """issue 12: killed mid-run while the provider rotates refresh tokens; the restart uses
    the saved token (the command line's is revoked by then) and loses nothing."""
    with OAuthAPI(total=150, uses=2) as api:
        state = tmp_path / "r.state"
        source = {**oauth_source(api), "type": "rotating", "rows": 150, "api": True}
        source["sleep"] = 0.02
        env = runner_env(tmp_path, TEST_DATASOURCE_API=api.url)
        proc = start_runner(tmp_path, source, state, collector.url, env=env)
        try:
            wait_for_rows(collector, 50, proc)
            assert api.refreshes >= 2  # the command line's refresh token is revoked
        finally:
            proc.kill()
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
        done = run_runner(tmp_path, source, state, collector.url, env=env)
        assert done.returncode == 0, done.stderr
        tables = ids_by_table(collector)
        assert set(tables) == {"rotating"}, (set(tables), done.stderr)
        counts = tables["rotating"]
        assert set(counts) == set(range(150))
        assert sum(n - 1 for n in counts.values()) <= 10
        assert_no_token(out + err + done.stdout + done.stderr, api.issued)
        assert_no_token(state.read_text(), api.issued)


def test_an_unreachable_destination_fails_and_keeps_the_state(tmp_path):
    """issue 12: a batch that cannot be delivered stops the run (exit 1), state unmoved."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    state = tmp_path / "u.state"
    source = {"type": "nowhere", "rows": 30}
    done = run_runner(
        tmp_path, source, state, url, "--option", "retries=0", "--option", "timeout=2"
    )
    assert done.returncode == EXIT_FAILED
    assert "batch 1 (10 objects) was not delivered: failed" in done.stderr
    assert not state.exists() or not read_state(state).get("state")
    assert not (tmp_path / "cache").exists()  # nothing spooled: the state file is the bookmark
