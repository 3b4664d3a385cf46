"""Local development collector: one HTTP server speaking Samsara, Initial State, Panoply,
Kronos and plain JSON, storing what it accepts in SQLite so handlers can be tested offline.
"""

from .server import Collector

__all__ = ["Collector"]
