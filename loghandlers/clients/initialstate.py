"""ISStreamer's ``Streamer``, on the loghandlers pipeline.

Migrating is one changed import (``from ISStreamer.Streamer import Streamer``)::

    from loghandlers.clients.initialstate import Streamer

    streamer = Streamer(bucket_name="Some Bucket Name", bucket_key="bucket_key",
                        access_key="YourAccessKey")
    streamer.log("temperature", 32)
    streamer.log_object({"a": 1, "b": 2}, key_prefix="some_dict")
    streamer.close()

``log`` and ``log_object`` build the same ``{"key", "value", "epoch"}`` events as ISStreamer
2.0.0 (numbers and bools stay JSON numbers and bools, an ``epoch`` is sent as given,
``log_object`` flattens one level with the same keys) and hand them to an
:class:`~loghandlers.InitialStateHandler` attached to no logger (``handler.submit``). The
bucket call is made once per bucket, before its events, and must succeed first. So, unlike
the SDK, failed sends are retried (``Retry-After`` honoured) and then spooled and replayed
instead of written to ``err_missed_events.txt``, a 402 never raises out of ``log()``,
events are sent every ``flush_interval`` even when the buffer is not full, and what is
buffered is delivered (or spooled) at interpreter exit, ``close()`` or not.

Options, by precedence: keyword arguments (the SDK's, and any handler option such as
``url``, ``spool_dir``, ``close_timeout``), then ``LOGHANDLERS_INITIALSTATE_*`` variables,
then the SDK's ``isstreamer.ini`` (``ini_file_location``, else ``~/isstreamer.ini``, else
``./isstreamer.ini``: ``access_key``, ``default_bucket`` and ``stream_api_base``, which
becomes ``url``), then the defaults.

Threading: ``log``/``log_object``/``flush`` may be called from any thread. ``_bucket``
(the current bucket) is replaced whole by ``set_bucket``; the handlers are kept in a
:class:`~loghandlers.clients._shared.HandlerSet`. No lock is held while user code runs
(``log_object`` reads the object's properties on the caller's thread, before submitting).
"""

from __future__ import annotations

import configparser
import functools
import os
import time
import uuid
import weakref
from typing import Any, Iterable

from ..options import env_names
from ..services.initialstate import EPOCH, InitialStateHandler, is_key, is_value
from ..services.initialstate_objects import event_epoch, log_object_items, name_text
from ._shared import HandlerSet

_INI_NAME = "isstreamer.ini"


def read_ini(location: str | None = None) -> dict:
    """The settings ISStreamer 2.0.0 reads from its ini file, as far as the file has them.

    ``location`` must exist if given; otherwise ``~/isstreamer.ini`` then
    ``./isstreamer.ini`` are tried. Keys: ``access_key``, ``bucket`` (the ini's
    ``default_bucket``: a bucket *name*), ``offline_mode``, ``stream_api_base``.
    """
    if location is not None:
        if not os.path.exists(location):
            raise FileNotFoundError(f"ini file {location!r} does not exist or is not readable")
        path = location
    else:
        candidates = [os.path.join(os.path.expanduser("~"), _INI_NAME), _INI_NAME]
        found = next((p for p in candidates if os.path.exists(p)), None)
        if found is None:
            return {}
        path = found
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    out: dict[str, Any] = {}
    client = "isstreamer.client_config"
    if not parser.has_section(client):
        return out  # ISStreamer reads api_config only alongside client_config
    for option, key in (
        ("access_key", "access_key"),
        ("default_bucket", "bucket"),
        ("offline_mode", "offline_mode"),
    ):
        if parser.has_option(client, option):
            out[key] = parser.get(client, option)
    if parser.has_option("isstreamer.api_config", "stream_api_base"):
        base = parser.get("isstreamer.api_config", "stream_api_base")
        if not base.startswith(("http://", "https://")):
            raise ValueError("stream_api_base must start with http:// or https://")
        out["stream_api_base"] = base
    return out


def pipeline_events(items: Iterable[tuple[Any, Any]], epoch: float | int) -> list[dict]:
    """Ready-made pipeline records (``{"": epoch, key: value, ...}``) from key/value pairs,
    as ``Streamer.log``/``log_object`` submit them: keys made Initial State keys, values
    made Initial State values. A key met twice starts a new record, so both are sent, as
    ISStreamer does. An empty key is a ValueError (it can't be an Initial State key)."""
    records: list = []
    out: dict = {EPOCH: epoch}
    for key, value in items:
        name = is_key(name_text(key))
        if not name:
            raise ValueError("an Initial State key must not be empty")
        if name in out:
            records.append(out)
            out = {EPOCH: epoch}
        out[name] = _value(value)
    if len(out) > 1:
        records.append(out)
    return records


def _value(value: Any) -> Any:
    """The Initial State value, made now on the caller's thread (as the SDK serializes at
    send time, a later change to a mutable value must not leak in); an object whose every
    representation raises becomes a placeholder instead of an exception out of log()."""
    try:
        return is_value(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


def _build(options: dict, bucket: tuple) -> InitialStateHandler:
    """One bucket's handler (a plain function: the Streamer's finalizer must not hold the
    Streamer)."""
    key, name = bucket
    options = dict(options)
    if key is not None:
        options["bucket_key"] = key
    if name is not None:
        options["bucket_name"] = name
    return InitialStateHandler(**options)


def _from_environment(option: str) -> bool:
    return any(name in os.environ for name in env_names("INITIALSTATE", option))


class Streamer:
    """ISStreamer's Streamer: ``log``, ``log_object``, ``flush``, ``close``, ``set_bucket``.

    ``buffer_size`` (when given) is the handler's ``batch_size``. ``debug_level`` and
    ``use_async`` are accepted and ignored (failures go to stderr, rate-limited,
    ``on("error")`` and ``stats()``; sending is always on a background thread).
    ``offline=True`` (or an ini's ``offline_mode``) is refused: there is no CSV mode; the
    spool keeps what can't be sent.
    """

    def __init__(
        self,
        bucket_name: str = "",
        bucket_key: str = "",
        access_key: str = "",
        ini_file_location: str | None = None,
        debug_level: int = 0,
        buffer_size: int | None = None,
        offline: bool | None = None,
        use_async: bool = True,
        **options: Any,
    ):
        ini = read_ini(ini_file_location)
        if offline or (offline is None and ini.get("offline_mode", "false") != "false"):
            raise ValueError(
                "offline mode (a CSV file instead of sending) is not supported; events that "
                "can't be sent are kept in spool_dir and replayed"
            )
        self.DebugLevel = debug_level
        if access_key:
            options["access_key"] = access_key
        elif not _from_environment("access_key") and ini.get("access_key"):
            options["access_key"] = ini["access_key"]
        if options.get("url") is None and not _from_environment("url"):
            if ini.get("stream_api_base"):
                options["url"] = ini["stream_api_base"]
        if buffer_size is not None:
            options["batch_size"] = buffer_size
        if not bucket_name and not _from_environment("bucket_name"):
            bucket_name = ini.get("bucket", "")
        if not bucket_key and not _from_environment("bucket_key"):
            bucket_key = str(uuid.uuid4())  # as the SDK: a fresh bucket
        self._handlers: HandlerSet[InitialStateHandler] = HandlerSet(
            functools.partial(_build, options)
        )
        self._bucket = (bucket_key or None, bucket_name or None)
        self._handlers.get(self._bucket)  # bad options are an error now, not at log()
        self._finalizer = weakref.finalize(self, self._handlers.begin_close)
        self._finalizer.atexit = False  # type: ignore[misc]  # (3.9 stubs) at exit the handlers drain anyway

    # ----------------------------------------------------------------- the SDK's API
    def log(self, key: str, value: Any, epoch: float | None = None) -> None:
        """Buffer one event. ``value``: str, number and bool go as they are, anything else
        as its JSON text. ``epoch`` (seconds) is sent as given if it is a usable time (a
        datetime is converted), else the current time is used, as the SDK does. A key
        over 250 characters is shortened as the handler does; an empty key is a
        ``ValueError``."""
        stamp = event_epoch(epoch) if epoch is not None else None
        events = pipeline_events([(key, value)], time.time() if stamp is None else stamp)
        handler = self._handlers.get(self._bucket)
        for event in events:
            handler.submit(event)

    def log_object(self, obj: Any, key_prefix: str | None = None, epoch: float | None = None):
        """Buffer one event per list item, dict entry or object property, all with the
        same epoch, keyed as ISStreamer 2.0.0 does (``list_0``, ``dict_<key>``,
        ``<Type>_<property>``; ``key_prefix`` replaces the type name, ``""`` means no
        prefix). A tuple counts as a list and any mapping as a dict (the SDK logs nothing
        for them)."""
        stamp = event_epoch(epoch) if epoch is not None else None
        items = log_object_items(obj, key_prefix)
        events = pipeline_events(items, time.time() if stamp is None else stamp)
        handler = self._handlers.get(self._bucket)
        for event in events:
            handler.submit(event)

    def set_bucket(self, bucket_name: str = "", bucket_key: str = "", retries: int = 3):
        """Send later events to another bucket (created before its first events): a
        ``uuid4`` key when none is given, as the SDK. Events logged before the call still
        go to the previous bucket (the SDK sends its buffer to the new one); its handler
        drains in the background. ``retries`` is ignored: the handler's apply."""
        if not bucket_key:
            bucket_key = str(uuid.uuid4())
        bucket = (bucket_key, bucket_name or None)
        previous, self._bucket = self._bucket, bucket
        self._handlers.get(bucket)
        if previous != bucket:
            self._handlers.retire(previous)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now; True once delivered or spooled (False if
        ``timeout`` ran out first)."""
        return self._handlers.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain within ``close_timeout`` (or ``timeout``), spool the rest, stop. Optional:
        dropping the Streamer or interpreter exit does the same."""
        self._handlers.close(timeout)

    @property
    def BucketKey(self) -> str:  # noqa: N802 (the SDK's attribute)
        return self._handlers.get(self._bucket).settings.bucket_key

    @property
    def BucketName(self) -> str:  # noqa: N802 (the SDK's attribute)
        settings = self._handlers.get(self._bucket).settings
        return settings.bucket_name or settings.bucket_key

    # ----------------------------------------------------------------- ours
    def stats(self) -> dict:
        """Counters of every bucket's handler, added up (see ``BatchingHandler.stats``)."""
        return self._handlers.stats()

    @property
    def handler(self) -> InitialStateHandler:
        """The current bucket's service handler."""
        return self._handlers.get(self._bucket)

    def __enter__(self) -> Streamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Streamer bucket_key={self._bucket[0]!r} via {self.handler!r}>"
