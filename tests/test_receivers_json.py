"""JSONHandler against receivers that demand their own header and body shape (issue 13).

Every receiver here is a real loopback server (:mod:`tests.loopback`, with a ``respond`` function) that answers 401
unless the request carries the credential its auth mode expects, and parses the body the
way the product would (an array, NDJSON line by line, one object per request).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import logging.config
import os
import subprocess
import sys
import time

import pytest

from loghandlers import JSONHandler
from tests.loopback import Answer, LoopbackServer, refuse

TOKEN = "tok-5ecr3t+9Zq/AbCdEfGh"


def quiet_logger(name: str) -> logging.Logger:
    log = logging.getLogger(f"receivers_json.{name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    for old in list(log.handlers):
        log.removeHandler(old)
    return log


def ship(handler, name: str, *messages, **extra) -> None:
    log = quiet_logger(name)
    log.addHandler(handler)
    try:
        for message in messages:
            log.warning(message, extra=extra or None)
        assert handler.flush(timeout=20)
    finally:
        log.removeHandler(handler)


def array_receiver(header: str, expected: str):
    """Accepts a JSON array of objects when ``header`` is exactly ``expected``."""

    def answer(request):
        if request.header(header) != expected:
            return refuse(401, f"bad credentials: got {request.header(header)!r}")
        if request.header("Content-Type") != "application/json":
            return refuse(415, "want application/json")
        records = request.json()
        assert isinstance(records, list) and all(isinstance(r, dict) for r in records)
        return Answer(200, records=records)

    return answer


AUTH_MODES = {
    "bearer": ({"token": TOKEN}, "Authorization", f"Bearer {TOKEN}"),
    "datadog": ({"token": TOKEN, "token_header": "DD-API-KEY"}, "DD-API-KEY", TOKEN),
    "splunk": ({"token": TOKEN, "token_prefix": "Splunk"}, "Authorization", f"Splunk {TOKEN}"),
    "seq": ({"token": TOKEN, "token_header": "X-Seq-ApiKey"}, "X-Seq-ApiKey", TOKEN),
    "headers_dict": ({"headers": {"X-Api-Key": TOKEN}}, "X-Api-Key", TOKEN),
    "headers_json": ({"headers": json.dumps({"X-Api-Key": TOKEN})}, "X-Api-Key", TOKEN),
}


@pytest.mark.parametrize("mode", sorted(AUTH_MODES))
def test_each_auth_mode_sends_the_header_its_receiver_requires(mode, tmp_path, capfd):
    """issue 13: headers, token, token_header, token_prefix each reach the receiver as
    the product expects; without them the same receiver refuses (the check can fail)."""
    options, header, expected = AUTH_MODES[mode]
    with LoopbackServer(respond=array_receiver(header, expected)) as receiver:
        handler = JSONHandler(url=receiver.url, spool_dir=str(tmp_path), **options)
        try:
            ship(handler, f"auth_{mode}", "one", "two")
        finally:
            handler.close(timeout=2)
        assert [r["message"] for r in receiver.records] == ["one", "two"]
        assert handler.stats()["sent"] == 2
        bare = JSONHandler(url=receiver.url, spool_dir=str(tmp_path / "bare"), retries=0)
        try:
            ship(bare, f"auth_{mode}_bare", "refused")
        finally:
            bare.close(timeout=2)
        assert receiver.requests[-1].status == 401 and bare.stats()["spooled"] == 1
    texts = [capfd.readouterr().err, repr(handler), repr(handler.settings)]
    assert all(TOKEN not in text for text in texts)


def test_basic_auth_from_url_user_info(tmp_path, capfd):
    """issue 13: ``http://user:password@host`` sends ``Authorization: Basic`` of the
    %-decoded pair; the password never shows in repr, stats or errors."""
    password = "p@ss/w0rd:+x"
    expected = "Basic " + base64.b64encode(f"ingest:{password}".encode()).decode()
    with LoopbackServer(respond=array_receiver("Authorization", expected)) as receiver:
        url = receiver.url.replace("://", "://ingest:p%40ss%2Fw0rd%3A%2Bx@") + "/in"
        handler = JSONHandler(url=url, spool_dir=str(tmp_path))
        try:
            ship(handler, "basic", "basic auth")
        finally:
            handler.close(timeout=2)
        assert [r["message"] for r in receiver.records] == ["basic auth"]
        assert receiver.requests[0].path == "/in"
    for text in (capfd.readouterr().err, repr(handler), str(handler.stats())):
        assert "p%40ss" not in text and password not in text


def test_two_options_setting_one_header_is_an_error_naming_them_not_their_values():
    """issue 13: url user-info and a token both want Authorization: say so, show neither."""
    with pytest.raises(ValueError) as caught:
        JSONHandler(url="http://u:hunter2pass@127.0.0.1:9/", token=TOKEN, spool_dir="")
    assert "token" in str(caught.value) and "Authorization" in str(caught.value)
    assert TOKEN not in str(caught.value) and "hunter2pass" not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        JSONHandler(url="http://127.0.0.1:9/", headers={"authorization": "x"}, token=TOKEN)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "headers",
    [{"X-Key": f"{TOKEN}\r\nX-Injected: 1"}, {"X Key": TOKEN}, {"Content-Length": "1"}],
)
def test_a_bad_header_is_refused_naming_the_header_not_its_value(headers):
    """issue 13: header values are secrets even when they are wrong."""
    with pytest.raises(ValueError) as caught:
        JSONHandler(url="http://127.0.0.1:9/", headers=headers, spool_dir="")
    assert "headers" in str(caught.value) and TOKEN not in str(caught.value)


def test_header_values_are_masked_in_repr_and_check():
    """issue 13: repr and ``check`` show which headers are set, never their values."""
    handler = JSONHandler(
        url="http://127.0.0.1:9/", headers={"X-Api-Key": TOKEN}, token=TOKEN, spool_dir=""
    )
    try:
        shown = repr(handler.settings)
        assert "X-Api-Key" in shown and TOKEN not in shown
    finally:
        handler.close(timeout=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env.update(
        LOGHANDLERS_JSON_URL="http://127.0.0.1:9/",
        LOGHANDLERS_JSON_HEADERS=json.dumps({"X-Api-Key": TOKEN}),
        LOGHANDLERS_JSON_TOKEN=TOKEN,
    )
    done = subprocess.run(
        [sys.executable, "-m", "loghandlers", "check", "--no-network", "--handler", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "X-Api-Key" in done.stdout, done.stdout + done.stderr
    assert TOKEN not in done.stdout + done.stderr


# ----------------------------------------------------------------------------- formats
def test_ndjson_is_one_object_per_line(tmp_path):
    """issue 13: ``format="ndjson"``: ``application/x-ndjson``, one object per line,
    parsed here line by line (a message with newlines stays on its line)."""

    def answer(request):
        assert request.header("Content-Type") == "application/x-ndjson"
        return Answer(200, records=request.ndjson())

    with LoopbackServer(respond=answer) as receiver:
        handler = JSONHandler(url=receiver.url, spool_dir=str(tmp_path), format="ndjson")
        try:
            ship(handler, "ndjson", "a", "multi\nline", "c", user=7)
        finally:
            handler.close(timeout=2)
        assert [r["message"] for r in receiver.records] == ["a", "multi\nline", "c"]
        assert all(r["user"] == 7 for r in receiver.records)
        assert len(receiver.requests) == 1
        assert receiver.requests[0].decoded().count(b"\n") == 3


def test_object_format_is_one_request_per_record(tmp_path):
    """issue 13: ``format="object"``: every request is one JSON object (as GELF HTTP
    takes); a batch goes as requests back to back, in order."""

    def answer(request):
        record = request.json()
        assert isinstance(record, dict)
        return Answer(202, records=[record])

    with LoopbackServer(respond=answer) as receiver:
        handler = JSONHandler(
            url=receiver.url, spool_dir=str(tmp_path), format="object", flush_interval=3600
        )
        try:
            ship(handler, "object", *[f"m{i}" for i in range(7)])
        finally:
            handler.close(timeout=2)
        assert [r["message"] for r in receiver.records] == [f"m{i}" for i in range(7)]
        assert len(receiver.requests) == 7
        assert handler.stats()["sent"] == 7


def test_field_names_rename_and_drop_our_fields_only(tmp_path):
    """issue 13: ``field_names`` renames our fields (``@timestamp``, ``text``) and drops
    one mapped to null; ``extra=`` fields keep their names and never replace ours."""
    with LoopbackServer(respond=lambda r: Answer(200, records=r.json())) as receiver:
        handler = JSONHandler(
            url=receiver.url,
            spool_dir=str(tmp_path),
            field_names={"timestamp": "@timestamp", "message": "text", "sourceId": None},
        )
        try:
            ship(handler, "renames", "renamed", text="an extra called text", user=3)
        finally:
            handler.close(timeout=2)
        (record,) = receiver.records
        assert record["text"] == "renamed"
        assert "timestamp" not in record and "message" not in record and "sourceId" not in record
        assert record["@timestamp"].endswith("Z") and record["user"] == 3
        assert record["level"] == "WARNING"


def test_field_names_naming_a_field_we_do_not_have_is_an_error():
    with pytest.raises(ValueError) as caught:
        JSONHandler(url="http://127.0.0.1:9/", field_names={"user": "u"}, spool_dir="")
    assert "field_names" in str(caught.value) and "user" in str(caught.value)


@pytest.mark.parametrize("kind", ["iso", "epoch_ms", "epoch_s", "epoch_ns"])
def test_timestamp_format(kind, tmp_path):
    """issue 13: ``timestamp_format``: iso text, or epoch ms/ns integers, or float seconds."""
    with LoopbackServer(respond=lambda r: Answer(200, records=r.json())) as receiver:
        handler = JSONHandler(url=receiver.url, spool_dir=str(tmp_path), timestamp_format=kind)
        before = time.time()
        try:
            ship(handler, f"stamp_{kind}", "when")
        finally:
            handler.close(timeout=2)
        after = time.time()
        stamp = receiver.records[0]["timestamp"]
    if kind == "iso":
        seconds = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
        seconds = seconds.replace(tzinfo=datetime.timezone.utc).timestamp()
    else:
        expected_type = float if kind == "epoch_s" else int
        assert type(stamp) is expected_type, stamp
        scale = {"epoch_ms": 1e3, "epoch_s": 1.0, "epoch_ns": 1e9}[kind]
        seconds = stamp / scale
    assert before - 0.01 <= seconds <= after + 0.01


# ----------------------------------------------------------------------------- 401/403
@pytest.mark.parametrize("status", [401, 403])
def test_a_wrong_token_then_fixed_loses_nothing_and_leaks_nothing(status, tmp_path, capfd):
    """issue 13: 401/403 keep the events (spooled) and hold sending, reported once with
    the status, even over many batches; a handler with the corrected token replays them
    all; the wrong token, echoed back, never reaches stderr or on("error")."""
    good = TOKEN
    wrong = "tok-wr0ng+Secret/Zz9Yx8W"

    def answer(request):
        sent = request.header("Authorization")
        if sent != f"Bearer {good}":
            return refuse(status, f"token {sent} is not valid")
        return Answer(200, records=request.json())

    errors = []
    with LoopbackServer(respond=answer) as receiver:
        spool = str(tmp_path / "spool")
        first = JSONHandler(url=receiver.url, spool_dir=spool, token=wrong, flush_interval=3600)
        first.on("error", errors.append)
        log = quiet_logger(f"fix_{status}")
        log.addHandler(first)
        try:
            for batch in range(3):
                for i in range(4):
                    log.info("b%d r%d", batch, i)
                assert first.flush(timeout=20)
        finally:
            log.removeHandler(first)
            first.close(timeout=2)
        stats = first.stats()
        assert (stats["sent"], stats["rejected"], stats["spooled"]) == (0, 0, 12), stats
        assert len(receiver.requests) == 1  # held after the first refusal
        err = capfd.readouterr().err
        assert err.count(f"HTTP {status}") == 1, err
        second = JSONHandler(url=receiver.url, spool_dir=spool, token=good, flush_interval=0.05)
        try:
            assert receiver.wait_for_records(12)
            assert second.flush(timeout=20)
        finally:
            second.close(timeout=2)
        assert sorted(r["message"] for r in receiver.records) == sorted(
            f"b{b} r{i}" for b in range(3) for i in range(4)
        )
        assert second.stats()["replayed"] == 12
    texts = [err, capfd.readouterr().err, str(errors), repr(first), repr(second)]
    for text in texts:
        assert wrong not in text and good not in text and wrong[:8] not in text, text
    assert errors[0]["kind"] == f"http_{status}" and errors[0]["events"] == 4


# ----------------------------------------------------------------------------- redirects
@pytest.mark.parametrize("code", [307, 308])
def test_a_307_or_308_to_the_same_origin_is_followed_with_the_body(code, tmp_path):
    """issue 13: the redirected request keeps method, body and credential."""

    def answer(request):
        if request.path == "/old":
            return Answer(code, headers={"Location": "/new?x=1"})
        assert request.path == "/new" and request.method == "POST"
        if request.header("Authorization") != f"Bearer {TOKEN}":
            return refuse(401, "no token")
        return Answer(200, records=request.json())

    with LoopbackServer(respond=answer) as receiver:
        handler = JSONHandler(url=receiver.url + "/old", spool_dir=str(tmp_path), token=TOKEN)
        try:
            ship(handler, f"redirect_{code}", "moved")
        finally:
            handler.close(timeout=2)
        assert [r["message"] for r in receiver.records] == ["moved"]
        assert [r.path for r in receiver.requests] == ["/old", "/new"]
        assert handler.stats()["sent"] == 1


@pytest.mark.parametrize("code", [301, 302, 303])
def test_any_other_redirect_is_reported_and_the_records_kept(code, tmp_path, capfd):
    """issue 13: a redirect that would turn the POST into a GET is not followed."""
    with LoopbackServer(
        respond=lambda r: Answer(code, headers={"Location": "/elsewhere"})
    ) as receiver:
        handler = JSONHandler(url=receiver.url + "/in", spool_dir=str(tmp_path))
        try:
            ship(handler, f"redirect_{code}", "kept")
        finally:
            handler.close(timeout=2)
        assert [r.path for r in receiver.requests] == ["/in"]
    stats = handler.stats()
    assert (stats["sent"], stats["rejected"], stats["spooled"]) == (0, 0, 1)
    err = capfd.readouterr().err
    assert f"HTTP {code} redirect to /elsewhere not followed" in err


def test_a_redirect_to_another_origin_is_never_followed(tmp_path, capfd):
    """issue 13: a 307 to another port is another origin: the token stays home."""
    with LoopbackServer(respond=lambda r: Answer(200, records=r.json())) as stranger:
        target = stranger.url + "/steal"
        with LoopbackServer(
            respond=lambda r: Answer(307, headers={"Location": target})
        ) as receiver:
            handler = JSONHandler(url=receiver.url, spool_dir=str(tmp_path), token=TOKEN)
            try:
                ship(handler, "cross_origin", "stays")
            finally:
                handler.close(timeout=2)
        assert stranger.requests == []
    assert handler.stats()["spooled"] == 1
    assert "not followed" in capfd.readouterr().err


# ----------------------------------------------------------------------------- config
def test_every_new_option_works_from_dictconfig_strings_and_the_environment(tmp_path, monkeypatch):
    """issue 13: like every option, each new one comes as a dictConfig string or an env
    variable (JSON text for the dicts)."""
    expected = f"Splunk {TOKEN}"

    def answer(request):
        if request.header("Authorization") != expected:
            return refuse(401, "no")
        if request.header("X-Tenant") != "blue":
            return refuse(400, "no tenant")
        return Answer(200, records=request.ndjson())

    with LoopbackServer(respond=answer) as receiver:
        monkeypatch.setenv("LOGHANDLERS_JSON_TOKEN", TOKEN)
        monkeypatch.setenv("LOGHANDLERS_JSON_TOKEN_PREFIX", "Splunk")
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "ship": {
                        "class": "loghandlers.JSONHandler",
                        "url": receiver.url,
                        "spool_dir": str(tmp_path),
                        "headers": '{"X-Tenant": "blue"}',
                        "format": "ndjson",
                        "field_names": '{"message": "msg"}',
                        "timestamp_format": "epoch_ms",
                    }
                },
                "loggers": {"receivers_json.dictconfig": {"handlers": ["ship"], "level": "INFO"}},
            }
        )
        log = logging.getLogger("receivers_json.dictconfig")
        log.propagate = False
        (handler,) = log.handlers
        try:
            log.info("configured")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        (record,) = receiver.records
        assert record["msg"] == "configured" and isinstance(record["timestamp"], int)
