"""The sink process and the runners: one configured handler per burst, with the same small
surface for the floors, our handlers and the peers (``handler``, ``flush``, ``abandon``,
``close``, ``stats``, the sink channel it is counted under)."""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import logging.handlers
import os
import queue
import subprocess
import sys
import threading

from common import HERE, our_options
from probes import listener_native_id, worker_native_id

# --------------------------------------------------------------------------- the sink


class Sink:
    """benchmarks/sink.py in its own process; always killed on the way out."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.conn = None

    def start(self) -> Sink:
        errors = open(os.path.join(self.workdir, "sink.stderr"), "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "sink.py"),
                "--parent-pid",
                str(os.getpid()),
                "--max-seconds",
                "900",
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        atexit.register(self.stop)
        line = _readline_with_timeout(self.proc.stdout, 15.0)
        if not line.startswith("PORT "):
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _request(self, method: str, path: str) -> dict:
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.conn.request(method, path, body=b"" if method == "POST" else None)
                response = self.conn.getresponse()
                return json.loads(response.read() or b"{}")
            except (OSError, http.client.HTTPException, ValueError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        return {}

    def counts(self) -> dict:
        return self._request("GET", "/_counts")

    def reset(self) -> None:
        self._request("POST", "/_reset")

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _readline_with_timeout(stream, timeout: float) -> str:
    box = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


# --------------------------------------------------------------------------- runners


class Runner:
    """One configured handler for one burst: the same surface for floors, ours and peers."""

    kind = "?"
    channel: str | None = None
    events_per_record = 1
    worker_native_id: int | None = None

    def flush(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def close(self) -> None:
        self.handler.close()

    def stats(self) -> dict | None:
        return None


class NullFloor(Runner):
    kind = "floor"

    def __init__(self, ctx):
        self.handler = logging.NullHandler()


class _Drop(logging.Handler):
    def handle(self, record):
        return True

    def emit(self, record):
        pass


class QueueFloor(Runner):
    """stdlib QueueHandler + QueueListener whose only handler drops every record."""

    kind = "floor"
    queue_factory = staticmethod(lambda: queue.Queue(-1))

    def __init__(self, ctx):
        self.queue = self.queue_factory()
        self.handler = logging.handlers.QueueHandler(self.queue)
        self.listener = logging.handlers.QueueListener(self.queue, _Drop())
        self.listener.start()
        self.worker_native_id = listener_native_id(self.listener)

    def close(self) -> None:
        self.listener.stop()
        self.handler.close()


class SimpleQueueFloor(QueueFloor):
    queue_factory = staticmethod(queue.SimpleQueue)


class Ours(Runner):
    kind = "ours"

    def __init__(self, ctx, name: str):
        cls = ctx.ours[name]
        options, self.channel, self.events_per_record = our_options(name, ctx.sink.base_url)
        self.handler = cls(**options)
        self.worker_native_id = worker_native_id(self.handler)

    def flush(self) -> None:
        self.handler.flush(timeout=60)

    def stats(self) -> dict:
        return self.handler.stats()


class Peer(Runner):
    kind = "peer"

    def __init__(self, ctx, peer_class):
        self.peer = peer_class(ctx.sink.base_url, "127.0.0.1", ctx.sink.port, ctx.workdir)
        self.handler = self.peer.handler
        self.channel = self.peer.channel
        self.events_per_record = self.peer.events_per_record

    def flush(self) -> None:
        self.peer.flush()

    def abandon(self) -> None:
        self.peer.abandon()

    def close(self) -> None:
        _bounded(self.peer.close, 15.0)


def _bounded(fn, seconds: float) -> bool:
    """Run ``fn`` on a daemon thread; give up waiting after ``seconds``."""
    errors = []

    def call():
        try:
            fn()
        except Exception as exc:  # a peer's close() failing must not stop the benchmark
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive() and not errors


class Spec:
    def __init__(self, name: str, kind: str, factory, note: str = "", max_records=None):
        self.name, self.kind, self.factory, self.note = name, kind, factory, note
        self.max_records = max_records  # records per burst in a full run, if fewer than all
        self.records = None
