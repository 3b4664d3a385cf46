"""Secrets stay in the request that needs them; files are private; TLS is verified.

Each credentialed handler is made to fail in every way we know (refused, 401, 500, a
hanging endpoint cut off by the close deadline, malformed credentials at construction),
with a server that echoes the secret back where it can, and then every place text can
leak is searched for the secret: spool file names and contents, stderr, ``repr``,
``stats()``, ``on(...)`` payloads and exception messages.
"""

from __future__ import annotations

import base64
import logging
import os
import pathlib
import shutil
import ssl
import stat
import subprocess
import sys
import time
import traceback
from urllib.parse import quote, quote_plus

import pytest

from loghandlers import (
    InitialStateHandler,
    JSONHandler,
    KronosHandler,
    PanoplyHandler,
    SamsaraHandler,
)
from tests.loopback import LoopbackServer, free_port, hang, status

IS_SECRET = "ist_5ecr3t+Key/z=="
PANOPLY_UUID = "0e1f2a3b-5ec7-4e7a-9c1d-5ec7e7000001"
# base64 of RAND2/UUID/AWSACCOUNT/REGION; holds "+" and "=", which forms encode
PANOPLY_SECRET = base64.b64encode(
    f"RAND2>>>/{PANOPLY_UUID}/123456789012/eu-west-1".encode()
).decode()
assert "+" in PANOPLY_SECRET and PANOPLY_SECRET.endswith("=")

CREDENTIALED = {
    "initialstate": (
        InitialStateHandler,
        {"access_key": IS_SECRET, "bucket_key": "bk"},
        "",
        (IS_SECRET,),
    ),
    "panoply": (
        PanoplyHandler,
        {"api_key": "acct/r1", "api_secret": PANOPLY_SECRET},
        "/123456789012/sdk-acct-RAND2",
        (PANOPLY_SECRET, PANOPLY_UUID),
    ),
}
ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def open_umask():
    """Files must be private because we say so, not because the umask happens to be 022."""
    old = os.umask(0)
    yield
    os.umask(old)


def tree_text(root) -> list:
    """Every path under ``root`` and every file's content, as text to search."""
    out = []
    for directory, _dirs, files in os.walk(root):
        out.append(directory)
        for name in files:
            path = os.path.join(directory, name)
            out.append(path)
            with open(path, "rb") as handle:
                out.append(handle.read().decode("utf-8", "replace"))
    return out


def assert_private(root) -> None:
    for directory, _, files in os.walk(root):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in files:
            path = os.path.join(directory, name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def assert_nowhere(needles, texts) -> None:
    for needle in needles:
        for text in texts:
            assert needle not in str(text), f"secret leaked into: {str(text)[:300]!r}"


# ----------------------------------------------------------------------------- failures
@pytest.mark.parametrize("failure", ["refused", "401", "500", "hang"])
@pytest.mark.parametrize("service", sorted(CREDENTIALED))
def test_a_failing_credentialed_handler_leaks_its_secret_nowhere(
    service, failure, tmp_path, capfd, open_umask
):
    handler_class, credentials, path, needles = CREDENTIALED[service]
    secret = needles[0]
    spool_dir = tmp_path / "spool"
    server = None
    if failure == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        behaviour = {
            "401": status(401, body=f'{{"message": "bad key {secret}"}}'.encode()),
            "500": status(500, body=f"<Error><Message>oops {secret}</Message></Error>".encode()),
            "hang": hang(30),
        }[failure]
        server = LoopbackServer(default=behaviour).start()
        url = server.url
    payloads = []
    try:
        handler = handler_class(
            url=url + path,
            spool_dir=str(spool_dir),
            flush_interval=3600,
            retries=1,
            backoff=0.01,
            timeout=30,
            close_timeout=1,
            **credentials,
        )
        for event in ("send", "flush", "error"):
            handler.on(event, payloads.append)
        log = logging.getLogger(f"security.{service}.{failure}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        try:
            log.warning("a secret-free record")
            if failure == "hang":
                assert handler.flush(timeout=0.2) is False
                assert server.wait_for_requests(1)
            else:
                assert handler.flush(timeout=20)
            texts = [repr(handler), str(handler.stats()), repr(handler.settings)]
            started = time.monotonic()
            handler.close()
            took = time.monotonic() - started
        finally:
            log.removeHandler(handler)
        assert took < 1 + 4  # close_timeout, generously
        stats = handler.stats()
        assert stats["spooled"] == 1 and stats["sent"] == 0, stats
        captured = capfd.readouterr()
        texts += [repr(handler), str(stats), str(payloads), captured.out, captured.err]
        texts += tree_text(spool_dir)
        assert "a secret-free record" in "".join(tree_text(spool_dir))  # it was kept
        if failure != "hang":  # (a close() that spools at its deadline says nothing)
            assert captured.err  # the failure was reported...
        assert_nowhere(needles, texts)  # ...without the secret
        if failure in ("401", "500"):
            assert "****" in captured.err  # the echoed secret was blanked, not dropped
        assert_private(spool_dir)
    finally:
        if server is not None:
            server.stop()


def warn_once_through(handler, logger_name: str) -> None:
    """Log one warning through ``handler`` alone, deliver it, close the handler."""
    log = logging.getLogger(logger_name)
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("x")
        assert handler.flush(timeout=10)
    finally:
        log.removeHandler(handler)
        handler.close()


def test_a_secret_echoed_back_form_encoded_is_blanked_too(tmp_path, capfd):
    errors = []
    echo = f"<Error><Code>InvalidParameterValue</Code><Message>{quote_plus(PANOPLY_SECRET)}"
    with LoopbackServer(default=status(400, body=f"{echo}</Message></Error>".encode())) as server:
        handler = PanoplyHandler(
            url=server.url + "/q",
            api_key="acct/r1",
            api_secret=PANOPLY_SECRET,
            spool_dir=str(tmp_path),
            flush_interval=3600,
            retries=0,
        )
        handler.on("error", errors.append)
        warn_once_through(handler, "security.echo")
    err = capfd.readouterr().err
    assert "InvalidParameterValue" in err
    for encoded in (quote_plus(PANOPLY_SECRET), quote(PANOPLY_SECRET, safe="")):
        assert encoded not in err and encoded not in str(errors)


# ----------------------------------------------------------------------------- construction
# (handler, other options, the secret option, its value, the option the error names)
BAD_CREDENTIALS = [
    (InitialStateHandler, {"bucket_key": "bk"}, "access_key", IS_SECRET + "\n", "access_key"),
    (InitialStateHandler, {"bucket_key": "bk"}, "access_key", " " + IS_SECRET, "access_key"),
    (InitialStateHandler, {"bucket_key": "bk"}, "access_key", IS_SECRET + "\u00e9", "access_key"),
    (PanoplyHandler, {"api_key": "acct/r1"}, "api_secret", "x " + IS_SECRET, "api_secret"),
    (PanoplyHandler, {"api_key": "acct/r1"}, "api_secret", PANOPLY_SECRET[:-1], "api_secret"),
    (
        PanoplyHandler,
        {"api_key": "acct/r1"},
        "api_secret",
        base64.b64encode(f"R/{PANOPLY_UUID}/region with space".encode()).decode(),
        "api_secret",
    ),
    (PanoplyHandler, {"api_key": "no-slash"}, "api_secret", PANOPLY_SECRET, "api_key"),
]


@pytest.mark.parametrize("via", ["argument", "environment"])
@pytest.mark.parametrize("handler_class, others, option, bad, named", BAD_CREDENTIALS)
def test_malformed_credentials_fail_at_construction_without_echoing_them(
    handler_class, others, option, bad, named, via, monkeypatch, tmp_path, capfd
):
    kwargs = {"url": "http://127.0.0.1:9", "spool_dir": str(tmp_path), **others}
    if via == "argument":
        kwargs[option] = bad
    else:
        service = handler_class.service_class.env
        monkeypatch.setenv(f"LOGHANDLERS_{service}_{option.upper()}", bad)
    with pytest.raises(ValueError) as caught:
        handler_class(**kwargs)
    texts = [str(caught.value), repr(caught.value)]
    texts.append("".join(traceback.format_exception(caught.type, caught.value, caught.tb)))
    if caught.value.__context__ is not None:
        texts.append(repr(caught.value.__context__))
    texts.append(capfd.readouterr().err)
    assert_nowhere([bad.strip(), PANOPLY_UUID], texts)
    assert named in str(caught.value)


def test_a_secret_of_the_wrong_type_is_named_not_shown(tmp_path):
    with pytest.raises(ValueError) as caught:
        InitialStateHandler(access_key=987654321, bucket_key="bk", spool_dir=str(tmp_path))
    assert "access_key=(secret)" in str(caught.value) and "987654321" not in str(caught.value)


# ----------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 that no trust store knows: (cert path, key path)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import cryptography  # noqa: F401
    except ImportError:
        pass
    else:
        return _with_cryptography(cert, key)
    if shutil.which("openssl") is None:
        pytest.skip("neither the cryptography package nor the openssl CLI is available")
    done = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        timeout=60,
    )
    if done.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {done.stderr[-200:]!r}")
    return str(cert), str(key)


def _with_cryptography(cert, key):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert), str(key)


def test_tls_verification_is_on_by_default_for_every_handler(tmp_path):
    made = [
        JSONHandler(url="https://127.0.0.1:9", spool_dir=""),
        SamsaraHandler(url="https://127.0.0.1:9", spool_dir=""),
        KronosHandler(url="https://127.0.0.1:9", spool_dir=""),
        InitialStateHandler(spool_dir="", **CREDENTIALED["initialstate"][1]),
        PanoplyHandler(spool_dir="", **CREDENTIALED["panoply"][1]),
    ]
    try:
        for handler in made:
            assert handler.settings.verify is True, handler
            assert handler._transport.verify is True, handler
    finally:
        for handler in made:
            handler.close(timeout=1)


def test_a_self_signed_endpoint_fails_verification(self_signed, tmp_path, monkeypatch):
    cert, key = self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    log = logging.getLogger("security.tls")
    log.propagate = False
    log.setLevel(logging.INFO)
    with LoopbackServer(ssl_context=context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        errors = []
        handler = JSONHandler(
            url=server.url, spool_dir=str(tmp_path / "a"), retries=0, flush_interval=3600
        )
        handler.on("error", errors.append)
        log.addHandler(handler)
        try:
            log.info("not to a stranger")
            assert handler.flush(timeout=20)
        finally:
            log.removeHandler(handler)
            handler.close()
        stats = handler.stats()
        assert (stats["sent"], stats["spooled"]) == (0, 1)
        assert [e["kind"] for e in errors] == ["network"]
        assert "CERTIFICATE_VERIFY_FAILED" in errors[0]["message"]
        assert server.requests == []  # the body never left the client
        # the same server is fine once its certificate is trusted: verification was the cause
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
        trusting = JSONHandler(
            url=server.url, spool_dir=str(tmp_path / "b"), retries=0, flush_interval=3600
        )
        log.addHandler(trusting)
        try:
            log.info("to a friend")
            assert trusting.flush(timeout=20)
        finally:
            log.removeHandler(trusting)
            trusting.close()
        assert [e["message"] for e in server.events] == ["to a friend"]


# ----------------------------------------------------------------------------- the CLI
def run_check(env: dict) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "loghandlers", "check", "--no-network"],
        capture_output=True,
        text=True,
        env=full,
        cwd=ROOT,
        timeout=60,
    )


def test_check_masks_the_panoply_secret_and_never_echoes_a_malformed_one():
    done = run_check(
        {"LOGHANDLERS_PANOPLY_API_KEY": "acct/r1", "LOGHANDLERS_PANOPLY_API_SECRET": PANOPLY_SECRET}
    )
    assert "api_secret         '****'" in done.stdout
    assert_nowhere([PANOPLY_SECRET, PANOPLY_UUID], [done.stdout, done.stderr])
    bad = "not-a-panoply-secret-" + PANOPLY_UUID
    done = run_check(
        {
            "LOGHANDLERS_PANOPLY_API_KEY": "acct/r1",
            "LOGHANDLERS_PANOPLY_API_SECRET": bad,
            "LOGHANDLERS_INITIALSTATE_ACCESS_KEY": IS_SECRET + "\n",
            "LOGHANDLERS_INITIALSTATE_BUCKET_KEY": "bk",
        }
    )
    assert done.stdout.count("not configured") >= 2
    assert_nowhere([bad, PANOPLY_UUID, IS_SECRET], [done.stdout, done.stderr])


def test_check_masks_a_password_in_the_url():
    done = run_check({"LOGHANDLERS_JSON_URL": "http://user:hunter2secret@127.0.0.1:9/in"})
    assert "127.0.0.1:9" in done.stdout
    assert "hunter2secret" not in done.stdout + done.stderr


def test_a_password_in_the_url_stays_out_of_callback_payloads(tmp_path, capfd):
    with LoopbackServer(default=status(401, body=b"no")) as server:
        url = server.url.replace("http://", "http://user:hunter2secret@") + "/in"
        payloads = []
        handler = JSONHandler(url=url, spool_dir=str(tmp_path), retries=0, flush_interval=3600)
        for event in ("send", "flush", "error"):
            handler.on(event, payloads.append)
        warn_once_through(handler, "security.userinfo")
        assert server.requests[0].header("Authorization").startswith("Basic ")
    assert payloads and "hunter2secret" not in capfd.readouterr().err
    assert "hunter2secret" not in str(payloads)
