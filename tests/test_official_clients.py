"""Same data through the official client and through our handler: the collector must store
the same events (time fields aside). Runs where the official clients are installed
(the ``[test]`` extra); each official client runs in a subprocess, since samsara-sdk
reconfigures the root logger on import.
"""

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from loghandlers import InitialStateHandler, SamsaraHandler
from loghandlers.collector import Collector

EXTRA = {
    "count": 3,
    "ratio": 0.5,
    "ok": True,
    "missing": None,
    "nested": {"a": {"b": [1, "x", False]}},
    "unicode": "h\u00e9llo \u2603",
}
TIME_FIELDS = {"timestamp", "receivedAt", "publishedAt", "epoch"}


def installed(module: str) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def run_official(code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def without_time(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in TIME_FIELDS}


def as_text_if_structured(event: dict) -> dict:
    if not isinstance(event["value"], (str, int, float)):
        event = {**event, "value": json.dumps(event["value"])}
    return event


def log_through(handler, logger_name: str, message: str, extra: dict) -> None:
    log = logging.getLogger(logger_name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.info(message, extra=extra)
        assert handler.flush(timeout=10)
    finally:
        handler.close()
        log.removeHandler(handler)


@pytest.mark.skipif(not installed("samsara_sdk"), reason="samsara-sdk not installed ([test] extra)")
def test_samsara_stores_what_the_official_client_stores(tmp_path):
    with Collector(port=0, db=":memory:") as collector:
        official_event = {
            "eventName": "log.info",
            "message": "hello wire",
            "level": "INFO",
            "logger": "wire",
            **EXTRA,
        }
        run_official(
            f"""
            import json
            from samsara_sdk.client import SamsaraClient
            client = SamsaraClient(url={collector.url!r}, sourceId="wire-source", start_publishing_thread=False)
            client.record_event(**json.loads({json.dumps(official_event)!r}))
            client._flush_buffer()
            """
        )
        handler = SamsaraHandler(
            url=collector.url, source_id="wire-source", spool_dir=str(tmp_path)
        )
        log_through(handler, "wire", "hello wire", EXTRA)
        official, ours = collector.events(service="samsara")
        assert without_time(ours["event"]) == without_time(official["event"])
        assert isinstance(ours["event"]["timestamp"], int)
        theirs, mine = collector.requests(service="samsara")[-2:]
        for header in ("Content-Type", "Content-Encoding", "Accept"):
            assert mine["headers"][header] == theirs["headers"][header]
        assert mine["headers"]["X-Samsara-publishedTimestamp"].isdigit()


@pytest.mark.skipif(not installed("ISStreamer"), reason="ISStreamer not installed ([test] extra)")
def test_initialstate_stores_what_the_official_client_stores(tmp_path):
    with Collector(port=0, db=":memory:") as collector:
        ini = tmp_path / "isstreamer.ini"
        ini.write_text(
            "[isstreamer.client_config]\naccess_key = ist_TESTKEY\noffline_mode = false\n"
            f"[isstreamer.api_config]\nstream_api_base = {collector.url}\n"
        )
        run_official(
            f"""
            import json
            from ISStreamer.Streamer import Streamer
            s = Streamer(bucket_name="Wire", bucket_key="wire_bucket", access_key="ist_TESTKEY",
                         ini_file_location={str(ini)!r}, use_async=False)
            s.log("wire", "hello wire")
            extra = json.loads({json.dumps(EXTRA)!r})
            nested = extra.pop("nested")
            s.log_object(extra, key_prefix="wire")
            # our handler flattens a dict-valued extra= field one level, as log_object does
            s.log_object(nested, key_prefix="wire_nested")
            s.close()
            """
        )
        # documented difference: values that are not str/number/bool go as their JSON text
        official = sorted(
            json.dumps(as_text_if_structured(without_time(row["event"])), sort_keys=True)
            for row in collector.events(service="initialstate")
        )
        before = len(official)
        handler = InitialStateHandler(
            url=collector.url,
            access_key="ist_TESTKEY",
            bucket_key="wire_bucket",
            bucket_name="Wire",
            spool_dir=str(tmp_path / "spool"),
        )
        log_through(handler, "wire", "hello wire", EXTRA)
        rows = collector.events(service="initialstate")[before:]
        ours = sorted(json.dumps(without_time(row["event"]), sort_keys=True) for row in rows)
        assert ours == official
        assert all(isinstance(row["event"]["epoch"], float) for row in rows)
        buckets = collector.buckets()
        assert {b["bucketKey"] for b in buckets} == {"wire_bucket"}
