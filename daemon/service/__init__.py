"""The service: wires the rooms below from the settings, and is the one facade the API and the CLI call."""

from .facade import Service

__all__ = ["Service"]
