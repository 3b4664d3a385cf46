"""What the four service handlers share: exports, options, env vars, spools, secrets."""

from __future__ import annotations

import base64
import logging.config

import pytest

import loghandlers
from loghandlers import InitialStateHandler, KronosHandler, PanoplyHandler, SamsaraHandler
from tests.helpers import FAST, attach, spool_text
from tests.loopback import status

SECRET_IS = "ist_S3cr3t+key/=="
SECRET_PANOPLY = base64.b64encode(b"RAND2>>>/uuid-1/123456789012/eu-west-1").decode()
HANDLERS = (SamsaraHandler, InitialStateHandler, PanoplyHandler, KronosHandler)


def test_handlers_are_exported():
    for handler_class in HANDLERS:
        assert getattr(loghandlers, handler_class.__name__) is handler_class
        assert handler_class.__name__ in loghandlers.__all__


def test_everything_comes_from_the_environment(monkeypatch):
    env = {
        "LOGHANDLERS_SAMSARA_URL": "http://samsara.example:9000/x",
        "LOGHANDLERS_SAMSARA_EVENT_NAME": "app.{level}",
        "LOGHANDLERS_INITIALSTATE_ACCESS_KEY": SECRET_IS,
        "LOGHANDLERS_INITIALSTATE_BUCKET_KEY": "bk",
        "LOGHANDLERS_INITIALSTATE_BUCKET_NAME": "Bucket",
        "LOGHANDLERS_INITIALSTATE_KEY": "k",
        "LOGHANDLERS_PANOPLY_API_KEY": "acct/r1",
        "LOGHANDLERS_PANOPLY_API_SECRET": SECRET_PANOPLY,
        "LOGHANDLERS_PANOPLY_TABLE": "events",
        "LOGHANDLERS_KRONOS_URL": "http://kronos.example:8150",
        "LOGHANDLERS_KRONOS_NAMESPACE": "ns",
        "LOGHANDLERS_KRONOS_STREAM": "st",
        "LOGHANDLERS_SPOOL_DIR": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    made = [handler_class() for handler_class in HANDLERS]
    try:
        samsara, initialstate, panoply, kronos = (h.service for h in made)
        assert samsara.endpoint() == "http://samsara.example:9000/v1/events"
        assert samsara.settings.event_name == "app.{level}"
        assert samsara.settings.compression == "gzip"
        assert initialstate.settings.access_key == SECRET_IS
        assert initialstate.endpoint() == "https://groker.init.st/api/events"
        assert (initialstate.settings.bucket_name, initialstate.settings.key) == ("Bucket", "k")
        assert (
            panoply.endpoint()
            == "https://sqs.eu-west-1.amazonaws.com/123456789012/sdk-acct-RAND2%3E%3E%3E"
        )
        assert panoply.settings.table == "events"
        assert kronos.endpoint() == "http://kronos.example:8150/1.0/events/put"
        assert (kronos.settings.namespace, kronos.settings.stream) == ("ns", "st")
    finally:
        for handler in made:
            handler.close()


def test_dict_config_examples(tmp_path):
    spool = str(tmp_path)
    config = {
        "version": 1,
        "handlers": {
            "samsara": {
                "class": "loghandlers.SamsaraHandler",
                "url": "http://localhost:9000",
                "event_name": "myapp.{level}",
                "spool_dir": spool,
            },
            "initialstate": {
                "class": "loghandlers.InitialStateHandler",
                "access_key": SECRET_IS,
                "bucket_key": "myapp_logs",
                "bucket_name": "My app logs",
                "spool_dir": spool,
            },
            "panoply": {
                "class": "loghandlers.PanoplyHandler",
                "api_key": "acct/r1",
                "api_secret": SECRET_PANOPLY,
                "table": "app_logs",
                "spool_dir": spool,
            },
            "kronos": {
                "class": "loghandlers.KronosHandler",
                "url": "http://localhost:8150",
                "namespace": "myapp",
                "spool_dir": spool,
                "flush_interval": "0.5",
            },
        },
        "loggers": {
            "dictconfig.test": {"handlers": ["samsara", "initialstate", "panoply", "kronos"]}
        },
    }
    logging.config.dictConfig(config)
    handlers = logging.getLogger("dictconfig.test").handlers
    try:
        assert [type(h) for h in handlers] == list(HANDLERS)
        assert handlers[3].settings.flush_interval == 0.5
    finally:
        for handler in handlers:
            handler.close()
        logging.getLogger("dictconfig.test").handlers.clear()


def test_spools_are_named_by_bucket_table_and_namespace(tmp_path):
    pairs = [
        (InitialStateHandler, {"access_key": SECRET_IS}, "bucket_key", ("a", "b")),
        (PanoplyHandler, {"api_key": "acct/r1", "api_secret": SECRET_PANOPLY}, "table", ("a", "b")),
        (KronosHandler, {"url": "http://k.example"}, "namespace", ("a", "b")),
    ]
    for handler_class, options, name, (one, two) in pairs:
        made = [
            handler_class(spool_dir=str(tmp_path), **options, **{name: value})
            for value in (one, two)
        ]
        try:
            assert made[0].service.identity() != made[1].service.identity()
            assert f"{name}={one}" in made[0].service.identity()
        finally:
            for handler in made:
                handler.close()


@pytest.mark.parametrize(
    "handler_class, options, secret, refusal",
    [
        (
            InitialStateHandler,
            {"access_key": SECRET_IS, "bucket_key": "bk"},
            SECRET_IS,
            status(401, {}, f'{{"message": "bad key {SECRET_IS}"}}'.encode()),
        ),
        (
            PanoplyHandler,
            {"api_key": "acct/r1", "api_secret": SECRET_PANOPLY},
            SECRET_PANOPLY,
            status(403, {}, f"<Error><Code>AccessDenied</Code>{SECRET_PANOPLY}</Error>".encode()),
        ),
    ],
)
def test_secret_never_shows(server, tmp_path, capsys, handler_class, options, secret, refusal):
    server.push(refusal)
    handler = handler_class(url=server.url + "/q", spool_dir=str(tmp_path), **FAST, **options)
    errors = []
    handler.on("error", errors.append)
    try:
        log, _ = attach(handler)
        log.error("with a secret-free message")
        assert handler.flush(timeout=5)
        assert server.requests and handler.stats()["spooled"] == 1
        outputs = [repr(handler), str(handler.stats()), repr(handler.settings), str(errors)]
        outputs.append(spool_text(tmp_path))
    finally:
        handler.close()
    outputs.append(capsys.readouterr().err)
    assert "****" in outputs[-1]  # the server echoed it; the report blanked it
    for text in outputs:
        assert secret not in text


def test_secret_not_in_network_errors(tmp_path, capsys):
    handler = InitialStateHandler(
        url="http://127.0.0.1:9",
        access_key=SECRET_IS,
        bucket_key="bk",
        spool_dir=str(tmp_path),
        **{**FAST, "retries": 0},
    )
    try:
        log, _ = attach(handler)
        log.info("x")
        assert handler.flush(timeout=10)
        assert handler.stats()["spooled"] == 1
    finally:
        handler.close()
    err = capsys.readouterr().err
    assert "network" in err and SECRET_IS not in err
