"""dictConfig from a YAML file: examples/logging.yaml, against the local collector.

Starts the collector in this process on a free loopback port, points the handlers at it
through LOGHANDLERS_<SERVICE>_URL (the YAML file names no endpoint), loads the YAML with
PyYAML, passes it to ``logging.config.dictConfig``, logs a few records, closes the handlers
(which drains them) and prints what arrived.

    pip install pyyaml
    python examples/dictconfig_yaml.py
"""

import json
import logging
import logging.config
import os
import pathlib
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("this example needs PyYAML: pip install pyyaml")

from loghandlers.collector import Collector

CONFIG = pathlib.Path(__file__).with_name("logging.yaml")


def configure(collector_url: str, spool_dir: str) -> None:
    # Deployment-specific values from the environment; everything else from the file.
    os.environ["LOGHANDLERS_JSON_URL"] = f"{collector_url}/json"
    os.environ["LOGHANDLERS_KRONOS_URL"] = collector_url
    os.environ["LOGHANDLERS_SPOOL_DIR"] = spool_dir
    with open(CONFIG, encoding="utf-8") as f:
        logging.config.dictConfig(yaml.safe_load(f))


def log_a_few_records() -> None:
    log = logging.getLogger("shop")
    log.info("order %s paid", 1001, extra={"user": 7, "amount": 12.5})
    log.info("order %s shipped", 1001, extra={"carrier": "UPS"})
    log.warning("stock low", extra={"sku": "A-42", "left": 3})


def main() -> None:
    with Collector(port=0, db=":memory:") as collector, tempfile.TemporaryDirectory() as spool_dir:
        configure(collector.url, spool_dir)
        log_a_few_records()
        for handler in logging.getLogger("shop").handlers:
            handler.close()  # drains: everything logged above is delivered (or spooled)
        print(f"\ncollector at {collector.url} received:")
        for service in ("json", "kronos"):
            print(f"  {service:<7} {collector.count(service)} events")
            for row in collector.events(service=service):
                print(f"    {json.dumps(row['event'])}")


if __name__ == "__main__":
    main()
