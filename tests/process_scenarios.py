"""Programs that start processes the ways applications do, logging through a JSONHandler.

Run as ``python tests/process_scenarios.py SCENARIO METHOD`` with ``LOGHANDLERS_JSON_URL``
(and ``LOGHANDLERS_SPOOL_DIR``) set; tests/test_lifecycle.py does, against a collector.
Logging is configured at import, as an application module does it: under spawn and
forkserver every child imports this file again (as ``__mp_main__``) and so builds its own
handler; under fork the child inherits the parent's.

Every record carries ``extra={"pid": ...}`` (the pid that logged it), so a test can check
that each event arrived under its own process's source id. The last line printed is a JSON
summary: ``{"logged": n, "parent": pid, "children": [pid, ...], ...}``.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import multiprocessing
import os
import sys
import threading
import time

from loghandlers import JSONHandler

log = logging.getLogger("scenario")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(JSONHandler())  # url, spool_dir from LOGHANDLERS_* variables

PER_CHILD = 80  # records per child process (3 children + the parent: 242 records)
TASKS = 40  # tasks for a pool or an executor, one record each


def log_many(count: int) -> int:
    for i in range(count):
        log.info("child record %d", i, extra={"pid": os.getpid()})
    return os.getpid()


def one_task(i: int) -> int:
    log.info("task %d", i, extra={"pid": os.getpid()})
    return os.getpid()


def processes(ctx) -> dict:
    """Three ``Process`` children that log and return (fork and forkserver ones leave
    through ``os._exit``: no atexit there)."""
    procs = [ctx.Process(target=log_many, args=(PER_CHILD,)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    return {
        "logged": 3 * PER_CHILD,
        "children": [proc.pid for proc in procs],
        "exitcodes": [proc.exitcode for proc in procs],
    }


def pool_with(ctx) -> dict:
    """``with Pool() as pool``: leaving the block terminates the workers (SIGTERM)."""
    with ctx.Pool(2) as pool:
        pids = pool.map(one_task, range(TASKS), chunksize=1)
    return {"logged": TASKS, "children": sorted(set(pids))}


def pool_closed(ctx) -> dict:
    """``pool.close(); pool.join()``: the workers finish and exit on their own."""
    pool = ctx.Pool(2)
    pids = pool.map(one_task, range(TASKS), chunksize=1)
    pool.close()
    pool.join()
    return {"logged": TASKS, "children": sorted(set(pids))}


def executor(ctx) -> dict:
    """``ProcessPoolExecutor`` with this start method."""
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        pids = list(pool.map(one_task, range(TASKS)))
    return {"logged": TASKS, "children": sorted(set(pids))}


def thread_fork(how: str) -> dict:
    """``os.fork()`` from a thread that is not the main thread (issue 9 item 14).

    The child logs, then leaves as a program would: its thread function returns
    (``how="return"``) or raises SystemExit (``how="exit"``). The child then has no main
    thread of its own; it must still deliver its record and end. The parent waits for it
    at most 20 s, then kills it and reports it as hung.
    """
    forked = {}

    def fork_here():
        pid = os.fork()
        if pid == 0:  # the child: only this thread exists here
            log.info("from a child forked off a thread", extra={"pid": os.getpid()})
            if how == "exit":
                sys.exit(0)
            return
        forked["pid"] = pid

    thread = threading.Thread(target=fork_here)
    thread.start()
    thread.join()
    if "pid" not in forked:  # never reached by the child, whose only thread just ended
        os._exit(3)
    pid = forked["pid"]
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"logged": 1, "children": [pid], "exitcodes": [status], "hung": status is None}


def main() -> None:
    scenario, method = sys.argv[1], sys.argv[2]
    log.info("parent record", extra={"pid": os.getpid()})
    if scenario == "thread-fork":
        result = thread_fork(method)
    else:
        ctx = multiprocessing.get_context(method)
        run = {
            "process": processes,
            "pool": pool_with,
            "pool-closed": pool_closed,
            "executor": executor,
        }[scenario]
        result = run(ctx)
    result["logged"] += 1  # the parent's record
    result["parent"] = os.getpid()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
