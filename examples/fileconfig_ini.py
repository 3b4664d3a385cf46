"""logging.config.fileConfig from an INI file: examples/fileconfig.ini, against the local collector.

Starts the collector in this process on a free loopback port, loads fileconfig.ini with
``logging.config.fileConfig`` (handler options go in ``kwargs=``; the collector's URL is
filled in through ``defaults=``), logs a few records, closes the handlers (which drains
them) and prints what arrived.

    python examples/fileconfig_ini.py
"""

import json
import logging
import logging.config
import os
import pathlib
import tempfile

from loghandlers.collector import Collector

CONFIG = pathlib.Path(__file__).with_name("fileconfig.ini")


def configure(collector_url: str, spool_dir: str) -> None:
    os.environ["LOGHANDLERS_SPOOL_DIR"] = spool_dir  # an option the file leaves out
    logging.config.fileConfig(
        CONFIG, defaults={"collector_url": collector_url}, disable_existing_loggers=False
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
        for service in ("samsara", "json"):
            print(f"  {service:<7} {collector.count(service)} events")
            for row in collector.events(service=service):
                event = dict(row["event"])
                if "exc_info" in event:  # keep the output short: the traceback's last line
                    event["exc_info"] = "..." + event["exc_info"].splitlines()[-1]
                print(f"    {json.dumps(event)}")


if __name__ == "__main__":
    main()
