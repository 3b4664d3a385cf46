"""Batching logging handlers that ship records to event-ingestion services."""

from .handler import BatchingHandler
from .services.initialstate import InitialStateHandler
from .services.json import JSONHandler
from .services.kronos import KronosHandler
from .services.panoply import PanoplyHandler
from .services.samsara import SamsaraHandler

__version__ = "0.1.0"

__all__ = [
    "BatchingHandler",
    "InitialStateHandler",
    "JSONHandler",
    "KronosHandler",
    "PanoplyHandler",
    "SamsaraHandler",
]
