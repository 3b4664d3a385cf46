"""Batching logging handlers that ship records to event-ingestion services."""

from .exporter import ExportResult
from .handler import BatchingHandler
from .services.initialstate import InitialStateHandler
from .services.json import JSONHandler
from .services.kronos import KronosHandler
from .services.otlp import OTLPHandler
from .services.panoply import PanoplyHandler
from .services.samsara import SamsaraHandler
from .version import __version__

__all__ = [
    "__version__",
    "BatchingHandler",
    "ExportResult",
    "InitialStateHandler",
    "JSONHandler",
    "KronosHandler",
    "OTLPHandler",
    "PanoplyHandler",
    "SamsaraHandler",
]
