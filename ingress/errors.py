"""Errors of the ingress: what is wrong with a command before it reaches the libraries.

Tree::

    modellib.CodedError
    └── CommandError            base; ``request_id`` is set when the id is known
        ├── InvalidJson         code ``invalid_json``
        ├── InvalidCommand      code ``invalid_command`` (no/bad id, unknown cmd, …)
        ├── TooLarge            code ``too_large``
        ├── DuplicateId         code ``duplicate_id``
        ├── Overloaded          code ``limit_exceeded``: too many jobs waiting
        ├── UnknownJob          code ``unknown_job``: ``stop``/``set`` of no such job
        ├── LimitExceeded       code ``limit_exceeded``: above a deployment limit
        │                       (elements, steps, series, jobs of one orchestrator)
        └── CommandNotPermitted code ``not_permitted``: outside the deployment policy
            └── SignatureRefused  unsigned, badly signed or stale (signing on)
"""

from __future__ import annotations

from typing import Any

from modellib.errors import CodedError

__all__ = ["CommandError", "InvalidJson", "InvalidCommand", "TooLarge", "DuplicateId",
           "CommandNotPermitted", "Overloaded", "UnknownJob", "LimitExceeded",
           "SignatureRefused"]


class CommandError(CodedError):
    """Base of the ingress's errors."""

    def __init__(
        self, message: str, *, path: str | None = None, request_id: str | None = None,
        **data: Any,
    ) -> None:
        super().__init__(message, path=path, **data)
        self.request_id = request_id


class InvalidJson(CommandError):
    code = "invalid_json"


class InvalidCommand(CommandError):
    code = "invalid_command"


class TooLarge(CommandError):
    code = "too_large"


class DuplicateId(CommandError):
    code = "duplicate_id"


class CommandNotPermitted(CommandError):
    code = "not_permitted"


class Overloaded(CommandError):
    code = "limit_exceeded"

    def as_reply(self) -> dict[str, Any]:
        return {**super().as_reply(), "queued": self.data.get("queued")}


class UnknownJob(CommandError):
    code = "unknown_job"


class LimitExceeded(CommandError):
    """Above one of the deployment's limits; the reply carries ``limit`` (and, for the
    jobs of one orchestrator, ``running``)."""

    code = "limit_exceeded"

    def as_reply(self) -> dict[str, Any]:
        extra: dict[str, Any] = {k: self.data[k] for k in ("limit", "running")
                                 if k in self.data}
        return {**super().as_reply(), **extra}


class SignatureRefused(CommandNotPermitted):
    """A command that is unsigned, badly signed, or too old (``path`` ``signature`` or
    ``ts``). ``verified`` says whether its bytes were authentic: only then are its
    MQTT 5 response topic and correlation data used for the refusal."""

    def __init__(self, message: str, *, path: str = "signature",
                 request_id: str | None = None, verified: bool = False) -> None:
        super().__init__(message, path=path, request_id=request_id)
        self.verified = verified
