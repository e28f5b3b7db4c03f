"""twinctl: the CLI, the stack runner, the embedded services and the client of the model
controller (on top: imported by none of the packages that do the work)."""

from common import __version__

__all__ = ["__version__"]
