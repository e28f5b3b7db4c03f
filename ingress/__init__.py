"""The MQTT side of the controller: receive, check, answer errors, enqueue, ack."""

from .commands import Command, check_fields, parse_command
from .errors import (
    CommandError,
    DuplicateId,
    InvalidCommand,
    InvalidJson,
    NotPermitted,
    TooLarge,
)

__all__ = ["Command", "check_fields", "parse_command", "CommandError", "NotPermitted",
           "DuplicateId", "InvalidCommand", "InvalidJson", "TooLarge"]
