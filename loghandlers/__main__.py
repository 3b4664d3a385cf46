"""``python -m loghandlers``: collect, events, replay, send, check, datasource.

Every sub-command reads the same options and environment variables as the handlers
(``LOGHANDLERS_<SERVICE>_<OPTION>``, ``LOGHANDLERS_<OPTION>``), so what ``check`` prints
is what a handler built in the same environment would use.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from urllib.parse import urlsplit

from . import options as opts
from .cli_collect import add_collect_parser, add_events_parser
from .datasource_runner import add_datasource_parser
from .handler import BatchingHandler
from .spool import Spool, read_identity
from .transport import redact_url


def handler_classes() -> dict:
    """Every service handler, by service name (a new service registers itself)."""
    import loghandlers  # noqa: F401  (imports every service module)

    found: dict[str, type[BatchingHandler]] = {}
    pending = list(BatchingHandler.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.service_class is not None and cls.__module__.startswith("loghandlers."):
            found.setdefault(cls.service_class.name, cls)
    return dict(sorted(found.items()))


def parse_extra(items: list) -> dict:
    extra = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--extra wants key=value, got {item!r}")
        try:
            extra[key] = json.loads(value)
        except ValueError:
            extra[key] = value
    return extra


def parse_options(items: list) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option wants name=value, got {item!r}")
        out[key.replace("-", "_")] = value
    return out


# --------------------------------------------------------------------------- send
def run_send(args) -> int:
    classes = handler_classes()
    cls = classes[args.handler]
    options = parse_options(args.option)
    if args.url:
        options["url"] = args.url
    options.setdefault("flush_interval", "3600")
    try:
        handler = cls(**options)
    except (TypeError, ValueError) as exc:
        print(f"send: {exc}", file=sys.stderr)
        return 2
    log = logging.getLogger(args.logger)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    log.log(logging.getLevelName(args.level.upper()), args.message, extra=parse_extra(args.extra))
    handler.close(timeout=args.timeout)
    log.removeHandler(handler)
    stats = handler.stats()
    if stats["sent"]:
        print(f"sent 1 event to {handler.service.endpoint()}")
        return 0
    where = "spooled for later" if stats["spooled"] else "not delivered"
    print(f"send: {where}; errors: {stats['errors']}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------- check
def resolve_for(cls, overrides=None):
    service = cls.service_class
    specs = opts.COMMON + tuple(service.options)
    settings = opts.resolve(service.env, specs, overrides or {}, service.defaults)
    instance = service(settings)
    instance.validate()
    return settings, instance


def reachable(url: str, timeout: float = 3.0) -> str:
    parts = urlsplit(url)
    if not parts.hostname:
        return "no host"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return "reachable"
    except OSError as exc:
        return f"unreachable ({exc.__class__.__name__}: {exc.strerror or exc})"


def run_check(args) -> int:
    status = 0
    for name, cls in handler_classes().items():
        if args.handler and name not in args.handler:
            continue
        print(f"[{name}] {cls.__name__}  (env: {opts.ENV_PREFIX}{cls.service_class.env}_<OPTION>)")
        try:
            settings, service = resolve_for(cls)
        except (TypeError, ValueError) as exc:
            print(f"  not configured: {exc}")
            if args.handler:
                status = 1
            print()
            continue
        for key, value in settings.as_dict(mask=True).items():
            if key == "url":
                value = redact_url(value)
            print(f"  {key:<18} {value!r}")
        endpoint = service.endpoint()
        verdict = reachable(endpoint) if not args.no_network else "not tested"
        print(f"  endpoint           {redact_url(endpoint)}: {verdict}\n")
        if verdict.startswith("unreachable"):
            status = 1
    return status


# --------------------------------------------------------------------------- replay
def _spools(root: str, service: str | None) -> list[tuple[str, dict, list[str]]]:
    """(directory, identity.json, batch files) of each spool under ``root``."""
    found = []
    for entry in sorted(os.listdir(root)):
        directory = os.path.join(root, entry)
        described = read_identity(directory)
        if not described or (service and described.get("service") != service):
            continue
        files = [n for n in os.listdir(directory) if n.endswith(".json") and n != "identity.json"]
        found.append((directory, described, files))
    return found


def _age(directory: str, files: list[str]) -> str:
    """How long the oldest batch has waited, for people."""
    times = []
    for name in files:
        try:
            times.append(os.stat(os.path.join(directory, name)).st_mtime)
        except OSError:
            pass
    if not times:
        return "-"
    seconds = max(0.0, time.time() - min(times))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def run_replay(args) -> int:
    root = args.spool_dir or opts.resolve("JSON", opts.COMMON, {"url": "http://unused"}).spool_dir
    if not root or not os.path.isdir(root):
        print(f"replay: no spool directory at {root!r}")
        return 0
    spools = _spools(root, args.service)
    if args.list:
        print(f"{'SPOOL':40}  {'SERVICE':12}  {'BATCHES':>7}  {'OLDEST':>6}  ENDPOINT")
        for directory, described, files in spools:
            print(
                f"{os.path.basename(directory):40}  {described.get('service', '?'):12}  "
                f"{len(files):7}  {_age(directory, files):>6}  {described.get('endpoint') or '-'}"
            )
        return 0
    classes = handler_classes()
    left_total = 0
    for directory, described, files in spools:
        entry = os.path.basename(directory)
        if not files:
            continue
        cls = classes.get(described.get("service"))
        if cls is None:
            print(f"{entry}: unknown service {described.get('service')!r}, skipped")
            left_total += len(files)
            continue
        overrides = {"spool_dir": root, "flush_interval": "3600"}
        # Where to send: --url, else the handler's configuration (environment), else the
        # endpoint the spool was written for (identity.json has no credentials).
        configured = {k: v for k, v in (described.get("identity") or {}).items() if v}
        if args.url:
            overrides["url"] = args.url
        elif described.get("endpoint"):
            try:
                resolve_for(cls, dict(overrides))
            except (TypeError, ValueError):
                overrides["url"] = described["endpoint"]
        for name, value in configured.items():
            overrides.setdefault(name, value)
        try:
            settings, service = resolve_for(cls, dict(overrides))
        except (TypeError, ValueError) as exc:
            print(
                f"{entry}: {len(files)} batches waiting; configure {cls.__name__} first "
                f"(or pass --url): {exc}"
            )
            left_total += len(files)
            continue
        if Spool(root, service.name, service.identity(), 0).directory != directory:
            print(
                f"{entry}: {len(files)} batches for another endpoint than the configured one "
                f"({described.get('endpoint') or 'unknown'}), skipped; pass its --url"
            )
            left_total += len(files)
            continue
        handler = cls(**overrides)
        left = _watch_replay(handler, entry, len(files), args.timeout)
        handler.close(timeout=2)
        print(f"{entry}: replayed {handler.stats()['replayed']} events; {left} batches left")
        left_total += left
    return 0 if left_total == 0 else 1


def _watch_replay(handler, label: str, total: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    left = total
    while time.monotonic() < deadline:
        left = handler.stats().get("spool", {}).get("files", 0)
        _progress(label, total - left, total)
        if left == 0 or handler.held():
            break
        time.sleep(0.1)
    sys.stderr.write("\n")
    return left


def _progress(label: str, done: int, total: int, width: int = 30) -> None:
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r{label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} batches")
    sys.stderr.flush()


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loghandlers", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_collect_parser(sub)
    add_events_parser(sub)

    names = list(handler_classes())
    send = sub.add_parser("send", help="send one event from the shell, like logger(1)")
    send.add_argument("--handler", choices=names, required=True)
    send.add_argument("--url", help="endpoint (else from the environment)")
    send.add_argument("message")
    send.add_argument(
        "--extra", action="append", metavar="KEY=VALUE", help="a field; JSON values allowed"
    )
    send.add_argument("--option", action="append", metavar="NAME=VALUE", help="any handler option")
    send.add_argument("--level", default="INFO")
    send.add_argument("--logger", default="cli")
    send.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to deliver before spooling"
    )
    send.set_defaults(func=run_send)

    check = sub.add_parser(
        "check", help="show each handler's resolved options and test its endpoint"
    )
    check.add_argument("--handler", action="append", choices=names)
    check.add_argument("--no-network", action="store_true", help="don't try to connect")
    check.set_defaults(func=run_check)

    replay = sub.add_parser("replay", help="send spooled batches now")
    replay.add_argument("--spool-dir", help="default: the handlers' spool_dir")
    replay.add_argument(
        "--url", help="send there (default: the configured url, else the spool's endpoint)"
    )
    replay.add_argument("--service", help="only this service's spools (e.g. samsara)")
    replay.add_argument(
        "--list", action="store_true", help="show each spool's endpoint, batches and age"
    )
    replay.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per spool before giving up"
    )
    replay.set_defaults(func=run_replay)
    add_datasource_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
