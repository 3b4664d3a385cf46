"""Batching logging handlers that ship records to event-ingestion services."""

from .handler import BatchingHandler
from .services.json import JSONHandler

__version__ = "0.1.0"

__all__ = ["BatchingHandler", "JSONHandler"]
