"""twinctl: the CLI and settings of the model controller (the other packages do the work)."""

__version__ = "0.1.0"
