"""The services one collector serves, in routing order.

To add one: write a module like samsara.py (a class with ``name``, ``routes`` and a
``__init__(store)``; methods take a ServiceRequest and return a ServiceReply) and list its
class here. A class with a ``prefix`` also serves every path below it.
"""

from .initialstate import InitialState
from .json import GenericJSON
from .kronos import Kronos
from .otlp import OTLP
from .panoply import Panoply
from .samsara import Samsara

__all__ = ["SERVICES"]

SERVICES = (Samsara, InitialState, Kronos, GenericJSON, OTLP, Panoply)
