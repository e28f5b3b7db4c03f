"""Errors of the model library, and the shape every error of twinctl shares.

Tree::

    CodedError                 (code, message, path, data) -> an ``error`` reply
    ├── NotPermitted           code ``not_permitted``: outside what this deployment runs
    ├── LimitExceeded          code ``limit_exceeded``: above one of its limits
    ├── Expired                code ``expired``: a command's ``ttl`` ran out first
    └── ModelLibError          anything the model library refuses or fails at
        ├── UnknownModel       code ``unknown_model``
        ├── UnknownFunction    code ``unknown_function``
        ├── MissingArgument    code ``missing_argument``
        ├── InvalidArgument    code ``invalid_argument``
        │   ├── UnknownUnit    a unit spelling it cannot read (:mod:`modellib.units`)
        │   └── UnitMismatch   two units of different dimensions
        └── ModelRuntimeError  code ``runtime_error`` (a model failed numerically)

Other packages derive their own base from :class:`CodedError`, so anything that
crosses to the wire needs to catch only ``CodedError``; the two meanings every
layer can hit (``not_permitted``, ``limit_exceeded``, ``expired``) are one class
each, here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, ClassVar

__all__ = [
    "ERROR_CODES",
    "CodedError",
    "NotPermitted",
    "LimitExceeded",
    "Expired",
    "ModelLibError",
    "UnknownModel",
    "UnknownFunction",
    "MissingArgument",
    "InvalidArgument",
    "ModelRuntimeError",
    "did_you_mean",
]


ERROR_CODES = (
    "invalid_json", "invalid_command", "too_large", "duplicate_id", "not_permitted",
    "unknown_model", "unknown_function", "unknown_instance", "unknown_template",
    "missing_argument", "invalid_argument", "invalid_scenario", "unknown_job",
    "unknown_alarm", "expired", "limit_exceeded", "runtime_error", "timeout", "internal_error",
)
"""Every error code of the protocol (PROTOCOL.md, "Errors"); the controller sends no other."""


class CodedError(Exception):
    """An error with a protocol code, a message a person understands and a path."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, path: str | None = None,
                 request_id: str | None = None, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.request_id = request_id
        """the request's id, where the error is found before the command is read whole"""
        self.data = data

    def as_reply(self) -> dict[str, Any]:
        """The fields of the ``error`` reply (without the envelope)."""
        reply: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.path:
            reply["path"] = self.path
        return reply

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, path={self.path!r})"


class NotPermitted(CodedError):
    """A command, mode, model or function this deployment does not run."""

    code = "not_permitted"


class LimitExceeded(CodedError):
    """Above one of the deployment's limits; the reply carries ``limit`` (and, for the
    jobs of one orchestrator, ``running``)."""

    code = "limit_exceeded"

    def as_reply(self) -> dict[str, Any]:
        extra: dict[str, Any] = {k: self.data[k] for k in ("limit", "running")
                                 if k in self.data}
        return {**super().as_reply(), **extra}


class Expired(CodedError):
    """A command whose ``ttl`` ran out before it was handled, or before a worker
    started its job: not run (path ``ttl``)."""

    code = "expired"


class ModelLibError(CodedError):
    """Base of the model library's errors."""


class UnknownModel(ModelLibError):
    code = "unknown_model"

    def __init__(self, name: str, known: Iterable[str], *, path: str | None = None) -> None:
        super().__init__(
            f"no model {name!r}{did_you_mean(name, known)}", path=path, name=name
        )


class UnknownFunction(ModelLibError):
    code = "unknown_function"


class MissingArgument(ModelLibError):
    code = "missing_argument"


class InvalidArgument(ModelLibError):
    code = "invalid_argument"


class ModelRuntimeError(ModelLibError):
    code = "runtime_error"


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest known name, or a list of the choices."""
    choices = sorted(known)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if len(choices) <= 12:
        return f" (known: {', '.join(choices)})" if choices else ""
    return f" (none of the {len(choices)} known is close; the 'describe' command lists them)"
