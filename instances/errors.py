"""Errors of the instance library.

Tree::

    modellib.CodedError
    └── InstanceError          base of this package's errors
        ├── UnknownInstance    code ``unknown_instance``
        └── InvalidInstance    code ``invalid_argument``: a bad instance file or object
"""

from __future__ import annotations

from collections.abc import Iterable

from modellib.errors import CodedError, did_you_mean

__all__ = ["InstanceError", "UnknownInstance", "InvalidInstance"]


class InstanceError(CodedError):
    """Base of the instance library's errors."""


class UnknownInstance(InstanceError):
    code = "unknown_instance"

    def __init__(self, name: str, known: Iterable[str], *, path: str | None = None) -> None:
        super().__init__(f"no instance {name!r}{did_you_mean(name, known)}", path=path)


class InvalidInstance(InstanceError):
    code = "invalid_argument"
