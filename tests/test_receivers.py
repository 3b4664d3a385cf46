"""What a receiver can do to us: drip, stall, echo secrets, send garbage, ask for eternity.

Every test here talks to a real loopback server (:mod:`tests.loopback`) that misbehaves
for real; nothing is mocked.
"""

from __future__ import annotations

import html
import json
import logging
import time
from urllib.parse import quote, quote_plus

import pytest

from loghandlers import InitialStateHandler, JSONHandler
from loghandlers.status import Reporter, Stats
from loghandlers.transport import MAX_RETRY_AFTER, RetryPolicy, parse_retry_after
from tests.loopback import LoopbackServer, drip_head, slow, slow_reader, status


def quiet_logger(name: str) -> logging.Logger:
    log = logging.getLogger(f"receivers.{name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    for old in list(log.handlers):
        log.removeHandler(old)
    return log


def deliver_one(handler, name: str, message: str = "x", flush_timeout: float = 30) -> float:
    """Log ``message`` through ``handler`` alone and flush; returns the seconds flush took."""
    log = quiet_logger(name)
    log.addHandler(handler)
    try:
        log.warning(message)
        started = time.monotonic()
        assert handler.flush(timeout=flush_timeout)
        return time.monotonic() - started
    finally:
        log.removeHandler(handler)


# ----------------------------------------------------------------------------- item 7
def test_a_reply_body_dripped_one_byte_at_a_time_cannot_hold_a_request_past_timeout(tmp_path):
    """issue 9 item 7: ``timeout`` bounds the whole reply, not each socket read: a body
    that drips one byte every 0.5 s (60 s in all) is cut off at the deadline."""
    with LoopbackServer(default=slow(0.5, body=b"x" * 120)) as server:
        handler = JSONHandler(
            url=server.url, spool_dir=str(tmp_path), timeout=1, retries=0, flush_interval=3600
        )
        try:
            took = deliver_one(handler, "drip_body")
        finally:
            handler.close(timeout=2)
        # the server said 200 before it started dripping: the records are stored
        assert handler.stats()["sent"] == 1
        assert took < 15, took  # 1 s timeout; the drip alone would take 60 s


def test_a_status_line_dripped_one_byte_at_a_time_is_a_timeout(tmp_path):
    """issue 9 item 7: a head that never completes within ``timeout`` ends the attempt
    at the deadline (a timeout, so the batch is kept), however steadily bytes arrive."""
    with LoopbackServer(default=drip_head(0.3)) as server:
        errors = []
        handler = JSONHandler(
            url=server.url, spool_dir=str(tmp_path), timeout=1, retries=0, flush_interval=3600
        )
        handler.on("error", errors.append)
        try:
            took = deliver_one(handler, "drip_head")
        finally:
            handler.close(timeout=2)
        stats = handler.stats()
        assert (stats["sent"], stats["spooled"]) == (0, 1), stats
        assert took < 15, took  # 1 s timeout; the head alone takes ~30 s
        assert [e["kind"] for e in errors] == ["network"]
        assert "within 1 s" in errors[0]["message"], errors


def test_an_upload_the_server_reads_slowly_cannot_hold_a_request_past_timeout(tmp_path):
    """issue 9 item 7: sending the body is inside the deadline too: a server that reads
    16 KiB every 0.25 s keeps every send() call progressing but never finishes in time."""
    with LoopbackServer(default=slow_reader(0.25, 16 * 1024)) as server:
        handler = JSONHandler(
            url=server.url,
            spool_dir=str(tmp_path),
            timeout=1,
            retries=0,
            flush_interval=3600,
            max_batch_bytes=64 * 1024 * 1024,
        )
        try:
            took = deliver_one(handler, "slow_upload", "u" * (12 * 1024 * 1024))
        finally:
            handler.close(timeout=2)
        stats = handler.stats()
        assert (stats["sent"], stats["spooled"]) == (0, 1), stats
        assert took < 15, took  # the server would need minutes to read it all


def test_a_prompt_server_is_unaffected_by_the_request_deadline(tmp_path):
    """issue 9 item 7: the deadline is per request: many quick requests on one pooled
    connection each get the whole ``timeout``, and none is cut by an earlier one's timer."""
    with LoopbackServer() as server:
        handler = JSONHandler(
            url=server.url, spool_dir=str(tmp_path), timeout=0.5, retries=0, flush_interval=3600
        )
        log = quiet_logger("prompt")
        log.addHandler(handler)
        try:
            for i in range(20):
                log.info("m%d", i)
                assert handler.flush(timeout=10)
                time.sleep(0.05)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        assert handler.stats()["sent"] == 20
        assert [e["message"] for e in server.events] == [f"m{i}" for i in range(20)]


# ----------------------------------------------------------------------------- item 11
@pytest.mark.parametrize("value", ["1e999", "inf", "nan", "-1e999", "1e3x", "soon"])
def test_a_retry_after_of_eternity_or_garbage_does_not_stop_delivery(value, tmp_path):
    """issue 9 item 11: ``Retry-After: 1e999`` (or any value that is not a delay) is
    ignored: the handler retries on its own backoff and delivers, now and later."""
    with LoopbackServer() as server:
        server.push(status(503, {"Retry-After": value}))
        handler = JSONHandler(
            url=server.url,
            spool_dir=str(tmp_path),
            retries=3,
            backoff=0.01,
            max_backoff=30,
            flush_interval=3600,
        )
        log = quiet_logger(f"retry_after_{value}")
        log.addHandler(handler)
        try:
            log.info("first")
            assert handler.flush(timeout=20)
            log.info("second")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close(timeout=2)
        assert [e["message"] for e in server.events] == ["first", "second"]
        stats = handler.stats()
        assert (stats["sent"], stats["spooled"], stats["retried"]) == (2, 0, 1), stats


def test_a_huge_retry_after_is_capped_at_one_day():
    """issue 9 item 11: a finite but huge delay (seconds or an HTTP date) is a day at most,
    and the policy never waits longer than that whatever it is handed."""
    day = 24 * 3600.0
    assert MAX_RETRY_AFTER == day
    assert parse_retry_after("99999999999999999999999999") == day
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == day
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("0.5") == 0.5
    for garbage in ("1e999", "inf", "-inf", "nan", "NaN", "-5", "1_000", "", "  ", "\x00"):
        assert parse_retry_after(garbage) is None, garbage
    policy = RetryPolicy(retries=3, backoff=0.5, max_backoff=30)
    assert policy.delay(1, float("inf")) == day
    assert policy.delay(1, 1e300) == day
    assert 0.0 <= policy.delay(1, float("nan")) <= 0.5  # not a delay: own backoff


def test_a_retry_after_beyond_max_backoff_still_spools_rather_than_waits(tmp_path):
    """issue 9 item 11: capping does not bypass ``max_backoff``: a day is far longer than
    the 1 s the user allows, so the batch goes to the spool instead of the worker sleeping."""
    with LoopbackServer() as server:
        server.push(status(429, {"Retry-After": "99999999999999"}))
        handler = JSONHandler(
            url=server.url,
            spool_dir=str(tmp_path),
            retries=3,
            backoff=0.01,
            max_backoff=1,
            flush_interval=3600,
        )
        try:
            took = deliver_one(handler, "retry_after_huge")
        finally:
            handler.close(timeout=2)
        stats = handler.stats()
        assert (stats["sent"], stats["spooled"], stats["retried"]) == (0, 1, 0), stats
        assert took < 15, took


# ----------------------------------------------------------------------------- item 10
#: an Initial State access key (printable ASCII: it travels as a header) with every
#: character a JSON, XML or URL encoder would rewrite
ECHO_SECRET = 'ist_5e+cr3t/K&y<"z>==9Q'


def json_slash(secret: str) -> str:
    return secret.replace("\\", "\\\\").replace('"', '\\"').replace("/", "\\/")


def json_unicode(secret: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in secret)


def json_unicode_all_upper(secret: str) -> str:
    return "".join(f"\\u{ord(c):04X}" if ord(c) < 128 else json.dumps(c)[1:-1] for c in secret)


def xml_decimal(secret: str) -> str:
    return "".join(f"&#{ord(c)};" if not c.isalnum() else c for c in secret)


def xml_hex(secret: str) -> str:
    return "".join(f"&#x{ord(c):X};" if not c.isalnum() else c for c in secret)


def xml_padded_hex_all(secret: str) -> str:
    return "".join(f"&#x{ord(c):04x};" for c in secret)


ECHOES = {
    "raw": lambda s: s,
    "percent": lambda s: quote(s, safe=""),
    "form": lambda s: quote_plus(s, safe=""),
    "json_slash": json_slash,
    "json_unicode": json_unicode,
    "json_unicode_all_upper": json_unicode_all_upper,
    "html_escape": lambda s: html.escape(s, quote=True),
    "xml_decimal": xml_decimal,
    "xml_hex": xml_hex,
    "xml_padded_hex_all": xml_padded_hex_all,
    "double_escaped_amp": lambda s: html.escape(html.escape(s)),
    "json_of_percent": lambda s: json_slash(quote(s, safe="")),
    "prefix_9": lambda s: s[:9] + "...",
    "prefix_9_json": lambda s: json_slash(s[:12])[:11] + "…",
}


@pytest.mark.parametrize("encoding", sorted(ECHOES))
def test_a_secret_echoed_back_in_any_encoding_is_blanked(encoding, tmp_path, capfd):
    """issue 9 item 10: a server that echoes the access key raw, %-, JSON- (``\\/``,
    ``\\uXXXX``), XML/HTML-escaped (``&#43;``, ``&#x2B;``, ``&amp;``) or cut to a prefix
    of 8+ characters never gets it onto stderr or into ``on("error")``."""
    echoed = ECHOES[encoding](ECHO_SECRET)
    body = f'{{"error": "access key {echoed} is not valid"}}'.encode()
    errors = []
    with LoopbackServer(default=status(401, body=body)) as server:
        handler = InitialStateHandler(
            url=server.url,
            access_key=ECHO_SECRET,
            bucket_key="bk",
            spool_dir=str(tmp_path),
            retries=0,
            flush_interval=3600,
        )
        handler.on("error", errors.append)
        try:
            deliver_one(handler, f"echo_{encoding}")
        finally:
            handler.close(timeout=2)
        assert server.requests, "the server was asked"
    err = capfd.readouterr().err
    texts = [err, str(errors)]
    assert "is not valid" in err and "****" in err  # reported, with the secret blanked
    for text in texts:
        assert echoed.rstrip(".…") not in text, text
        assert ECHO_SECRET[:8] not in text, text


def test_a_secret_cut_by_the_reply_text_limit_is_blanked(tmp_path, capfd):
    """issue 9 item 10: our own truncation of the reply (300 bytes) may cut the echoed
    secret; the 8+ characters left at the cut are blanked too."""
    for visible in (8, 12, len(ECHO_SECRET) - 1):
        padding = "p" * (300 - len('{"e": "') - visible)
        body = f'{{"e": "{padding}{ECHO_SECRET}"}}'.encode()
        errors = []
        with LoopbackServer(default=status(403, body=body)) as server:
            handler = InitialStateHandler(
                url=server.url,
                access_key=ECHO_SECRET,
                bucket_key="bk",
                spool_dir=str(tmp_path / str(visible)),
                retries=0,
                flush_interval=3600,
            )
            handler.on("error", errors.append)
            try:
                deliver_one(handler, f"cut_{visible}")
            finally:
                handler.close(timeout=2)
        err = capfd.readouterr().err
        assert "pppp" in err and "****" in err, err
        for text in (err, str(errors)):
            assert ECHO_SECRET[:visible] not in text, (visible, text)


def test_reporter_scrub_blanks_each_secret_in_every_form():
    """issue 9 item 10 (the scrubber alone): every encoding above, plus bytes reprs
    (``\\x2b``), double %-encoding and non-ASCII secrets as UTF-8 percent-escapes."""
    unicode_secret = "pässwört-𝒳-geheim"
    reporter = Reporter("t", Stats(), lambda: [ECHO_SECRET, unicode_secret])
    for name, encode in ECHOES.items():
        for secret in (ECHO_SECRET, unicode_secret):
            shown = reporter.scrub(f"before {encode(secret)} after")
            assert secret[:8] not in shown and "****" in shown, (name, shown)
            assert shown.startswith("before ") and shown.rstrip().endswith("after"), shown
    for text in (
        repr(ECHO_SECRET.encode()),
        quote(quote(ECHO_SECRET, safe=""), safe=""),
        repr(unicode_secret.encode()),
        quote(unicode_secret),
        unicode_secret.encode("unicode_escape").decode(),
    ):
        assert "****" in reporter.scrub(text), text
    assert reporter.scrub("nothing secret here") == "nothing secret here"


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2secret@/in",
        "http://user:hunter2secret@exa mple.com/in",
        "http://user:hunter2secret@.example/in",
        "http://user:hunter2secret@127.0.0.1:9/in\x00",
    ],
)
def test_url_user_info_never_appears_in_invalid_url_errors(url, tmp_path, capfd):
    """issue 9 item 10: requests' ``InvalidURL`` repeats the whole URL; neither the
    password (raw or %-decoded) nor the user-info reaches stderr or ``on("error")``."""
    errors = []
    handler = JSONHandler(url=url, spool_dir=str(tmp_path), retries=0, flush_interval=3600)
    handler.on("error", errors.append)
    try:
        deliver_one(handler, "invalid_url")
    finally:
        handler.close(timeout=2)
    err = capfd.readouterr().err
    assert errors and err
    for text in (err, str(errors), repr(handler), str(handler.stats())):
        for needle in ("hunter2", "user:"):
            assert needle not in text, text


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:hunter2secret@example.com/in",
        "http://user:hunter2secret@127.0.0.1:99999/in",
        "http://user:hunter2%2Fsecret@127.0.0.1:abc/in",
        "http://user:hunter2secret@[::1/in",
        "http://user:hunter2%2Fsecret@\u2100.example/in",
        "http://127.0.0.1:9:hunter2+Key/9Q@host.example:8080/logs",
        "http://user:hunter2/secret@host.example/in",
    ],
)
def test_url_user_info_never_appears_in_an_option_error(url):
    """issue 9 item 10: a ``url`` that can't work is refused at construction, naming the
    option, without its user-info."""
    with pytest.raises(ValueError) as caught:
        JSONHandler(url=url, spool_dir="")
    assert "url=" in str(caught.value)
    for needle in ("hunter2", "user:"):
        assert needle not in str(caught.value) and needle not in repr(caught.value)


def test_reply_text_on_stderr_is_printable_and_bounded(tmp_path, capfd):
    """issue 9 item 10: reply bytes reach stderr as one printable, bounded line: no NUL,
    newline, carriage return, escape sequence, bell or bidi override from the server."""
    hostile = (
        b"bad\x00request\r\nloghandlers JSONHandler(forged): ok\n\x1b[2J\x1b[31mred\x07"
        b"\xe2\x80\xae reversed \xff\xfe" + b"A" * 5000
    )
    errors = []
    with LoopbackServer(default=status(400, body=hostile)) as server:
        handler = JSONHandler(
            url=server.url, spool_dir=str(tmp_path), retries=0, flush_interval=3600
        )
        handler.on("error", errors.append)
        try:
            deliver_one(handler, "hostile_reply")
        finally:
            handler.close(timeout=2)
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loghandlers JSONHandler("), err
    assert "forged" in lines[0]  # shown, but on our line, not as a line of its own
    for text in (err.rstrip("\n"), errors[0]["message"]):
        assert text.isprintable(), repr(text)
        assert len(text) < 1200
