"""Every child process the tests start, and the parent-side calls that start them.

A child runs as ``python -m tests.children MODE JSON-ARGS`` (cwd: the repository root;
no ``LOGHANDLERS_*`` variable from the parent) and prints JSON lines with what the parent
needs to know; the parent uses :func:`start_child` (then :func:`first_line`) or
:func:`run_child`, which bound every wait. A ``multiprocessing`` child started with
"spawn" imports this module to find its target, so such targets live here too and
configure their own handler.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- parent side
def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGHANDLERS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_child(mode: str, args: dict) -> subprocess.Popen:
    """Start ``mode`` in a child process; read its output with :func:`first_line`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.children", mode, json.dumps(args)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )


def first_line(child: subprocess.Popen, timeout: float = 60) -> dict:
    """The child's next line of JSON, without waiting forever for a child that hangs."""
    box = []
    reader = threading.Thread(target=lambda: box.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box and box[0], "the child said nothing"
    return json.loads(box[0])


def run_child(mode: str, args: dict, timeout: float = 120) -> dict:
    """Run ``mode`` to its end; its last line of JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.children", mode, json.dumps(args)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- child side


def _logger(name: str, handler) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    return log


def spawn_child(url: str, spool_dir: str, tag: str, count: int) -> None:
    """A spawned child: a fresh interpreter, so it builds its own handler; it never closes
    it and relies on the exit drain."""
    from loghandlers import JSONHandler

    handler = JSONHandler(url=url, spool_dir=spool_dir, flush_interval=3600)
    log = _logger("spawned", handler)
    for i in range(count):
        log.info("%s %d", tag, i)


# ----------------------------------------------------------------------------- modes
def stream_then_wait(args: dict) -> None:
    """Log ``count`` records (``format``, default "k%d"), say so, then sleep until the
    parent kills us (at most ``sleep`` seconds)."""
    from loghandlers import JSONHandler

    handler = JSONHandler(**args["options"])
    log = _logger("victim", handler)
    for i in range(args["count"]):
        log.info(args.get("format", "k%d"), i)
    print(json.dumps({"logged": args["count"], "pid": os.getpid()}), flush=True)
    time.sleep(args.get("sleep", 60))


def log_and_exit(args: dict) -> None:
    """Log ``count`` records (``format``), say so, and leave through a plain interpreter
    exit without closing or flushing: the exit drain has to ship them."""
    from loghandlers import JSONHandler

    handler = JSONHandler(**args["options"])
    log = _logger("leaving", handler)
    for i in range(args["count"]):
        log.info(args["format"], i)
    print(json.dumps({"logged": args["count"], "pid": os.getpid()}), flush=True)


def log_then_shutdown(args: dict) -> None:
    """Log ``count`` records, then time ``logging.shutdown()`` (what runs at exit)."""
    from loghandlers import JSONHandler

    handler = JSONHandler(**args["options"])
    log = _logger("shut", handler)
    for i in range(args["count"]):
        log.info("s%d", i)
    started = time.monotonic()
    logging.shutdown()
    took = time.monotonic() - started
    print(json.dumps({"took": took, "spooled": handler.stats()["spooled"]}), flush=True)


def stream_forever(args: dict) -> None:
    """Log ``s0``, ``s1``, ... in bursts until killed (bounded: at most ``limit`` records)."""
    from loghandlers import JSONHandler

    handler = JSONHandler(**args["options"])
    log = _logger("victim", handler)
    print(json.dumps({"pid": os.getpid()}), flush=True)
    for i in range(args["limit"]):
        log.info("s%d", i)
        if i % 50 == 49:
            time.sleep(0.005)
    time.sleep(60)


def replay(args: dict) -> None:
    """A new process with the same url and spool_dir: wait for the replay, report stats."""
    from loghandlers import JSONHandler

    handler = JSONHandler(**args["options"])
    deadline = time.monotonic() + args.get("timeout", 30)
    while time.monotonic() < deadline and handler.stats()["spool"]["files"]:
        time.sleep(0.05)
    handler.close()
    stats = handler.stats()
    print(json.dumps({k: stats[k] for k in ("replayed", "sent", "spooled", "failed", "spool")}))


def prefork(args: dict) -> None:
    """A gunicorn-style master: build the handler, log, fork workers; each worker logs and
    leaves in its own way; the master logs on (from a thread, during the forks too)."""
    import threading

    from loghandlers import JSONHandler

    handler = JSONHandler(**args["options"])
    log = _logger("prefork", handler)
    for i in range(args["before"]):
        log.info("master before fork %d", i)
    chatter_done = threading.Event()

    def chatter():  # the master keeps logging while it forks: locks are held at fork time
        for i in range(args["chatter"]):
            log.info("master chatter %d", i)
            if i % 20 == 19:
                time.sleep(0.001)
        chatter_done.set()

    thread = threading.Thread(target=chatter)
    thread.start()
    workers = []
    for number, exit_style in enumerate(args["exits"]):
        pid = os.fork()
        if pid == 0:  # a worker: log, then leave the way this worker is told to
            code = 3
            try:
                for i in range(args["per_worker"]):
                    log.info("worker %d record %d", number, i)
                if exit_style == "close+_exit":
                    handler.close()
                    code = 0
                elif exit_style == "sys.exit":
                    sys.exit(0)  # atexit (and the fork-child exit hook) drain the handler
            finally:
                if exit_style != "sys.exit":
                    os._exit(code)
        workers.append(pid)
    thread.join(60)
    log.info("master after fork")
    codes = {}
    deadline = time.monotonic() + 60
    while len(codes) < len(workers) and time.monotonic() < deadline:
        for pid in workers:
            if pid in codes:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    for pid in workers:  # a worker that deadlocked: kill it, the parent reports it
        if pid not in codes:
            os.kill(pid, 9)
            codes[pid] = "hung"
    print(
        json.dumps(
            {
                "master": os.getpid(),
                "workers": workers,
                "codes": [codes[pid] for pid in workers],
                "chatter_done": chatter_done.is_set(),
            }
        ),
        flush=True,
    )
    # the master leaves through a plain interpreter exit: atexit drains its handler


MODES = {
    "stream_then_wait": stream_then_wait,
    "log_and_exit": log_and_exit,
    "log_then_shutdown": log_then_shutdown,
    "stream_forever": stream_forever,
    "replay": replay,
    "prefork": prefork,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(sys.argv[2]))
