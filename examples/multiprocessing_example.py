"""multiprocessing: fork and spawn pools, each child's records under its own source id.

Starts the collector in this process on a free loopback port and runs the same tasks in two
pools, then prints, per source id ("<hostname>:<pid>"), what arrived:

* fork: the children inherit the handler configured here in the parent. After the fork,
  loghandlers gives each child a fresh buffer, connection pool, worker thread and source
  id, and drains it when the child exits (even though multiprocessing's forked children
  leave through ``os._exit``, which skips ``atexit``).
* spawn (and forkserver): each child is a fresh interpreter that inherits no handler;
  configure logging in the pool's ``initializer``. The child drains at exit as usual.

End a pool with ``close()`` then ``join()`` so the children finish their tasks and exit
normally. Leaving a ``with Pool(...)`` block calls ``terminate()`` instead, which SIGTERMs
the children: loghandlers then drains each child (within ``close_timeout``) before it dies,
but tasks still queued are not run.

    python examples/multiprocessing_example.py
"""

import collections
import logging
import multiprocessing
import os
import socket
import tempfile
import time

from loghandlers import JSONHandler
from loghandlers.collector import Collector

TASKS = 9
PROCESSES = 3
log = logging.getLogger("work")


def configure(url: str, spool_dir: str) -> JSONHandler:
    handler = JSONHandler(url=url, flush_interval=0.2, spool_dir=spool_dir)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def start_child(all_started, url=None, spool_dir=None) -> None:
    """The pool's initializer, run once in each child before its first task."""
    if url is not None:  # spawn: a fresh interpreter, no handler yet
        configure(url, spool_dir)
    # Only for the demo: wait until every child is up, so each of them runs some tasks.
    all_started.wait(timeout=30)


def work(n: int) -> tuple:
    log.info("task %d done", n, extra={"task": n})
    time.sleep(0.02)  # a little work, so the tasks spread over the children
    return n, os.getpid()


def run_pool(method: str, collector_url: str, spool_dir: str) -> dict:
    """Run TASKS tasks in a pool started with ``method``; return {task: pid that ran it}."""
    ctx = multiprocessing.get_context(method)
    url = f"{collector_url}/json/{method}"  # the path after /json/ keeps the pools apart
    all_started = ctx.Barrier(PROCESSES)
    if method == "fork":
        parent_handler = configure(url, spool_dir)  # inherited by the forked children
        log.info("parent, before the pool", extra={"task": None})
        pool = ctx.Pool(PROCESSES, initializer=start_child, initargs=(all_started,))
    else:
        parent_handler = None
        pool = ctx.Pool(PROCESSES, initializer=start_child, initargs=(all_started, url, spool_dir))
    try:
        ran_by = dict(pool.map(work, range(TASKS), chunksize=1))
        pool.close()
        pool.join()  # the children exit normally, each draining its own handler
    finally:
        pool.terminate()
    if parent_handler is not None:
        log.removeHandler(parent_handler)
        parent_handler.close()
    return ran_by


def report(method: str, collector: Collector, ran_by: dict) -> None:
    host = socket.gethostname()
    events = collector.events(service="json", channel=method)
    by_source = collections.defaultdict(list)
    for row in events:
        by_source[row["event"]["sourceId"]].append(row["event"]["task"])
    parent = f"{host}:{os.getpid()}"
    children = {f"{host}:{pid}" for pid in ran_by.values()}
    print(f"{method} pool: {TASKS} tasks, {len(events)} events from {len(by_source)} source ids")
    for source, tasks in sorted(by_source.items()):
        who = "parent" if source == parent else "child "
        print(f"  {who} {source:<24} {len(tasks)} events  tasks {tasks}")
    own_pid = all(
        row["event"]["sourceId"] == f"{host}:{ran_by[row['event']['task']]}"
        for row in events
        if row["event"]["task"] is not None
    )
    print(f"  {len(children)} children; each task's event under the pid that ran it: {own_pid}")


def main() -> None:
    methods = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
    with Collector(port=0, db=":memory:") as collector, tempfile.TemporaryDirectory() as spool_dir:
        print(f"parent pid {os.getpid()}, collector at {collector.url}")
        for method in methods:
            ran_by = run_pool(method, collector.url, spool_dir)
            report(method, collector, ran_by)


if __name__ == "__main__":
    main()
