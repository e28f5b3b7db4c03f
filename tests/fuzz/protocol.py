"""What PROTOCOL.md fixes that the fuzz test's generators and its oracle both use: the
commands, the ids, the reply types and error codes, and the command size limit of
the fuzzed stack."""

from __future__ import annotations

import re

MAX_BYTES = 64 * 1024
"""``TWIN_MAX_COMMAND_BYTES`` of the fuzzed stack."""

ERROR_CODES = frozenset({
    "invalid_json", "invalid_command", "too_large", "duplicate_id", "not_permitted",
    "unknown_model", "unknown_function", "unknown_instance", "unknown_template",
    "missing_argument", "invalid_argument", "invalid_scenario", "unknown_job",
    "limit_exceeded", "runtime_error", "timeout", "internal_error",
})
"""PROTOCOL.md, "Errors"."""
REPLY_TYPES = frozenset({"ack", "error", "data", "result", "pong", "description"})
FINAL = frozenset({"result", "error", "pong", "description"})
COMMANDS = ("ping", "describe", "run", "call", "stop", "set", "jobs", "put_instance",
            "delete_instance")
WITH_ACK = frozenset({"run", "call", "stop", "set", "put_instance", "delete_instance"})
SUCCESS = {"ping": "pong", "describe": "description"}
USABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""PROTOCOL.md's id, matched against the whole string."""
SNIFFED_ID = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
"""docs/protocol.md: a command too large or not JSON whose bytes contain a
well-formed ``"id": "..."`` gets its error on that id's reply topic."""
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
