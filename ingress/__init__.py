"""The MQTT side of the controller: receive, check, answer errors, enqueue, ack."""

from .commands import Command, check_fields, parse_command
from .errors import (
    CommandError,
    CommandNotPermitted,
    DuplicateId,
    InvalidCommand,
    InvalidJson,
    TooLarge,
)

__all__ = ["Command", "check_fields", "parse_command", "CommandError", "CommandNotPermitted",
           "DuplicateId", "InvalidCommand", "InvalidJson", "TooLarge"]
