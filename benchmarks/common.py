"""What every part of the benchmark shares: paths, the burst's record, our handlers at
default settings, and the small measuring helpers (RSS, another thread's CPU, medians).

Importing it removes every ``LOGHANDLERS_*`` environment variable before ``loghandlers``
is imported, so "default settings" means the defaults in the code.
"""

from __future__ import annotations

import base64
import importlib
import logging
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# "default settings": nothing from the environment may change a handler's options
IGNORED_ENV = sorted(k for k in os.environ if k.startswith("LOGHANDLERS_"))
for _key in IGNORED_ENV:
    del os.environ[_key]

import loghandlers  # noqa: E402, F401  (imported after the environment is cleaned)

MESSAGE = "order %s paid"
LOGGER_NAME = "bench"
OUR_NAMES = (
    "JSONHandler",
    "SamsaraHandler",
    "InitialStateHandler",
    "PanoplyHandler",
    "KronosHandler",
)
PANOPLY_KEY = "acct1/RAND1xyz"
PANOPLY_SECRET = base64.b64encode(
    b"RAND2abc/6f1c2e9a-0000-4000-8000-000000000001/123456789012/us-east-1"
).decode("ascii")

FULL = dict(
    records=100_000,
    repeats=3,
    memory_records=1_000_000,
    peer_deadline=6.0,  # seconds after its loop a peer may take to deliver
    stage_repeats=9,
)
QUICK = dict(
    records=20_000,
    repeats=3,
    memory_records=200_000,
    peer_deadline=4.0,
    stage_repeats=5,
)


def our_handlers() -> tuple[dict, dict]:
    """{name: class} of the handlers that import, {name: why not} for the others."""
    found, missing = {}, {}
    for name in OUR_NAMES:
        try:
            found[name] = getattr(importlib.import_module("loghandlers"), name)
        except (ImportError, AttributeError) as exc:
            missing[name] = f"{type(exc).__name__}: {exc}"
    return found, missing


def our_options(name: str, base_url: str) -> tuple[dict, str, int]:
    """(constructor options, sink channel, sink events per record) at default settings."""
    common = {"spool_dir": ""}
    if name == "JSONHandler":
        return {**common, "url": base_url + "/json", "compression": "gzip"}, "json", 1
    if name == "SamsaraHandler":
        return {**common, "url": base_url}, "samsara", 1
    if name == "InitialStateHandler":
        opts = {"url": base_url, "access_key": "bench-access", "bucket_key": "bench-bucket"}
        return {**common, **opts}, "initialstate", 3  # message, user, amount
    if name == "PanoplyHandler":
        url = base_url + "/123456789012/sdk-acct1-RAND2abc"
        opts = {"url": url, "api_key": PANOPLY_KEY, "api_secret": PANOPLY_SECRET}
        return {**common, **opts}, "panoply", 1
    if name == "KronosHandler":
        return {**common, "url": base_url}, "kronos", 1
    raise KeyError(name)


# --------------------------------------------------------------------------- measuring


def rss_kb() -> int:
    return _status_kb("VmRSS")


def hwm_kb() -> int:
    return _status_kb("VmHWM")


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux: peak only


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu_s(native_id: int | None) -> float | None:
    """CPU seconds of another thread of this process (Linux; 1/CLK_TCK resolution)."""
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def make_record(i: int) -> logging.LogRecord:
    return logging.getLogger(LOGGER_NAME).makeRecord(
        LOGGER_NAME,
        logging.INFO,
        __file__,
        1,
        MESSAGE,
        (i,),
        None,
        extra={"user": i, "amount": 1.5},
    )


def bench_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def log_loop(info, start: int, stop: int) -> None:
    for i in range(start, stop):
        info(MESSAGE, i, extra={"user": i, "amount": 1.5})
