"""Every option a handler takes, in one table.

One table drives constructor keyword arguments, dictConfig strings and environment
variables, so the three can never disagree. Precedence: explicit argument, then
``LOGHANDLERS_<SERVICE>_<OPTION>``, then ``LOGHANDLERS_<OPTION>``, then the service's
default, then the common default. A bad value is a ``ValueError`` at construction that
names the option and where the value came from; secret values are never echoed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import urlsplit

from .transport import redact_userinfo

ENV_PREFIX = "LOGHANDLERS_"


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _number(kind: type, minimum: float | None = None, maximum: float | None = None) -> Callable:
    def parse(value: Any):
        if isinstance(value, bool):
            raise ValueError(f"expected a {kind.__name__}, got a bool")
        if isinstance(value, str):
            value = value.strip()
            number = float(value) if kind is float else int(value, 10)
        elif isinstance(value, (int, float)):
            number = kind(value)
            if kind is int and number != value:
                raise ValueError("expected a whole number")
        else:
            raise ValueError(f"expected a {kind.__name__}")
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number")
        if minimum is not None and number < minimum:
            raise ValueError(f"must be >= {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be <= {maximum}")
        return number

    parse.__name__ = kind.__name__
    return parse


def choice(*allowed: str) -> Callable:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text

    return parse


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def optional_text(value: Any) -> str | None:
    if value is None:
        return None
    return text(value)


def mapping(value: Any) -> dict:
    """A dict, or its JSON text (for env vars and ini files)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        if not value.strip():
            return {}
        loaded = json.loads(value)
        if isinstance(loaded, dict):
            return loaded
    raise ValueError("expected a JSON object")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: headers the transport owns: a user value would corrupt the request
RESERVED_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "host", "connection"}
)


def header_map(value: Any) -> dict:
    """Extra HTTP headers: a dict, or its JSON text. Names must be HTTP tokens; values
    printable text on one line (they may be secrets: errors name the header, never the
    value); a null value is left out."""
    headers = {}
    for name, item in mapping(value).items():
        name = str(name)
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name} is set by the transport, not by this option")
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ValueError(f"header {name}: expected a string value")
        item = str(item)
        if item != item.strip() or not item.isprintable() or not _latin1(item):
            raise ValueError(
                f"header {name}: its value must be printable Latin-1 text on one line, "
                "without surrounding spaces"
            )
        headers[name] = item
    return headers


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def header_name(value: Any) -> str:
    name = text(value).strip()
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError("expected an HTTP header name")
    return name


def renames(value: Any) -> dict:
    """``{"our field": "its new name" or None}``; None drops the field."""
    out = {}
    for key, item in mapping(value).items():
        if item is not None and (not isinstance(item, str) or not item):
            raise ValueError(f"{key}: expected a non-empty name or null")
        out[str(key)] = item
    return out


def url(value: Any) -> str:
    value = text(value).strip()
    if value and not value.lower().startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    if value:
        try:
            urlsplit(value).port  # noqa: B018 (raises for a port out of range or not a number)
        except ValueError:
            # urllib's message quotes the host or port, where a mistyped password can be
            raise ValueError(
                "not a usable URL (bad host or port; %-encode @ : / in a user-info)"
            ) from None
    return value


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    secret: bool = False


def _spool_default() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "loghandlers", "spool")


SPOOL_DEFAULT = object()  # resolved lazily: the home directory may differ after a setuid/fork

COMMON = (
    Option("url", url, "", "ingestion endpoint"),
    Option("source_id", optional_text, None, 'who sends; default "<hostname>:<pid>"'),
    Option("flush_interval", _number(float, 0.001), 1.0, "seconds between timed flushes"),
    Option("batch_size", _number(int, 1), 5000, "max records per request"),
    Option("max_batch_bytes", _number(int, 1024), 5 * 1024 * 1024, "max body bytes per request"),
    Option("min_batch_size", _number(int, 1), 1, "smallest timed batch (close sends all)"),
    Option("max_queue_size", _number(int, 1), 10000, "buffered records before dropping oldest"),
    Option("timeout", _number(float, 0.001), 30.0, "per-request network timeout, seconds"),
    Option("compression", choice("gzip", "none"), "none", "request body compression"),
    Option("compression_level", _number(int, 1, 9), 1, "gzip level (1 fastest, 9 smallest)"),
    Option("retries", _number(int, 0, 100), 4, "retries after the first attempt"),
    Option("backoff", _number(float, 0.0), 0.5, "base backoff seconds, doubled per retry"),
    Option("max_backoff", _number(float, 0.0), 30.0, "cap on one backoff or Retry-After wait"),
    Option("spool_dir", optional_text, SPOOL_DEFAULT, 'undeliverable batches; "" disables'),
    Option("spool_max_bytes", _number(int, 0), 100 * 1024 * 1024, "cap on one spool's size"),
    Option("spool_mode", choice("fallback", "always"), "fallback", "spool only failures, or all"),
    Option("close_timeout", _number(float, 0.0), 5.0, "seconds close() may drain"),
    Option("verify", parse_bool, True, "verify TLS certificates"),
    Option("handle_sigterm", parse_bool, True, "drain before dying of an unhandled SIGTERM"),
    Option("static_fields", mapping, None, "fields added to every event"),
)


#: how an HTTP receiver knows us: headers and a token (JSONHandler, OTLPHandler)
HTTP_AUTH = (
    Option(
        "headers",
        header_map,
        None,
        "extra request headers (a dict, or its JSON text); values are secret",
        secret=True,
    ),
    Option("token", optional_text, None, "sent as Authorization: Bearer <token>", secret=True),
    Option("token_header", header_name, "Authorization", "the header that carries token"),
    Option(
        "token_prefix",
        optional_text,
        None,
        'put before token (then a space); default "Bearer" in Authorization, else none',
    ),
)


class Settings:
    """Resolved options: attribute access, and a repr that masks secrets."""

    if TYPE_CHECKING:  # one attribute per option of the handler that resolved them

        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, values: dict, secret_names: frozenset):
        self.__dict__.update(values)
        self._secret_names = secret_names

    def as_dict(self, mask: bool = True) -> dict:
        out = {}
        for key, value in self.__dict__.items():
            if key.startswith("_"):
                continue
            out[key] = mask_secret(value) if mask and key in self._secret_names else value
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Settings({inner})"


def mask_secret(value: Any) -> Any:
    """``****`` for a secret; a dict of secrets (headers) keeps its keys, so people can
    see which headers are set."""
    if not value:
        return ""
    if isinstance(value, Mapping):
        return {key: "****" for key in value}
    return "****"


def env_names(service_env: str, option: str) -> tuple[str, str]:
    upper = option.upper()
    return f"{ENV_PREFIX}{service_env}_{upper}", f"{ENV_PREFIX}{upper}"


def resolve(
    service_env: str,
    specs: tuple[Option, ...],
    arguments: Mapping[str, Any],
    service_defaults: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge arguments, environment and defaults; validate every value."""
    environ = os.environ if environ is None else environ
    service_defaults = service_defaults or {}
    by_name = {spec.name: spec for spec in specs}
    unknown = sorted(set(arguments) - set(by_name))
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    values: dict[str, Any] = {}
    for spec in specs:
        service_var, generic_var = env_names(service_env, spec.name)
        if spec.name in arguments and arguments[spec.name] is not None:
            raw, origin = arguments[spec.name], "argument"
        elif service_var in environ:
            raw, origin = environ[service_var], f"environment variable {service_var}"
        elif generic_var in environ:
            raw, origin = environ[generic_var], f"environment variable {generic_var}"
        elif spec.name in service_defaults:
            raw, origin = service_defaults[spec.name], None
        else:
            raw, origin = spec.default, None
        if raw is SPOOL_DEFAULT:
            values[spec.name] = _spool_default()
            continue
        if origin is None and raw is None:
            values[spec.name] = None
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except (ValueError, TypeError) as exc:
            shown = "(secret)" if spec.secret else redact_userinfo(repr(raw))
            where = origin or "default"
            raise ValueError(f"invalid {spec.name}={shown} from {where}: {exc}") from None
    return Settings(values, frozenset(s.name for s in specs if s.secret))
