"""The package version, in a module of its own so services can import it at load time."""

__version__ = "0.1.0"
