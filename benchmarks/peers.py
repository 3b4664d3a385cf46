"""Adapters that point other Python log shippers at the benchmark sink.

Every peer is optional (``pip install -e .[bench]`` installs them); :func:`available`
imports what it can and says why the others are missing. An adapter exposes the same small
surface as our handlers in ``run.py``: ``handler`` (a ``logging.Handler``), ``flush()``
(the peer's own flush, or the nearest thing it has), ``abandon()`` (drop what is still
queued, when the benchmark stops waiting), ``close()``, plus the sink ``channel`` its
requests are counted under, how many sink events one log record makes, and for the very
slow ones ``max_records``, the burst size of a full run (scaled down with ``--quick``).

Settings are each peer's defaults except what is needed to reach the sink (URL, host,
port, an HTTP transport where the default is another wire) and what each note says.
"""

from __future__ import annotations

import logging
import os
import threading
import time

#: LogRecord attributes that are not ``extra=`` fields (for the adapters that need extras)
_STANDARD = frozenset(logging.LogRecord("x", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _reset_root_logging() -> None:
    """samsara-sdk calls ``logging.basicConfig(level=DEBUG)`` at import: undo it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


# --------------------------------------------------------------------------- logstash


class LogstashAsync:
    """python-logstash-async: ``AsynchronousLogstashHandler`` with its ``HttpTransport``."""

    name = "python-logstash-async"
    module = "logstash_async"
    channel = "logstash"
    events_per_record = 1
    note = (
        "HttpTransport (default is TCP) to /logstash, in-memory cache (database_path=None), "
        "default batch of 50 events, a new HTTP session per batch"
    )

    def __init__(self, base_url: str, host: str, port: int, workdir: str):
        import logstash_async
        from logstash_async.handler import AsynchronousLogstashHandler

        self._module = logstash_async
        logstash_async.EVENT_CACHE.clear()
        self.handler = AsynchronousLogstashHandler(
            host,
            port,
            database_path=None,
            transport="logstash_async.transport.HttpTransport",
            ssl_enable=False,
            path="logstash",
        )

    def flush(self) -> None:
        self.handler.flush()  # asynchronous: asks the worker to send now

    def abandon(self) -> None:
        """Stop sending what is left (the benchmark's deadline passed)."""
        self._module.EVENT_CACHE.clear()
        worker = type(self.handler)._worker_thread
        if worker is not None:
            try:
                while True:
                    worker._queue.get_nowait()
            except Exception:
                pass

    def close(self) -> None:
        self.handler.close()
        self._module.EVENT_CACHE.clear()


# --------------------------------------------------------------------------- logzio


class Logzio:
    name = "logzio-python-handler"
    module = "logzio.handler"
    channel = "logzio"
    events_per_record = 1
    note = "LogzioHandler defaults (drain every 3 s, unbounded queue), url=sink/logzio"

    def __init__(self, base_url: str, host: str, port: int, workdir: str):
        from logzio.handler import LogzioHandler

        self.handler = LogzioHandler("benchtoken", url=base_url + "/logzio")

    def flush(self) -> None:
        self.handler.flush()  # synchronous: drains the queue on the caller's thread

    def abandon(self) -> None:
        queue = self.handler.logzio_sender.queue
        try:
            while True:
                queue.get_nowait()
        except Exception:
            pass

    def close(self) -> None:
        self.abandon()
        self.handler.close()


# --------------------------------------------------------------------------- OpenTelemetry


class OpenTelemetry:
    name = "opentelemetry-sdk"
    module = "opentelemetry.sdk._logs"
    channel = "otlp"
    events_per_record = 1

    def __init__(self, base_url: str, host: str, port: int, workdir: str):
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        exporter, self.exporter_kind = _otlp_exporter(base_url)
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        self.handler = LoggingHandler(level=logging.NOTSET, logger_provider=self.provider)
        if self.exporter_kind == "otlp-http":
            self.note = (
                "LoggingHandler + BatchLogRecordProcessor defaults (queue 2048, batch 512, "
                "1 s) + OTLPLogExporter (OTLP/HTTP protobuf) to sink /v1/logs"
            )
        else:
            self.channel = None  # nothing reaches the sink
            self.note = (
                "LoggingHandler + BatchLogRecordProcessor defaults with a no-op exporter "
                "(opentelemetry-exporter-otlp-proto-http not installed): caller cost only"
            )

    def flush(self) -> None:
        self.provider.force_flush(60_000)

    def abandon(self) -> None:
        pass

    def close(self) -> None:
        self.provider.shutdown()


def _otlp_exporter(base_url: str):
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=base_url + "/v1/logs"), "otlp-http"
    except ImportError:
        pass
    try:
        from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
    except ImportError:  # older SDKs
        from opentelemetry.sdk._logs.export import LogExporter as LogRecordExporter
        from opentelemetry.sdk._logs.export import LogExportResult as LogRecordExportResult

    class NoOp(LogRecordExporter):
        def export(self, batch):
            return LogRecordExportResult.SUCCESS

        def shutdown(self):
            pass

    return NoOp(), "no-op"


# --------------------------------------------------------------------------- ISStreamer


class ISStreamerPeer:
    """The official Initial State client is not a logging handler: the adapter does what
    our InitialStateHandler does with a record (message under the logger name, each extra
    under ``<name>_<field>``), through ``Streamer.log`` / ``Streamer.log_object``."""

    name = "ISStreamer"
    module = "ISStreamer.Streamer"
    channel = "initialstate"
    events_per_record = 3  # message, user, amount
    max_records = 5_000  # ~300 µs a record: a full burst would take 30 s
    note = (
        "Streamer defaults (buffer_size=10: one new thread and one new connection per 10 "
        "events); adapter handler calls log() + log_object(extras)"
    )

    def __init__(self, base_url: str, host: str, port: int, workdir: str):
        from ISStreamer import configutil
        from ISStreamer.Streamer import Streamer

        ini = os.path.join(workdir, "isstreamer.ini")
        with open(ini, "w") as f:  # api_config is only read when client_config exists
            f.write("[isstreamer.client_config]\naccess_key = bench\n")
            f.write(f"[isstreamer.api_config]\nstream_api_base = {base_url}\n")
        if configutil.getConfig(ini)["stream_api_base"] != base_url:
            raise RuntimeError("ISStreamer would not use the sink's URL; not starting it")
        before = set(threading.enumerate())
        self.streamer = Streamer(
            bucket_name="bench", bucket_key="bench-peer", access_key="bench", ini_file_location=ini
        )
        for thread in set(threading.enumerate()) - before:  # the bucket-creation call
            thread.join(10)
        streamer = self.streamer

        class Adapter(logging.Handler):
            def emit(self, record):
                try:
                    key = record.name
                    streamer.log(key, record.getMessage(), epoch=record.created)
                    extras = _extras(record)
                    if extras:
                        streamer.log_object(extras, key_prefix=key, epoch=record.created)
                except Exception:
                    self.handleError(record)

        self.handler = Adapter()
        self._threads_before = before

    def flush(self) -> None:
        self.streamer.flush()  # ships what is queued; earlier batches are on their threads

    def abandon(self) -> None:
        self.streamer.LogQueue.clear()

    def close(self) -> None:
        self.streamer.close()
        ends = time.monotonic() + 10
        for thread in set(threading.enumerate()) - self._threads_before:
            if "__ship_buffer" in thread.name and thread is not threading.current_thread():
                thread.join(max(0.0, ends - time.monotonic()))  # its last shipments


# --------------------------------------------------------------------------- samsara-sdk


class SamsaraSDK:
    """samsara-sdk's ``SamsaraClient`` (not a logging handler): the adapter builds the event
    our SamsaraHandler would build and calls ``record_event``."""

    name = "samsara-sdk"
    module = "samsara_sdk"
    channel = "samsara"
    events_per_record = 1
    max_records = 15_000  # ~170 µs a record; still 1.5x its 10,000-event buffer
    note = (
        "SamsaraClient defaults (max_buffer_size 10000 drop-oldest, publish every 30 s, "
        "gzip level 9, cerberus validation per event); flush = client._flush_buffer()"
    )

    def __init__(self, base_url: str, host: str, port: int, workdir: str):
        from samsara_sdk import SamsaraClient

        _reset_root_logging()
        self.client = SamsaraClient(url=base_url, sourceId="bench")
        client = self.client

        class Adapter(logging.Handler):
            def emit(self, record):
                try:
                    event = {
                        "message": record.getMessage(),
                        "level": record.levelname,
                        "logger": record.name,
                    }
                    event.update(_extras(record))
                    event["eventName"] = "log." + record.levelname.lower()
                    event["timestamp"] = int(record.created * 1000)
                    client.record_event(**event)
                except Exception:
                    self.handleError(record)

        self.handler = Adapter()

    def flush(self) -> None:
        if len(self.client._buffer):
            self.client._flush_buffer()  # the SDK has no public flush

    def abandon(self) -> None:
        self.client._buffer.clear()

    def close(self) -> None:
        self.client.stop_consuming()
        publisher = self.client.publisher
        if publisher is not None:
            publisher.join(5)


PEERS = (Logzio, LogstashAsync, OpenTelemetry, ISStreamerPeer, SamsaraSDK)


def available() -> tuple[list, dict]:
    """(importable peer classes, {peer name: why it is missing})."""
    found, missing = [], {}
    for peer in PEERS:
        try:
            __import__(peer.module)
        except Exception as exc:  # ImportError, or a broken dependency of the peer
            missing[peer.name] = f"{type(exc).__name__}: {exc}"
        else:
            found.append(peer)
    _reset_root_logging()
    return found, missing


def versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in (
        "python-logstash-async",
        "logzio-python-handler",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
        "ISStreamer",
        "samsara-sdk",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
