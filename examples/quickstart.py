"""Quickstart: all five handlers against the built-in local collector, no account needed.

Starts the collector in this process on a free loopback port, configures one handler per
service with ``logging.config.dictConfig``, logs a few records (with ``extra=`` fields and
one exception), closes the handlers (which drains them), and prints what arrived.

    python examples/quickstart.py
"""

import base64
import json
import logging
import logging.config
import tempfile

from loghandlers.collector import Collector

# Demo credentials in the shape Panoply issues them (they only reach the local collector).
PANOPLY_KEY = "demo/RAND1xyz"
PANOPLY_SECRET = base64.b64encode(
    b"RAND2abc/6f1c2e9a-0000-4000-8000-000000000001/123456789012/us-east-1"
).decode()


def configure(collector_url: str, spool_dir: str) -> None:
    common = {"flush_interval": "0.2", "spool_dir": spool_dir}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "samsara": {"class": "loghandlers.SamsaraHandler", "url": collector_url, **common},
                "initialstate": {
                    "class": "loghandlers.InitialStateHandler",
                    "url": collector_url,
                    "access_key": "ist_DEMOKEY",
                    "bucket_key": "quickstart",
                    "bucket_name": "Quickstart",
                    **common,
                },
                "panoply": {
                    "class": "loghandlers.PanoplyHandler",
                    "url": f"{collector_url}/123456789012/sdk-demo-RAND2abc",
                    "api_key": PANOPLY_KEY,
                    "api_secret": PANOPLY_SECRET,
                    **common,
                },
                "kronos": {
                    "class": "loghandlers.KronosHandler",
                    "url": collector_url,
                    "namespace": "quickstart",
                    **common,
                },
                "json": {
                    "class": "loghandlers.JSONHandler",
                    "url": f"{collector_url}/json",
                    **common,
                },
            },
            "loggers": {
                "shop": {
                    "handlers": ["samsara", "initialstate", "panoply", "kronos", "json"],
                    "level": "INFO",
                    "propagate": False,
                }
            },
        }
    )


def log_a_few_records() -> None:
    log = logging.getLogger("shop")
    log.info("order %s paid", 1001, extra={"user": 7, "amount": 12.5})
    log.warning("stock low", extra={"sku": "A-42", "left": 3})
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed", extra={"user": 7})


def main() -> None:
    with Collector(port=0, db=":memory:") as collector, tempfile.TemporaryDirectory() as spool_dir:
        configure(collector.url, spool_dir)
        log_a_few_records()
        for handler in logging.getLogger("shop").handlers:
            handler.close()  # drains: everything logged above is delivered (or spooled)
        print(f"collector at {collector.url} received:")
        for service in ("samsara", "initialstate", "panoply", "kronos", "json"):
            print(f"  {service:<13} {collector.count(service)} events")
        print("\na few of them:")
        for row in collector.events(service="json", limit=3) + collector.events(
            service="samsara", limit=1
        ):
            print(f"  [{row['service']}] {json.dumps(row['event'])[:160]}")


if __name__ == "__main__":
    main()
