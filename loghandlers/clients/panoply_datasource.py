"""The Panoply SDK's framework for data sources, on Python 3.

A data source is a class that reads from a database or an API; the Panoply platform (or
our runner, ``python -m loghandlers datasource``, see :mod:`loghandlers.datasource_runner`)
calls its ``read()`` until it returns ``None`` and streams every object into the table
named by ``source["destination"]``. This module holds what the SDK's README documents:

* :class:`DataSource`: the base class (``source``/``options`` attributes, ``read``,
  ``close``, ``log``, ``progress``, ``state``, ``raw``, ``fire``, and ``on`` to listen).
* :class:`PanoplyException`: an error whose ``retryable`` attribute tells the runner
  whether another ``read()`` could succeed.
* :func:`validate_token`: a decorator that refreshes an OAuth2 access token when the
  decorated method raises one of the given exceptions, then calls the method once more.

Events (``fire``/``on``) follow the SDK: ``on(name, fn)`` calls ``fn(data)`` for that
name, ``on("*", fn)`` calls ``fn(name, data)`` for every event. The SDK's own names:
``"progress"`` ``{"loaded", "total", "msg"}``, ``"source-state"`` ``{"stateId", "state"}``,
``"source-change"`` (a dict of changed source parameters).

Secrets: ``log()``, ``progress()`` messages and the errors :func:`validate_token` raises
pass through :meth:`DataSource.scrub`, which blanks every value of ``source``/``options``
stored under a credential-like name (``token``, ``secret``, ``password``, ``api_key``, ...,
see :data:`SECRET_NAME`) or named in the class's ``secret_params``, also as it looks
%-encoded, form-encoded or JSON-escaped.

Threading: a data source is driven by one thread (the runner's main thread); ``fire`` runs
the listeners on the thread that calls it. Nothing here takes a lock.
"""

from __future__ import annotations

import base64
import functools
import html
import inspect
import json
import logging
import re
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote, quote_plus

import requests

__all__ = [
    "DataSource",
    "PanoplyException",
    "validate_token",
    "SECRET_NAME",
    "scrub_text",
    "secret_values_in",
]

#: source/options keys whose values are credentials (matched anywhere in the key, any case)
SECRET_NAME = re.compile(
    r"token|secret|passw|pwd|(?:^|[_-])key$|^pass$|api_?key|access_?key|private_?key|credential"
    r"|auth(?!ors?(?:$|[_-]))|bearer|signature|cookie|session",
    re.IGNORECASE,
)
MIN_SECRET_LENGTH = 4  # shorter values would blank ordinary words in every message
BLANK = "****"
REFRESH_TIMEOUT = 30.0  # seconds for the token refresh request

EventListener = Callable[..., Any]


class PanoplyException(Exception):
    """An error of a data source; ``retryable=False`` means another ``read()`` won't help.

    The runner retries a failing ``read()`` 3 times, unless it raised one of these with
    ``retryable=False`` (e.g. an HTTP 404 from the API the data source reads).
    """

    def __init__(self, message: str = "", retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = bool(retryable)


def secret_values_in(mapping: Any, extra_names: Iterable[str] = (), depth: int = 0) -> set:
    """Every string stored under a credential-like key, at any depth of nested dicts."""
    found: set = set()
    if depth > 8 or not isinstance(mapping, Mapping):
        return found
    names = set(extra_names)
    for key, value in list(mapping.items()):
        secret_key = isinstance(key, str) and (key in names or SECRET_NAME.search(key))
        if isinstance(value, Mapping):
            found |= secret_values_in(value, names, depth + 1)
            if secret_key:  # e.g. "auth": {"user": .., "pass": ..}: every value in it
                found |= {v for v in value.values() if isinstance(v, str)}
        elif secret_key and isinstance(value, (str, bytes)):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            found.add(text)
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def _forms(secret: str) -> set:
    """How a secret may look in text a person sees: raw, in a URL, a form, JSON, HTML."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
        html.escape(secret),
    }


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret replaced by ``****`` (longest first)."""
    forms = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            forms |= _forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, BLANK)
    return text


def _text_of(value: Any) -> str:
    """``str(value)`` that never raises (a data source may log anything)."""
    try:
        return value if isinstance(value, str) else str(value)
    except Exception:
        try:
            return f"<unprintable {type(value).__name__}>"
        except Exception:
            return "<unprintable>"


class DataSource:
    """Base class of a Panoply data source: subclass it, implement ``read()``.

    ``source`` holds the parameters (``CONFIG["params"]``) plus ``type``/``destination``;
    ``destination`` defaults to ``type``. ``options`` holds hints and extra settings (e.g.
    ``options["refresh"]``: extra form fields for :func:`validate_token`'s refresh call).
    """

    #: extra source/options keys to treat as secrets (beyond :data:`SECRET_NAME` matches)
    secret_params: tuple = ()

    def __init__(self, source: dict, options: dict | None = None, *args: Any, **kwargs: Any):
        if source is None:
            source = {}
        if "destination" not in source:
            if "type" not in source:
                raise ValueError('source needs a "destination" (or a "type" to default it to)')
            source["destination"] = source["type"]
        self.source = source
        self.options = {} if options is None else options
        # the runner may subscribe before __init__ runs, so keep what is there
        self.__dict__.setdefault("_listeners", {})

    # ------------------------------------------------------------------ the contract
    def read(self, n: int | None = None) -> list | None:
        """Up to ``n`` objects (``n`` is a hint), or ``None`` once everything was read."""
        raise NotImplementedError(f"{type(self).__name__} must implement read(n=None)")

    def close(self) -> None:
        """Release connections, files, ...; called once after the last ``read()``."""

    # ------------------------------------------------------------------ events
    def on(self, name: str, listener: EventListener) -> DataSource:
        """Call ``listener(data)`` when ``name`` fires (``"*"``: ``listener(name, data)``)."""
        listeners = self.__dict__.setdefault("_listeners", {})
        listeners.setdefault(name, []).append(listener)
        return self

    def fire(self, type: str, data: Any) -> DataSource:  # noqa: A002  (the SDK's name)
        """Fire an event; ``"source-change"`` with a dict of changed source parameters
        asks the runner to save them (e.g. a refreshed access token)."""
        listeners = self.__dict__.get("_listeners", {})
        for listener in list(listeners.get("*", ())):
            listener(type, data)
        for listener in list(listeners.get(type, ())):
            listener(data)
        return self

    # ------------------------------------------------------------------ reporting
    def secret_values(self) -> set:
        """The credential values of ``source`` and ``options`` right now (tokens change)."""
        names = tuple(self.secret_params)
        return secret_values_in(self.source, names) | secret_values_in(self.options, names)

    def scrub(self, text: str) -> str:
        """``text`` with this data source's credentials blanked, in any usual encoding."""
        return scrub_text(text, self.secret_values())

    @property
    def logger(self) -> logging.Logger:
        """``loghandlers.datasource.<ClassName>``: attach any handler, ours included."""
        return logging.getLogger(f"loghandlers.datasource.{type(self).__name__}")

    def log(self, *msgs: Any) -> None:
        """Log the messages, joined by spaces, at INFO; credentials are blanked."""
        text = " ".join(_text_of(m) for m in msgs)
        self.logger.info("%s", self.scrub(text))

    def progress(self, loaded: int, total: int, msg: str | None = None) -> None:
        """Report progress (``loaded`` of ``total`` rows, files, calls, ...)."""
        shown = self.scrub(_text_of(msg)) if msg else ""
        self.fire("progress", {"loaded": loaded, "total": total, "msg": shown})

    def state(self, state_id: Any, state: dict) -> None:
        """Report the state reached; objects of that batch carry ``"__state": state_id``.

        The runner merges every state into one (a later state's top-level keys replace
        earlier ones) once the objects tagged with it were delivered, and hands the merged
        state back in ``source["state"]`` when a run resumes.
        """
        self.fire("source-state", {"stateId": state_id, "state": state})

    def raw(self, tag: Any, raw: bytes | str, metadata: dict | None = None) -> dict:
        """A raw message object, as the SDK builds it, to return from ``read()``.

        ``raw`` is base64-encoded (text is encoded as UTF-8 first) so that the object is
        JSON: ``{"type": "raw", "tag": tag, "raw": "<base64>", "metadata": {...}}``. Put
        ``"__state"`` in ``metadata`` to tie the message to a state.
        """
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        return {
            "type": "raw",
            "tag": tag,
            "raw": base64.b64encode(data).decode("ascii"),
            "metadata": {} if metadata is None else metadata,
        }


def _refresh_failure(reason: str) -> PanoplyException:
    return PanoplyException(
        f"access token could not be refreshed ({reason}); the user must re-authenticate",
        retryable=False,
    )


def validate_token(
    refresh_url: str,
    exceptions: type | tuple = (),
    callback: str | Callable[[str], Any] | None = None,
    access_key: str = "access_token",
    refresh_key: str = "refresh_token",
) -> Callable:
    """Refresh an OAuth2 access token when the decorated method fails with ``exceptions``.

    On one of ``exceptions`` (a class or a tuple) the wrapper POSTs, form-encoded,
    ``options["refresh"]`` (extra fields such as ``client_id``; optional) plus
    ``{refresh_key: source[refresh_key]}`` to ``refresh_url``; stores the reply's
    ``access_key`` in ``self.source`` (and a rotated ``refresh_key``, when the reply has
    one); fires ``"source-change"`` with what changed, so the runner saves it; calls
    ``callback`` (a callable, or the name of a method of the data source) with the new
    token; and calls the method again, once. If the refresh fails, it raises
    ``PanoplyException(retryable=False)``: retrying cannot help, the user must
    re-authenticate. An error of the second call propagates unchanged. Tokens never
    appear in the log line or the exception it raises.
    """
    caught: tuple[type[BaseException], ...] = (
        tuple(exceptions) if isinstance(exceptions, (list, tuple)) else (exceptions,)
    )

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: DataSource, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except caught:
                pass
            self.log("Revalidating the access token...")
            changes = _refresh(self, refresh_url, access_key, refresh_key)
            self.fire("source-change", changes)
            if callback is not None:
                _call_back(self, callback, self.source.get(access_key))
            return method(self, *args, **kwargs)

        return wrapper

    return decorate


def _call_back(source: DataSource, callback: str | Callable, token: Any) -> None:
    """``callback(token)``: a callable, or the name of a method of the data source.

    The SDK's README shows the method as ``def my_callback(new_token)`` (no ``self``);
    such a method is called as a plain function, so README-literal code works.
    """
    if callable(callback):
        callback(token)
        return
    target = getattr(source, callback)
    function = getattr(target, "__func__", None)
    if function is not None and _takes_one_argument(function) and not _takes_one_argument(target):
        function(token)
    else:
        target(token)


def _takes_one_argument(function: Callable) -> bool:
    try:
        inspect.signature(function).bind(None)
    except (TypeError, ValueError):
        return False
    return True


def _refresh(source: DataSource, refresh_url: str, access_key: str, refresh_key: str) -> dict:
    """POST the refresh token; the new token(s) go into ``source.source``."""
    token = source.source.get(refresh_key)
    if not token:
        raise _refresh_failure(f"the source has no {refresh_key!r}")
    extra = source.options.get("refresh") or {}
    form = dict(extra) if isinstance(extra, Mapping) else {}
    form[refresh_key] = token
    secrets = source.secret_values() | {str(token)}
    try:
        reply = requests.post(refresh_url, data=form, timeout=REFRESH_TIMEOUT)
    except requests.RequestException as exc:
        raise _refresh_failure(scrub_text(type(exc).__name__, secrets)) from None
    if reply.status_code >= 400:
        raise _refresh_failure(f"HTTP {reply.status_code}")
    try:
        body = reply.json()
    except ValueError:
        body = None
    new_token = body.get(access_key) if isinstance(body, dict) else None
    if not isinstance(new_token, str) or not new_token:
        raise _refresh_failure(f"the reply has no {access_key!r}")
    source.source[access_key] = new_token
    changes = {access_key: new_token}
    rotated = body.get(refresh_key)
    if isinstance(rotated, str) and rotated and rotated != token:
        source.source[refresh_key] = rotated
        changes[refresh_key] = rotated
    return changes
