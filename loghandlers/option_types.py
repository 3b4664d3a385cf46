"""The handlers' options as typed keyword arguments, for type checkers and IDEs.

The options table (``options.COMMON`` and each service's ``options``) stays the single
source of truth at run time: it parses, defaults and documents every option. These
TypedDicts only describe it to tools (``SamsaraHandler(url=..., <completion>)``);
``tests/test_option_types.py`` fails when a name here and a name in the table differ, so
they cannot drift. Values are the Python types a program passes; dictConfig and the
environment may also give text, which the table parses.
"""

from typing import Any, Literal, Mapping, Optional, TypedDict

__all__ = [
    "CommonOptions",
    "InitialStateOptions",
    "JSONOptions",
    "KronosOptions",
    "OTLPOptions",
    "PanoplyOptions",
    "SamsaraOptions",
]


class CommonOptions(TypedDict, total=False):
    """Every handler's options (README: Options)."""

    url: str
    source_id: Optional[str]
    flush_interval: float
    batch_size: int
    max_batch_bytes: int
    min_batch_size: int
    max_queue_size: int
    timeout: float
    compression: Literal["gzip", "none"]
    compression_level: int
    retries: int
    backoff: float
    max_backoff: float
    spool_dir: Optional[str]
    spool_max_bytes: int
    spool_mode: Literal["fallback", "always"]
    close_timeout: float
    verify: bool
    handle_sigterm: bool
    static_fields: Optional[Mapping[str, Any]]


class _HTTPAuthOptions(CommonOptions, total=False):
    headers: Optional[Mapping[str, str]]
    token: Optional[str]
    token_header: str
    token_prefix: Optional[str]


class SamsaraOptions(CommonOptions, total=False):
    event_name: str


class InitialStateOptions(CommonOptions, total=False):
    access_key: str
    bucket_key: str
    bucket_name: Optional[str]
    key: Optional[str]


class PanoplyOptions(CommonOptions, total=False):
    api_key: str
    api_secret: str
    table: str


class KronosOptions(CommonOptions, total=False):
    namespace: Optional[str]
    stream: Optional[str]


class JSONOptions(_HTTPAuthOptions, total=False):
    format: Literal["array", "ndjson", "object"]
    field_names: Optional[Mapping[str, Optional[str]]]
    timestamp_format: Literal["iso", "epoch_ms", "epoch_s", "epoch_ns"]


class OTLPOptions(_HTTPAuthOptions, total=False):
    service_name: Optional[str]
    resource_attributes: Optional[Mapping[str, Any]]
