"""Errors of the ingress: what is wrong with a command before it reaches the libraries.

Tree::

    modellib.CodedError         (``request_id`` is set when the id is known)
    ├── CommandError            base of the errors only a command can have
    │   ├── InvalidJson         code ``invalid_json``
    │   ├── InvalidCommand      code ``invalid_command`` (no/bad id, unknown cmd, …)
    │   ├── TooLarge            code ``too_large``
    │   ├── DuplicateId         code ``duplicate_id``
    │   ├── UnknownJob          code ``unknown_job``: ``stop``/``set`` of no such job
    │   └── UnknownAlarm        code ``unknown_alarm``: ``ack_alarm``… of no live alarm
    ├── modellib.LimitExceeded  code ``limit_exceeded``: above a deployment limit
    │   │                       (elements, steps, series, jobs of one orchestrator)
    │   └── Overloaded          too many jobs waiting (the reply says how many)
    └── modellib.NotPermitted   code ``not_permitted``: outside the deployment policy
        └── SignatureRefused    unsigned, badly signed or stale (signing on)
"""

from __future__ import annotations

from typing import Any

from modellib.errors import CodedError, LimitExceeded, NotPermitted

__all__ = ["CommandError", "InvalidJson", "InvalidCommand", "TooLarge", "DuplicateId",
           "NotPermitted", "Overloaded", "UnknownJob", "UnknownAlarm", "LimitExceeded",
           "SignatureRefused"]


class CommandError(CodedError):
    """Base of the errors only a command can have."""


class InvalidJson(CommandError):
    code = "invalid_json"


class InvalidCommand(CommandError):
    code = "invalid_command"


class TooLarge(CommandError):
    code = "too_large"


class DuplicateId(CommandError):
    code = "duplicate_id"


class Overloaded(LimitExceeded):
    """Too many jobs wait on this controller (``TWIN_MAX_QUEUED``)."""

    def as_reply(self) -> dict[str, Any]:
        return {**super().as_reply(), "queued": self.data.get("queued")}


class UnknownJob(CommandError):
    code = "unknown_job"


class UnknownAlarm(CommandError):
    code = "unknown_alarm"


class SignatureRefused(NotPermitted):
    """A command that is unsigned, badly signed, or too old (``path`` ``signature`` or
    ``ts``). ``verified`` says whether its bytes were authentic: only then are its
    MQTT 5 response topic and correlation data used for the refusal."""

    def __init__(self, message: str, *, path: str = "signature",
                 request_id: str | None = None, verified: bool = False) -> None:
        super().__init__(message, path=path, request_id=request_id)
        self.verified = verified
