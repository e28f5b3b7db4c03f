"""The instance library: equipment design data per controller, kept as files."""

from .errors import InstanceError, InvalidInstance, UnknownInstance
from .library import Instance, InstanceLibrary

__all__ = ["Instance", "InstanceLibrary", "InstanceError", "InvalidInstance", "UnknownInstance"]
