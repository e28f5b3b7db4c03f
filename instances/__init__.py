"""The instance library: equipment design data per controller, kept as files."""

from .errors import InstanceError, InvalidInstance, UnknownInstance
from .library import SHIPPED_INSTANCES, Instance, InstanceLibrary

__all__ = ["SHIPPED_INSTANCES", "Instance", "InstanceLibrary", "InstanceError", "InvalidInstance",
           "UnknownInstance"]
