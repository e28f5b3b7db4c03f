"""The models of the library; importing this package registers them all."""

from . import pump  # noqa: F401
