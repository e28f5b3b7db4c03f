"""Signed commands: an HMAC-SHA256 of the exact bytes sent, checked before anything else.

With a secret set (``TWIN_COMMAND_SECRET`` or ``TWIN_COMMAND_SECRET_FILE``) every
command must be signed, in one of two places:

- **MQTT 5**: the user property ``signature`` holds ``hex(HMAC-SHA256(secret, payload))``
  of the whole payload, exactly the bytes published;
- **any protocol** (MQTT 3.1.1 has no user properties): the payload is
  ``<64 hex digits> <command JSON>`` — the signature, one space, then the JSON
  command; the signature is over the bytes after the space.

No JSON canonicalization is needed: the signer signs the bytes it sends. A signed
command must also carry ``ts``, the time it was sent (ISO 8601 with a time zone,
or unix seconds), within ``TWIN_SIGNATURE_MAX_AGE`` of the controller's clock; a
replay inside that window is refused by the duplicate-id guard (ids are
remembered for ``TWIN_DUPLICATE_TTL``, which is longer).

Without a secret, a ``signature`` property is ignored and a signature prefix is
stripped: a client that signs can talk to a controller that does not check.

The module has no I/O and no heavy imports: clients use :func:`sign_command`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from .errors import SignatureRefused

__all__ = ["SIGNATURE_PROPERTY", "sign", "signed_payload", "sign_command", "split_signature",
           "verify", "check_ts"]

SIGNATURE_PROPERTY = "signature"
"""The MQTT 5 user property that carries the signature."""

FUTURE_SKEW_S = 30.0
"""How far ahead of the controller's clock a signed command's ``ts`` may be."""

_HEX64 = re.compile(rb"^[0-9A-Fa-f]{64}\Z")
_HOW = ("put hex(HMAC-SHA256(secret, payload bytes)) in the MQTT 5 user property "
        "'signature', or send '<64 hex digits> <command JSON>' (the signature of the "
        "JSON's bytes, one space, the JSON)")


def sign(secret: bytes, payload: bytes) -> str:
    """The signature of ``payload``: HMAC-SHA256 with ``secret``, 64 lowercase hex digits."""
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def signed_payload(secret: bytes, payload: bytes) -> bytes:
    """``payload`` in the form any MQTT version can carry: ``<signature> <payload>``."""
    return sign(secret, payload).encode("ascii") + b" " + payload


def sign_command(secret: bytes, command: dict[str, Any], *, now: float | None = None) -> bytes:
    """A command ready to publish to a controller that checks signatures: ``ts`` added
    when missing (unix seconds), encoded as JSON, in the ``<signature> <json>`` form."""
    body = dict(command)
    body.setdefault("ts", round(time.time() if now is None else now, 3))
    return signed_payload(secret, json.dumps(body).encode("utf-8"))


def split_signature(payload: bytes) -> tuple[str | None, bytes]:
    """``(signature, command bytes)`` of a payload in the ``<signature> <json>`` form;
    ``(None, payload)`` for any other payload (a JSON command starts with ``{``)."""
    if len(payload) > 64 and payload[64:65] == b" " and _HEX64.match(payload[:64]):
        return payload[:64].decode("ascii").lower(), payload[65:]
    return None, payload


def verify(secret: bytes | None, payload: bytes, prop: str | None) -> bytes:
    """Check the signature of one command message; return the command's JSON bytes.

    ``prop`` is the ``signature`` user property (MQTT 5), if any. Raises
    :class:`SignatureRefused` (``not_permitted``, path ``signature``) when a
    ``secret`` is set and the command is unsigned or its signature does not match.
    """
    prefixed, body = split_signature(payload)
    if secret is None:
        return body
    if prefixed is not None and prop is not None:
        raise SignatureRefused(
            "the command is signed twice (a 'signature' user property and a signature "
            "before the JSON): use one of the two")
    if prefixed is None and prop is None:
        raise SignatureRefused(
            f"this controller accepts signed commands only and this one carries no "
            f"signature: {_HOW}")
    if prop is not None:
        given, signed = prop.strip(), payload
        if not _HEX64.match(given.encode("ascii", "replace")):
            raise SignatureRefused(
                f"the 'signature' user property must be 64 hex digits (HMAC-SHA256), got "
                f"{len(given)} characters {given[:16]!r}{'…' if len(given) > 16 else ''}")
        given = given.lower()
    else:
        assert prefixed is not None
        given, signed = prefixed, body
    if not hmac.compare_digest(sign(secret, signed), given):
        where = "of the whole payload" if prop is not None else "of the bytes after the space"
        raise SignatureRefused(
            f"the signature does not match the command: sign the exact bytes sent ({where}) "
            "with HMAC-SHA256 and this controller's secret (TWIN_COMMAND_SECRET); a command "
            "changed in transit, or signed with another secret, is refused")
    return body


def _parse_ts(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and 0 < len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        return parsed.timestamp()
    return None


def check_ts(value: Any, *, max_age: float, request_id: str | None = None,
             now: float | None = None) -> float:
    """The send time of a signed command (unix s); :class:`SignatureRefused` (path ``ts``)
    when it is missing, unreadable, or more than ``max_age`` seconds from ``now``."""
    now = time.time() if now is None else now
    example = datetime.fromtimestamp(round(now), tz=UTC).isoformat()[:19] + "Z"
    if value is None:
        raise SignatureRefused(
            f"a signed command needs 'ts', the time it was sent: ISO 8601 with a time zone "
            f"such as {json.dumps(example)}, or unix seconds such as {round(now)}; it must be "
            f"within {max_age:g} s of this controller's clock", path="ts",
            request_id=request_id, verified=True)
    sent = _parse_ts(value)
    if sent is None:
        raise SignatureRefused(
            f"'ts' must be the time the command was sent, ISO 8601 with a time zone (such as "
            f"{json.dumps(example)}) or unix seconds (such as {round(now)}), got "
            f"{json.dumps(value)[:60]}", path="ts", request_id=request_id, verified=True)
    age = now - sent
    if -age > FUTURE_SKEW_S:
        raise SignatureRefused(
            f"'ts' {json.dumps(value)[:40]} is {-age:.0f} s in the future; this controller "
            f"takes signed commands sent at most {FUTURE_SKEW_S:g} s ahead of its clock (a "
            "command dated later would stay fresh longer than its id is remembered): send "
            "it again with the current time and a new id, and check the sender's clock",
            path="ts", request_id=request_id, verified=True)
    if abs(age) > max_age:
        when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
        raise SignatureRefused(
            f"'ts' {json.dumps(value)[:40]} is {when}; this controller takes signed commands "
            f"sent within {max_age:g} s of its clock (TWIN_SIGNATURE_MAX_AGE): send it again "
            "with the current time and a new id (and check the sender's clock)",
            path="ts", request_id=request_id, verified=True)
    return sent
