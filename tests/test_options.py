"""One option table: arguments beat service env beats generic env beats defaults."""

import logging.config

import pytest

from loghandlers import JSONHandler
from loghandlers.options import COMMON, resolve


def test_precedence_argument_service_env_generic_env_default(monkeypatch):
    monkeypatch.setenv("LOGHANDLERS_FLUSH_INTERVAL", "7")
    monkeypatch.setenv("LOGHANDLERS_JSON_FLUSH_INTERVAL", "3")
    monkeypatch.setenv("LOGHANDLERS_BATCH_SIZE", "11")
    monkeypatch.setenv("LOGHANDLERS_JSON_URL", "http://127.0.0.1:9/env")
    settings = resolve("JSON", COMMON, {"flush_interval": "0.5"})
    assert settings.flush_interval == 0.5
    settings = resolve("JSON", COMMON, {})
    assert settings.flush_interval == 3.0
    assert settings.batch_size == 11
    assert settings.url == "http://127.0.0.1:9/env"
    assert settings.timeout == 30.0
    monkeypatch.delenv("LOGHANDLERS_JSON_FLUSH_INTERVAL")
    assert resolve("JSON", COMMON, {}).flush_interval == 7.0


def test_service_env_only_applies_to_its_service(monkeypatch):
    monkeypatch.setenv("LOGHANDLERS_SAMSARA_BATCH_SIZE", "5")
    assert resolve("JSON", COMMON, {}).batch_size == 5000
    assert resolve("SAMSARA", COMMON, {}).batch_size == 5


@pytest.mark.parametrize(
    "option, value",
    [
        ("flush_interval", "soon"),
        ("batch_size", "0"),
        ("batch_size", "1.5"),
        ("compression", "brotli"),
        ("verify", "maybe"),
        ("spool_mode", "sometimes"),
        ("url", "ftp://x"),
        ("timeout", "nan"),
        ("static_fields", "[1]"),
    ],
)
def test_bad_argument_values_name_the_option_and_origin(option, value):
    with pytest.raises(ValueError) as caught:
        resolve("JSON", COMMON, {option: value})
    assert option in str(caught.value) and "from argument" in str(caught.value)


def test_bad_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("LOGHANDLERS_JSON_MAX_QUEUE_SIZE", "lots")
    with pytest.raises(ValueError, match="LOGHANDLERS_JSON_MAX_QUEUE_SIZE"):
        JSONHandler(url="http://127.0.0.1:9")


def test_unknown_option_is_a_clear_error():
    with pytest.raises(TypeError, match="flush_intervall"):
        JSONHandler(url="http://127.0.0.1:9", flush_intervall=1)


def test_missing_url_is_a_clear_error():
    with pytest.raises(ValueError, match="LOGHANDLERS_JSON_URL"):
        JSONHandler()


def test_env_only_configuration(monkeypatch, server, tmp_path):
    monkeypatch.setenv("LOGHANDLERS_JSON_URL", server.url)
    monkeypatch.setenv("LOGHANDLERS_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("LOGHANDLERS_SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("LOGHANDLERS_JSON_STATIC_FIELDS", '{"service": "billing"}')
    handler = JSONHandler()
    log = logging.getLogger("envonly")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning("configured by env")
        assert server.wait_for_events(1)
        assert server.events[0]["service"] == "billing"
        assert server.events[0]["level"] == "WARNING"
    finally:
        handler.close()
        log.removeHandler(handler)


def test_dictconfig_strings_for_every_kind_of_option(server, tmp_path):
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "json": {
                    "()": "pythonjsonlogger.json.JsonFormatter",
                    "fmt": "%(message)s %(funcName)s",
                }
            },
            "handlers": {
                "ship": {
                    "class": "loghandlers.JSONHandler",
                    "formatter": "json",
                    "url": server.url,
                    "flush_interval": "0.05",
                    "batch_size": "10",
                    "max_queue_size": "100",
                    "compression": "gzip",
                    "compression_level": "1",
                    "verify": "false",
                    "retries": "2",
                    "spool_dir": str(tmp_path),
                    "static_fields": '{"env": "test"}',
                }
            },
            "loggers": {"strings": {"handlers": ["ship"], "level": "DEBUG", "propagate": False}},
        }
    )
    log = logging.getLogger("strings")
    handler = log.handlers[0]
    try:
        assert handler.settings.batch_size == 10 and handler.settings.verify is False
        log.debug("via json formatter")
        assert server.wait_for_events(1)
        event = server.events[0]
        assert event["funcName"] == "test_dictconfig_strings_for_every_kind_of_option"
        assert event["env"] == "test"
        assert server.requests[0].header("Content-Encoding") == "gzip"
    finally:
        handler.close()
        log.removeHandler(handler)
