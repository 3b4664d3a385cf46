"""Configuration purely from LOGHANDLERS_* environment variables, and their precedence.

Starts the collector in this process on a free loopback port, sets the variables a
deployment would set (here from Python, before any handler is built: a handler reads the
environment once, in its constructor), builds ``JSONHandler()`` and ``SamsaraHandler()``
with no arguments at all, shows which value won for ``flush_interval``, logs a few records
and prints what arrived.

Precedence, highest first: a constructor (or dictConfig/fileConfig) argument, then
``LOGHANDLERS_<SERVICE>_<OPTION>``, then ``LOGHANDLERS_<OPTION>``, then the default.
``python -m loghandlers check`` prints what every handler would resolve in your shell.

    python examples/env_only.py
"""

import json
import logging
import os
import tempfile

from loghandlers import JSONHandler, SamsaraHandler
from loghandlers.collector import Collector


def set_environment(collector_url: str, spool_dir: str) -> None:
    os.environ.update(
        {
            # generic: every handler in the process
            "LOGHANDLERS_FLUSH_INTERVAL": "2",
            "LOGHANDLERS_STATIC_FIELDS": '{"app": "shop", "env": "demo"}',
            "LOGHANDLERS_SPOOL_DIR": spool_dir,
            # one service only: wins over the generic variable of the same option
            "LOGHANDLERS_JSON_URL": f"{collector_url}/json",
            "LOGHANDLERS_JSON_FLUSH_INTERVAL": "0.25",
            "LOGHANDLERS_SAMSARA_URL": collector_url,
            "LOGHANDLERS_SAMSARA_EVENT_NAME": "shop.{level}",
            "LOGHANDLERS_SAMSARA_SOURCE_ID": "web-1",
        }
    )


def show_precedence(json_handler: JSONHandler, samsara_handler: SamsaraHandler) -> None:
    with_argument = JSONHandler(flush_interval=0.1)
    with_argument.close()
    print("flush_interval (argument > LOGHANDLERS_<SERVICE>_* > LOGHANDLERS_* > default):")
    rows = [
        ("JSONHandler()", json_handler, "LOGHANDLERS_JSON_FLUSH_INTERVAL beats the generic one"),
        ("SamsaraHandler()", samsara_handler, "only the generic LOGHANDLERS_FLUSH_INTERVAL"),
        ("JSONHandler(flush_interval=0.1)", with_argument, "an argument beats every variable"),
    ]
    for label, handler, why in rows:
        print(f"  {label:<32} {handler.settings.flush_interval:<5} {why}")

    # A bad value fails at construction, naming the option and the variable it came from.
    os.environ["LOGHANDLERS_JSON_BATCH_SIZE"] = "lots"
    try:
        JSONHandler()
    except ValueError as exc:
        print(f"bad value: {exc}")
    finally:
        del os.environ["LOGHANDLERS_JSON_BATCH_SIZE"]


def main() -> None:
    with Collector(port=0, db=":memory:") as collector, tempfile.TemporaryDirectory() as spool_dir:
        set_environment(collector.url, spool_dir)
        json_handler = JSONHandler()  # no arguments: everything from the environment
        samsara_handler = SamsaraHandler()
        show_precedence(json_handler, samsara_handler)

        log = logging.getLogger("shop")
        log.setLevel(logging.INFO)
        log.addHandler(json_handler)
        log.addHandler(samsara_handler)
        log.info("order %s paid", 1001, extra={"user": 7, "amount": 12.5})
        log.warning("stock low", extra={"sku": "A-42", "left": 3})
        json_handler.close()  # drains: everything logged above is delivered (or spooled)
        samsara_handler.close()

        print(f"\ncollector at {collector.url} received:")
        for service in ("json", "samsara"):
            print(f"  {service:<7} {collector.count(service)} events")
            for row in collector.events(service=service):
                print(f"    {json.dumps(row['event'])}")


if __name__ == "__main__":
    main()
