"""``python -m loghandlers datasource``: run a Panoply data source, stream it into a table.

``MODULE`` (a dotted name or a ``.py`` path) exposes ``Stream`` (a
:class:`~loghandlers.clients.panoply_datasource.DataSource` subclass) and ``CONFIG``
(``{"title", "icon", "params"}``). The runner checks the source against
``CONFIG["params"]``, then calls ``read(n)`` until it returns ``None``; each list it
returns is one *batch*: every object, plus ``"__table": source["destination"]``, is handed
to a service handler's ``export_now()`` (Panoply by default) and the runner waits for the
outcome. Only after a batch was **delivered** does it merge the states that batch's
objects are tagged with (``"__state"``) into the saved state and rewrite ``--state``; a
restart hands that state back in ``source["state"]``. So delivery is at-least-once at
batch granularity: a crash or SIGKILL between a delivery and the state write sends that
one batch again, never loses one.

Which states a delivered batch commits: the states reported (``state()``) up to and
including the last one that any of its objects names in ``"__state"`` (for a raw
message, ``metadata["__state"]``). A batch whose objects carry no ``"__state"`` at all
commits the states reported so far (the data source is taken to report the state of
what it returned). States reported during a ``read()`` that then raised are dropped.
Every state is copied when reported, so a data source may keep mutating its dict.

Failures: a ``read()`` that raises is retried 3 times (1, 2, 4 s apart by default) unless
it raised ``PanoplyException(retryable=False)``; a batch that was not delivered (refused,
or the endpoint is down after the handler's own retries) stops the run. Either way the
state file still points after the last delivered batch and the exit status is 1. SIGINT
or SIGTERM stop after the current batch (a second one stops at once), with status 128+N.

Threading: everything runs on the main thread except the handler's worker, which owns the
HTTP side; the signal handlers only set :attr:`Stop.signum`.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime
import hashlib
import hmac
import importlib
import importlib.util
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import traceback
import types
from typing import Any, Callable, Iterable, Mapping, TextIO

from . import options as opts
from .clients.panoply_datasource import (
    SECRET_NAME,
    DataSource,
    PanoplyException,
    scrub_text,
    secret_values_in,
    validate_token,
)
from .records import dumps

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
READ_RETRIES = 3  # as the Panoply platform does: 3 more tries of a failing read()
STATE_FORMAT = "loghandlers-datasource-state/1"
DATASOURCE_LOGGER = "loghandlers.datasource"  # DataSource.log() writes to its children
#: credentials sent to a --url when none are configured: the local collector only checks
#: that a key and a secret are present. Never used without an explicit --url.
PLACEHOLDER_API_KEY = "local/datasource"
PLACEHOLDER_API_SECRET = base64.b64encode(b"local/datasource/000000000000/local").decode()


class RunnerError(Exception):
    """A problem the user can fix (bad arguments, source, state file); shown as is."""


class ReadFailed(Exception):
    """``read()`` failed for good; ``cause`` is the data source's exception."""

    def __init__(self, cause: BaseException, attempts: int):
        super().__init__(f"read() failed after {attempts} attempt(s)")
        self.cause = cause
        self.attempts = attempts


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived while waiting to retry ``read()``: stop without a batch."""


class RunFailed(Exception):
    """A batch was not delivered, or the state not saved; the message says why (scrubbed)."""


# --------------------------------------------------------------------------- inputs
def parse_json_argument(text: str | None, what: str) -> dict:
    """A JSON object given inline or as ``@path``; errors never echo the text (secrets)."""
    if text is None:
        return {}
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise RunnerError(f"{what}: cannot read {text[1:]!r}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RunnerError(f"{what} is not valid JSON ({exc.__class__.__name__} at {_where(exc)})")
    if not isinstance(value, dict):
        raise RunnerError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _where(exc: ValueError) -> str:
    line, col = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    return f"line {line} column {col}" if line else "?"


def install_panoply_alias() -> None:
    """Let a data source written from the SDK's README (``import panoply``) run as is.

    ``panoply`` gets the public names of :mod:`loghandlers.clients.panoply` (``SDK``,
    ``DataSource``, ``PanoplyException``, ``validate_token``) and ``panoply.errors`` the
    exception. Only when no real ``panoply`` package is importable; only in the runner's
    process.
    """
    if "panoply" in sys.modules or importlib.util.find_spec("panoply") is not None:
        return
    from .clients import panoply as ours

    alias = types.ModuleType("panoply", "loghandlers' stand-in for the Panoply SDK")
    names = getattr(ours, "__all__", None) or [n for n in vars(ours) if not n.startswith("_")]
    for name in names:
        setattr(alias, name, getattr(ours, name))
    errors = types.ModuleType("panoply.errors")
    errors.PanoplyException = PanoplyException  # type: ignore[attr-defined]
    alias.DataSource = DataSource  # type: ignore[attr-defined]
    alias.PanoplyException = PanoplyException  # type: ignore[attr-defined]
    alias.validate_token = validate_token  # type: ignore[attr-defined]
    alias.errors = errors  # type: ignore[attr-defined]
    alias.__path__ = []  # a package, so that ``from panoply.errors import ...`` works
    sys.modules["panoply"] = alias
    sys.modules["panoply.errors"] = errors


def load_module(spec: str) -> types.ModuleType:
    """Import ``spec``: a ``.py`` file path, or a dotted module name (cwd on the path)."""
    install_panoply_alias()
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise RunnerError(f"no data source module at {spec!r}")
        name = os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise RunnerError(f"cannot import {spec!r}")
        module = importlib.util.module_from_spec(module_spec)
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)  # its sibling modules, as `python file.py` has
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise RunnerError(f"no data source module named {spec!r}") from None
        raise


def stream_and_config(module: types.ModuleType) -> tuple[type, dict]:
    stream = getattr(module, "Stream", None)
    config = getattr(module, "CONFIG", None)
    if not isinstance(stream, type):
        raise RunnerError(f"module {module.__name__!r} must expose Stream, its DataSource class")
    if not issubclass(stream, DataSource):
        raise RunnerError(
            f"{module.__name__}.Stream must inherit from DataSource "
            "(loghandlers.clients.panoply.DataSource, or panoply.DataSource)"
        )
    if not isinstance(config, Mapping):
        raise RunnerError(f"module {module.__name__!r} must expose CONFIG, a dict")
    return stream, dict(config)


def config_params(config: Mapping) -> list[dict]:
    """``CONFIG["params"]`` as a list of dicts (a dict of name -> spec is accepted too)."""
    params = config.get("params") or []
    if isinstance(params, Mapping):
        params = [{"name": name, **(spec or {})} for name, spec in params.items()]
    out = []
    for param in params:
        if isinstance(param, str):
            param = {"name": param}
        if isinstance(param, Mapping) and isinstance(param.get("name"), str):
            out.append(dict(param))
    return out


def validate_source(source: Mapping, config: Mapping) -> None:
    """Every param is required unless it says ``"required": False`` (or ``"optional"``)."""
    missing = []
    for param in config_params(config):
        if param.get("required") is False or param.get("optional"):
            continue
        value = source.get(param["name"])
        if value is None or value == "":
            title = param.get("title") or param.get("help") or param.get("placeholder")
            missing.append(f"{param['name']!r} ({title})" if title else repr(param["name"]))
    if missing:
        raise RunnerError(
            f"the source is missing required parameter{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (CONFIG['params'] of the data source)"
        )
    if not source.get("destination") and not source.get("type"):
        raise RunnerError(
            'the source needs "destination" (the table to write to) or "type" '
            "(which destination defaults to)"
        )


def secret_param_names(config: Mapping) -> tuple:
    """Params the CONFIG marks as secret (``"secret": True`` or ``"type": "password"``)."""
    return tuple(
        p["name"]
        for p in config_params(config)
        if p.get("secret") or str(p.get("type", "")).lower() == "password"
    )


# --------------------------------------------------------------------------- state
def _fingerprint(salt: str, value: Any) -> str:
    """What a source parameter looked like on the command line, without keeping it."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(f"{salt}\0{text}".encode()).hexdigest()


SEAL_ROUNDS = 200_000  # PBKDF2 rounds: guessing a weak command-line password stays slow


def seal_keys(salt: str, given: Mapping, secret_names: Iterable[str]) -> tuple[bytes, bytes]:
    """(encryption key, MAC key) derived from the command line's own credentials."""
    material = json.dumps(sorted(secret_values_in(given, tuple(secret_names))))
    master = hashlib.pbkdf2_hmac("sha256", material.encode(), salt.encode(), SEAL_ROUNDS)
    return (
        hmac.new(master, b"encrypt", hashlib.sha256).digest(),
        hmac.new(master, b"authenticate", hashlib.sha256).digest(),
    )


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    stream = b"".join(
        hmac.new(key, nonce + i.to_bytes(8, "big"), hashlib.sha256).digest() for i in range(blocks)
    )
    return stream[:length]


def seal(value: Any, keys: tuple[bytes, bytes]) -> dict:
    """``value`` as JSON, encrypted (HMAC-SHA256 in counter mode) and authenticated."""
    nonce = secrets.token_bytes(16)
    plain = dumps(value).encode("utf-8")
    box = bytes(a ^ b for a, b in zip(plain, _keystream(keys[0], nonce, len(plain))))
    tag = hmac.new(keys[1], nonce + box, hashlib.sha256).hexdigest()
    return {
        "nonce": base64.b64encode(nonce).decode(),
        "box": base64.b64encode(box).decode(),
        "tag": tag,
    }


def unseal(sealed: Any, keys: tuple[bytes, bytes]) -> Any:
    """The sealed value, or None if it was sealed with other credentials (or damaged)."""
    try:
        nonce = base64.b64decode(sealed["nonce"])
        box = base64.b64decode(sealed["box"])
        tag = hmac.new(keys[1], nonce + box, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(tag, str(sealed["tag"])):
            return None
        plain = bytes(a ^ b for a, b in zip(box, _keystream(keys[0], nonce, len(box))))
        return json.loads(plain.decode("utf-8"))
    except (KeyError, TypeError, ValueError):
        return None


class StateFile:
    """The bookmark of a run: committed state and source changes, JSON, mode 0600.

    Written atomically (a temporary file in the same directory, fsync, rename), so a
    SIGKILL leaves the previous version or the new one, never half of one.

    Holds ``state`` (the merged state of every delivered batch) and what the data source
    fired as ``"source-change"``. Changed credentials (e.g. a refreshed OAuth token:
    providers that rotate refresh tokens revoke the old one, so it must survive a restart)
    are **sealed**: encrypted and authenticated with keys derived (PBKDF2) from the
    credentials given on the command line, so the file alone does not reveal them, and a
    command line with other credentials (the user re-authenticated) cannot open them: then
    the command line wins. Other changes are kept in clear with a salted hash of the
    command-line value they replaced, and apply only while that value is unchanged.
    Parameters given on the command line are never written here.
    """

    def __init__(self, path: str | None, secret_names: Iterable[str] = ()):
        self.path = path
        self.secret_names = tuple(secret_names)
        self.data: dict = {"format": STATE_FORMAT, "salt": secrets.token_hex(16)}
        self.sealed_changes: dict = {}
        self.opened = True  # False: sealed changes these credentials cannot open
        self._keys: tuple | None = None

    def is_secret(self, key: str) -> bool:
        return key in self.secret_names or bool(SECRET_NAME.search(key))

    def keys(self, given: Mapping) -> tuple[bytes, bytes]:
        """Derived once per run (the command line does not change during one)."""
        if self._keys is None:
            self._keys = seal_keys(self.data.get("salt", ""), given, self.secret_names)
        return self._keys

    def load(self) -> dict:
        if not self.path or not os.path.exists(self.path):
            return self.data
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise RunnerError(
                f"state file {self.path!r} is unreadable ({exc.__class__.__name__}); "
                "move it away to start over"
            ) from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise RunnerError(f"{self.path!r} is not a datasource state file")
        self.data = data
        return data

    def check_writable(self) -> None:
        if not self.path:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise RunnerError(f"--state: directory {directory!r} does not exist")

    def save(self) -> None:
        if not self.path:
            return
        self.data["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        text = dumps(self.data)
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                fd = -1
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if fd >= 0:
                os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    # the source as the data source should see it on (re)start
    def source_for(self, given: dict) -> dict:
        source = dict(given)
        salt = self.data.get("salt", "")
        origins = self.data.get("source_origins") or {}
        for key, value in (self.data.get("source_changes") or {}).items():
            if origins.get(key) == _fingerprint(salt, given.get(key)):
                source[key] = value
        if self.data.get("sealed_changes"):
            opened = unseal(self.data["sealed_changes"], self.keys(given))
            self.opened = isinstance(opened, dict)
            self.sealed_changes = opened if self.opened else {}
            source.update(self.sealed_changes)
        return source

    def record_source_change(self, given: dict, changes: Mapping) -> None:
        salt = self.data.setdefault("salt", secrets.token_hex(16))
        saved = self.data.setdefault("source_changes", {})
        origins = self.data.setdefault("source_origins", {})
        sealed = False
        for key, value in changes.items():
            if not isinstance(key, str) or key in ("state", "destination"):
                continue
            value = json.loads(dumps(value))
            if self.is_secret(key):
                self.sealed_changes[key] = value
                saved.pop(key, None)
                origins.pop(key, None)
                sealed = True
            else:
                saved[key] = value
                origins[key] = _fingerprint(salt, given.get(key))
        if sealed:
            self.data["sealed_changes"] = seal(self.sealed_changes, self.keys(given))


class StateLog:
    """States reported by the data source, and which of them delivered batches commit."""

    def __init__(self, committed: dict | None = None):
        self.committed: dict = dict(committed or {})
        self._pending: list = []  # [(state_id key, state copy)] in report order

    @staticmethod
    def key(state_id: Any) -> str:
        return state_id if isinstance(state_id, str) else dumps(state_id)

    def report(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        state_id = data.get("stateId", data.get("state_id"))
        state = data.get("state")
        if not isinstance(state, Mapping):
            return
        try:
            snapshot = copy.deepcopy(dict(state))
        except Exception:
            snapshot = json.loads(dumps(dict(state)))
        self._pending.append((self.key(state_id), snapshot))

    def mark(self) -> int:
        return len(self._pending)

    def forget_since(self, mark: int) -> None:
        """Drop states reported by a ``read()`` that raised."""
        del self._pending[mark:]

    def delivered(self, batch: Iterable[Mapping]) -> bool:
        """Commit what ``batch`` (now delivered) allows; True if the state changed."""
        named = set()
        tagged = False
        for obj in batch:
            found, state_id = state_of(obj)
            if found:
                tagged = True
                named.add(self.key(state_id))
        if not tagged:
            upto = len(self._pending)
        else:
            upto = 0
            for i, (key, _) in enumerate(self._pending):
                if key in named:
                    upto = i + 1
        return self._commit(upto)

    def finish(self) -> bool:
        """Everything was read and delivered: every reported state holds."""
        return self._commit(len(self._pending))

    def _commit(self, upto: int) -> bool:
        if upto <= 0:
            return False
        for _, state in self._pending[:upto]:
            self.committed.update(state)
        del self._pending[:upto]
        return True


def state_of(obj: Mapping) -> tuple[bool, Any]:
    """(has a state tag, the tag): ``obj["__state"]``, or a raw message's metadata's."""
    if "__state" in obj:
        return True, obj["__state"]
    if obj.get("type") == "raw":
        metadata = obj.get("metadata")
        if isinstance(metadata, Mapping) and "__state" in metadata:
            return True, metadata["__state"]
    return False, None


# --------------------------------------------------------------------------- output
class Console:
    """Progress bar on a terminal, plain lines otherwise; every line is scrubbed."""

    WIDTH = 30

    def __init__(self, stream: TextIO, scrub: Callable[[str], str], tty: bool | None = None):
        self.stream = stream
        self.scrub = scrub
        self.tty = _isatty(stream) if tty is None else tty
        self.loaded = self.total = 0
        self.msg = ""
        self.delivered = 0
        self._bar_shown = False
        self._finished = False
        self._lock = threading.Lock()

    def progress(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        self.loaded = _int(data.get("loaded"))
        self.total = _int(data.get("total"))
        self.msg = self.scrub(str(data.get("msg") or ""))
        if self.tty:
            self._draw()
        else:
            self.line(f"progress: {self._counts()}")

    def batch_delivered(self, number: int, size: int, table: str) -> None:
        self.delivered += size
        if self.tty:
            self._draw()
        else:
            self.line(
                f"batch {number}: {size} object(s) delivered to {table!r} "
                f"({self.delivered} this run)"
            )

    def _counts(self) -> str:
        text = f"{self.loaded}/{self.total}" if self.total else f"{self.loaded}"
        if self.total:
            text += f" ({min(100, int(100 * self.loaded / self.total))}%)"
        return f"{text} {self.msg}".rstrip()

    def _draw(self) -> None:
        if self.total:
            filled = min(self.WIDTH, int(self.WIDTH * self.loaded / self.total))
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
        else:
            bar = ""
        text = f"{bar}{self._counts()} | {self.delivered} delivered"
        with self._lock:
            self._write(f"\r\033[K{text}")
            self._bar_shown = True

    def line(self, text: str) -> None:
        text = self.scrub(text)
        with self._lock:
            prefix = "\r\033[K" if self._bar_shown else ""
            self._write(f"{prefix}{text}\n")
            if self._bar_shown:
                self._bar_shown = False
        if self.tty and (self.total or self.delivered) and not self._finished:
            self._draw()

    def done(self) -> None:
        """The bar is final: later lines do not redraw it."""
        with self._lock:
            self._finished = True
            if self._bar_shown:
                self._write("\n")
                self._bar_shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            pass


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class ConsoleLogHandler(logging.Handler):
    """The data source's ``log()`` lines, through the console (they do not break the bar)."""

    def __init__(self, console: Console):
        super().__init__(logging.INFO)
        self.console = console
        self.setFormatter(logging.Formatter("%(shortname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name
            record.shortname = name[len(DATASOURCE_LOGGER) + 1 :] or name
            self.console.line(self.format(record))
        except Exception:
            self.handleError(record)


def format_traceback(exc: BaseException) -> str:
    """The traceback as text, even if the exception's ``__str__`` raises."""
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    except Exception:
        return f"{type(exc).__name__} (its traceback could not be formatted)"


def describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- delivery
class HandlerDestination:
    """A service handler (Panoply by default) used only through ``export_now()``.

    Built with ``spool_dir=""``: the state file is this runner's durability, so a batch
    that cannot be delivered is left to the next run (which reads it again) rather than
    spooled (which would send it a second time on replay). ``handle_sigterm=False``: the
    runner handles SIGTERM itself.
    """

    def __init__(self, service: str, url: str | None, options: Mapping, timeout: float | None):
        from .__main__ import handler_classes

        classes = handler_classes()
        if service not in classes:
            raise RunnerError(f"unknown service {service!r}; one of {', '.join(classes)}")
        cls = classes[service]
        settings = dict(options)
        if url:
            settings["url"] = url
        self.placeholder_credentials = False
        if (
            service == "panoply"
            and _url_given(settings)
            and not _panoply_credentials_given(settings)
        ):
            settings["api_key"] = PLACEHOLDER_API_KEY
            settings["api_secret"] = PLACEHOLDER_API_SECRET
            self.placeholder_credentials = True
        settings["spool_dir"] = ""
        settings["handle_sigterm"] = False
        try:
            self.handler = cls(**settings)
        except (TypeError, ValueError) as exc:
            raise RunnerError(f"{service}: {exc}") from None
        self.timeout = timeout
        self.endpoint = self.handler.service.endpoint()

    def deliver(self, events: list) -> Any:
        return self.handler.export_now(events, self.timeout)

    def secrets(self) -> list:
        return [s for s in self.handler.service.secrets() if s]

    def close(self, timeout: float) -> None:
        self.handler.close(timeout=timeout)


def _url_given(settings: Mapping) -> bool:
    """A URL chosen by the user (--url, --option url=, or the environment): never SQS."""
    if settings.get("url"):
        return True
    return any(os.environ.get(name) for name in opts.env_names("PANOPLY", "url"))


def _panoply_credentials_given(settings: Mapping) -> bool:
    if settings.get("api_key") or settings.get("api_secret"):
        return True
    return any(
        name in os.environ
        for option in ("api_key", "api_secret")
        for name in opts.env_names("PANOPLY", option)
    )


# --------------------------------------------------------------------------- signals
class Stop:
    """SIGINT/SIGTERM: the first asks to stop after the current batch, a second is final."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):
                pass

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous)
            except (ValueError, OSError, TypeError):
                pass
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # the second one: stop now
        self.signum = signum

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if a stop was asked for meanwhile."""
        deadline = time.monotonic() + seconds
        while self.signum is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.1))
        return True


# --------------------------------------------------------------------------- the run
class Run:
    """One run of a data source: read, deliver, commit state, until the end or a stop."""

    def __init__(
        self,
        stream_class: type[DataSource],
        config: Mapping,
        source: dict,
        options: dict,
        deliver: Callable[[list], Any],
        state_file: StateFile,
        console: Console,
        *,
        stream_name: str = "",
        batch_size: int | None = 1000,
        retry_wait: float = 1.0,
        fresh: bool = False,
        extra_secrets: Callable[[], Iterable[str]] = lambda: (),
        stop: Stop | None = None,
    ):
        self.stream_class = stream_class
        self.config = config
        self.given_source = source
        self.options = options
        self.deliver = deliver
        self.state_file = state_file
        self.console = console
        self.stream_name = stream_name
        self.batch_size = batch_size
        self.retry_wait = retry_wait
        self.fresh = fresh
        self.extra_secrets = extra_secrets
        self.stop = stop or Stop()
        self.datasource: DataSource | None = None
        self.batches = 0
        self.objects = 0
        self._secret_names = secret_param_names(config)

    # ---- secrets
    def secrets(self) -> set:
        found = secret_values_in(self.given_source, self._secret_names)
        found |= secret_values_in(self.options, self._secret_names)
        if self.datasource is not None:
            found |= self.datasource.secret_values()
            found |= secret_values_in(self.datasource.source, self._secret_names)
        found |= {s for s in self.extra_secrets() if s}
        return found

    def scrub(self, text: str) -> str:
        return scrub_text(text, self.secrets())

    # ---- setup
    def prepare(self) -> DataSource:
        self.state_file.check_writable()
        self.state_file.secret_names += self._secret_names
        data = self.state_file.load()
        source = self.state_file.source_for(self.given_source)
        if not self.state_file.opened:
            self.console.line(
                "note: the credentials saved in the state file were sealed with other "
                "command-line credentials; using the command line's"
            )
        validate_source(source, self.config)
        if not source.get("destination"):
            source["destination"] = source["type"]
        saved_for = data.get("destination")
        if saved_for is not None and saved_for != source.get("destination"):
            raise RunnerError(
                f"state file {self.state_file.path!r} belongs to destination {saved_for!r}, "
                f"not {source.get('destination')!r}; use another --state file"
            )
        if self.fresh:
            data["state"] = {}
            data["delivered"] = 0
        if data.get("state"):
            source["state"] = copy.deepcopy(data["state"])
        self.resumed = bool(data.get("state")) and not data.get("complete")
        data["complete"] = False
        data["destination"] = source["destination"]
        data["stream"] = self.stream_name
        self.states = StateLog(data.get("state"))
        self.objects_before = int(data.get("delivered") or 0)

        cls = self.stream_class
        datasource = cls.__new__(cls)  # subscribe before __init__, which may fire events
        # log() also blanks the params CONFIG marks as secret, whatever handler ships it
        datasource.secret_params = tuple(cls.secret_params) + self._secret_names
        datasource.on("progress", self.console.progress)
        datasource.on("source-state", self.states.report)
        datasource.on("source-change", self._source_changed)
        cls.__init__(datasource, source, self.options)
        self.datasource = datasource
        return datasource

    def _source_changed(self, changes: Any) -> None:
        if not isinstance(changes, Mapping):
            return
        if self.datasource is not None:
            for key, value in changes.items():
                if self.datasource.source.get(key) is not value:
                    self.datasource.source[key] = value
        self.state_file.record_source_change(self.given_source, changes)
        self.state_file.save()  # now: a rotated refresh token must not be lost to a crash

    # ---- the loop
    def run(self) -> int:
        """Exit status: 0 done, 1 failed, 128+N stopped by signal N."""
        try:
            datasource = self.prepare()
        except RunnerError:
            raise
        except Exception as exc:  # the data source's __init__ (or its listeners) raised
            self.report_failure("the data source could not start", exc, 1)
            self.close_datasource()
            return EXIT_FAILED
        destination = datasource.source["destination"]
        if datasource.source.get("state") is not None:
            how = "resuming" if self.resumed else "continuing after the last finished run of"
            self.console.line(
                f"{how} {destination!r} from the saved state "
                f"({self.objects_before} object(s) delivered before)"
            )
        finished = False
        status = EXIT_FAILED
        try:
            while self.stop.signum is None:
                batch = self.read(datasource)
                if batch is None:
                    finished = True
                    break
                if batch:
                    self.send(batch, destination)
                    self.batches += 1
                    self.objects += len(batch)
                    self.console.batch_delivered(self.batches, len(batch), destination)
                committed = self.states.delivered(batch)
                if committed or batch:
                    self.commit()
            if finished:
                self.states.finish()
                self.state_file.data["complete"] = True
                self.commit()
                status = EXIT_OK
            else:
                status = 128 + (self.stop.signum or signal.SIGINT)
        except StopRequested:
            status = 128 + (self.stop.signum or signal.SIGINT)
        except ReadFailed as failure:
            self.report_failure("read() failed", failure.cause, failure.attempts)
        except RunFailed as failure:
            self.console.line(f"error: {failure} (state kept after the last delivered batch)")
        finally:
            self.close_datasource()
            self.console.done()
        self.summary(destination, status)
        return status

    def read(self, datasource: DataSource) -> list | None:
        """``read()``, retried 3 times unless ``PanoplyException(retryable=False)``."""
        attempts = 0
        while True:
            attempts += 1
            mark = self.states.mark()
            try:
                result = datasource.read(self.batch_size)
                return self.checked(result)
            except PanoplyException as exc:
                self.states.forget_since(mark)
                if not exc.retryable or attempts > READ_RETRIES:
                    raise ReadFailed(exc, attempts) from None
                error: Exception = exc
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                self.states.forget_since(mark)
                if attempts > READ_RETRIES:
                    raise ReadFailed(exc, attempts) from None
                error = exc
            wait = self.retry_wait * (2 ** (attempts - 1))
            self.console.line(
                f"read() failed ({describe(error)}); retry {attempts} of {READ_RETRIES} "
                f"in {wait:g}s"
            )
            if self.stop.wait(wait):
                raise StopRequested

    @staticmethod
    def checked(result: Any) -> list | None:
        if result is None:
            return None
        if isinstance(result, (str, bytes, Mapping)) or not isinstance(result, Iterable):
            raise PanoplyException(
                f"read() returned {type(result).__name__}; expected a list of dicts or None",
                retryable=False,
            )
        batch = []
        for i, obj in enumerate(result):
            if not isinstance(obj, Mapping):
                raise PanoplyException(
                    f"read() returned a {type(obj).__name__} at index {i}; objects are dicts",
                    retryable=False,
                )
            try:
                batch.append(dict(obj))  # a plain copy: what is sent is what was read
            except Exception as exc:
                raise PanoplyException(
                    f"read() returned an object at index {i} that cannot be copied "
                    f"({type(exc).__name__})",
                    retryable=False,
                ) from None
        return batch

    def send(self, batch: list, destination: str) -> None:
        events = []
        for obj in batch:
            event = dict(obj)
            event["__table"] = destination
            events.append(event)
        try:
            result = self.deliver(events)
        except Exception as exc:  # export_now promises not to raise; be safe anyway
            raise RunFailed(self.scrub(f"delivery raised {describe(exc)}")) from None
        outcome = getattr(result, "outcome", None)
        if outcome == "delivered":
            return
        reasons = "; ".join(str(r) for r in (getattr(result, "reasons", ()) or ()))
        status = getattr(result, "status", None)
        detail = f"HTTP {status}" if status else ""
        if reasons:
            detail = f"{detail}: {reasons}" if detail else reasons
        text = f"batch {self.batches + 1} ({len(batch)} objects) was not delivered: {outcome}"
        raise RunFailed(self.scrub(f"{text} ({detail})" if detail else text))

    def commit(self) -> None:
        data = self.state_file.data
        data["state"] = self.states.committed
        data["delivered"] = self.objects_before + self.objects
        try:
            self.state_file.save()
        except OSError as exc:
            raise RunFailed(f"cannot write the state file: {exc.strerror or exc}") from None

    def close_datasource(self) -> None:
        if self.datasource is None:
            return
        try:
            self.datasource.close()
        except Exception as exc:
            self.console.line(f"warning: close() raised {describe(exc)}")

    def report_failure(self, what: str, cause: BaseException, attempts: int) -> None:
        retryable = getattr(cause, "retryable", True)
        why = "not retryable" if not retryable else f"{attempts} attempt(s)"
        self.console.line(self.scrub(format_traceback(cause)))
        self.console.line(
            f"error: {what} ({why}): {describe(cause)} (state kept after the last "
            "delivered batch; run again to resume)"
        )

    def summary(self, destination: str, status: int) -> None:
        total = self.objects_before + self.objects
        if status == EXIT_OK:
            head = "done"
        elif status > 128:
            head = f"stopped by signal {status - 128}"
        else:
            head = "failed"
        where = f"; state in {self.state_file.path}" if self.state_file.path else ""
        self.console.line(
            f"{head}: {self.objects} object(s) in {self.batches} batch(es) delivered to "
            f"{destination!r} this run, {total} in all{where}"
        )


# --------------------------------------------------------------------------- CLI
def add_datasource_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "datasource",
        help="run a Panoply data source and stream what it reads into a table",
        description="Import MODULE (a dotted name or a .py file exposing Stream and CONFIG), "
        "call read() until it returns None and deliver every object to "
        "source['destination'] through the Panoply pipeline (or --service); with --state, "
        "resume where the last delivered batch left off.",
    )
    p.add_argument("module", metavar="MODULE", help="dotted module name or path to a .py file")
    p.add_argument("--source", required=True, metavar="JSON|@FILE", help="the source dict")
    p.add_argument("--options", metavar="JSON|@FILE", help="the options dict")
    p.add_argument("--state", metavar="FILE", help="state file (0600): resume from it")
    p.add_argument("--fresh", action="store_true", help="ignore the state saved in --state")
    p.add_argument("--url", help="send here instead (e.g. http://127.0.0.1:8787 collector)")
    p.add_argument("--service", default="panoply", help="handler to send with (default: panoply)")
    p.add_argument("--option", action="append", metavar="NAME=VALUE", help="a handler option")
    p.add_argument("--batch-size", type=int, default=1000, help="n passed to read(n)")
    p.add_argument(
        "--retry-wait", type=float, default=1.0, help="seconds before the first read() retry"
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait for one batch's delivery (default: bounded by the handler's timeout x retries)",
    )
    p.set_defaults(func=run_datasource)
    return p


def _handler_options(items: list | None) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RunnerError(f"--option wants NAME=VALUE, got {item.partition('=')[0]!r}")
        out[key.replace("-", "_")] = value
    return out


def run_datasource(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    stream = stream or sys.stderr
    console = Console(stream, lambda text: text)
    stop = Stop()
    destination: HandlerDestination | None = None
    try:
        source = parse_json_argument(args.source, "--source")
        options = parse_json_argument(args.options, "--options")
        console.scrub = lambda text: scrub_text(text, _initial_secrets(source, options))
        module = load_module(args.module)
        stream_class, config = stream_and_config(module)
        validate_source(source, config)
        stop.install()  # before the handler exists, so it leaves SIGTERM to us
        destination = HandlerDestination(
            args.service, args.url, _handler_options(args.option), args.timeout
        )
        if not args.state:
            console.line("note: no --state FILE: a restart will read everything again")
        if destination.placeholder_credentials:
            console.line(
                "note: no Panoply credentials configured; sending placeholder ones to --url"
            )
        run = Run(
            stream_class,
            config,
            source,
            options,
            destination.deliver,
            StateFile(args.state),
            console,
            stream_name=f"{module.__name__}.{stream_class.__qualname__}",
            batch_size=args.batch_size,
            retry_wait=args.retry_wait,
            fresh=args.fresh,
            extra_secrets=destination.secrets,
            stop=stop,
        )
        console.scrub = run.scrub
        _attach_log(console)
        return run.run()
    except RunnerError as exc:
        console.line(f"datasource: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.done()
        console.line("datasource: interrupted; state kept after the last delivered batch")
        return 128 + (stop.signum or signal.SIGINT)
    except Exception as exc:  # e.g. importing the module failed: show it, scrubbed
        console.line(format_traceback(exc))
        console.line(f"datasource: {describe(exc)}")
        return EXIT_FAILED
    finally:
        stop.restore()
        _detach_log()
        if destination is not None:
            destination.close(timeout=5.0)


def _initial_secrets(source: Mapping, options: Mapping) -> set:
    return secret_values_in(source, ()) | secret_values_in(options, ())


_LOG_HANDLERS: list = []


def _attach_log(console: Console) -> None:
    logger = logging.getLogger(DATASOURCE_LOGGER)
    handler = ConsoleLogHandler(console)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    _LOG_HANDLERS.append(handler)


def _detach_log() -> None:
    logger = logging.getLogger(DATASOURCE_LOGGER)
    while _LOG_HANDLERS:
        logger.removeHandler(_LOG_HANDLERS.pop())
