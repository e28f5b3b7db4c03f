"""Signed commands: an HMAC-SHA256 that binds a command's bytes to where it was sent
and where its replies go, checked before anything else.

With a secret set (``TWIN_COMMAND_SECRET`` / ``TWIN_COMMAND_SECRET_FILE``, one key
without a name) or named keys (``TWIN_COMMAND_KEYS_FILE``, one orchestrator a key),
every command must be signed. What is signed is the *signing string*::

    <command topic> LF <response topic, or nothing> LF <the command's JSON bytes>

(LF is one byte 0x0A; the topics in UTF-8, exactly as published). So a signed
command is valid only on the topic it was published to (this controller's, or its
group's) and only with the response topic it was sent with: replayed to another
controller, or with a response topic of the attacker's, it no longer matches.
No JSON canonicalization is needed: the signer signs the bytes it sends.

The signature, ``[<key name>:]<64 hex digits>``, goes in one of two places:

- **MQTT 5**: the user property ``signature``; the JSON is the whole payload;
- **any protocol** (MQTT 3.1.1 has no user properties): the payload is
  ``[<key name>:]<64 hex digits> <command JSON>``, the JSON after the one space.

A named key names the orchestrator (its jobs, its limits, who may stop them): a
name proven by the key, which no other client can take. A signed command must also
carry ``ts``, the time it was sent (ISO 8601 with a time zone, or unix seconds),
at most ``TWIN_SIGNATURE_MAX_AGE`` old and :data:`FUTURE_SKEW_S` ahead of the
controller's clock; a replay inside that window is refused by the duplicate-id
guard (ids are remembered for ``TWIN_DUPLICATE_TTL``, which is longer).

Without keys, a ``signature`` property is ignored and a signature prefix is
stripped: a client that signs can talk to a controller that does not check.

The module has no I/O: clients use :func:`sign_command`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.settings import KEY_NAME_RE

from .errors import SignatureRefused

__all__ = ["SIGNATURE_PROPERTY", "KEY_NAME", "Keys", "Verified", "signing_string", "sign",
           "signature_of", "signed_payload", "sign_command", "split_signature", "verify",
           "check_ts"]

SIGNATURE_PROPERTY = "signature"
"""The MQTT 5 user property that carries the signature."""

FUTURE_SKEW_S = 30.0
"""How far ahead of the controller's clock a signed command's ``ts`` may be."""


KEY_NAME = re.compile(KEY_NAME_RE.encode() + rb"\Z")
"""A key's name, whole (bytes)."""
_SIGNATURE = re.compile(rb"^(?:(" + KEY_NAME_RE.encode() + rb"):)?([0-9A-Fa-f]{64})\Z")
_PREFIX = re.compile(rb"^((?:" + KEY_NAME_RE.encode() + rb":)?[0-9A-Fa-f]{64}) ")
_HOW = ("sign '<command topic>\\n<response topic or nothing>\\n<command JSON>' with "
        "HMAC-SHA256 and put '[<key name>:]<64 hex digits>' in the MQTT 5 user property "
        "'signature', or send '[<key name>:]<64 hex digits> <command JSON>' "
        "(docs/protocol.md, 'Signed commands')")


@dataclass(frozen=True)
class Keys:
    """The keys commands may be signed with: one without a name, and named ones."""

    unnamed: bytes | None = field(default=None, repr=False)
    named: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def on(self) -> bool:
        """Whether commands must be signed."""
        return self.unnamed is not None or bool(self.named)


@dataclass(frozen=True)
class Verified:
    """A command whose signature was checked (or not needed)."""

    body: bytes
    """the command's JSON bytes"""
    key: str | None = None
    """the name of the key it was signed with (None: the unnamed one, or unsigned)"""


def signing_string(payload: bytes, *, topic: str, response_topic: str | None = None) -> bytes:
    """What is signed: the command topic, the response topic (or nothing), the JSON bytes."""
    return (topic.encode("utf-8") + b"\n" + (response_topic or "").encode("utf-8") + b"\n"
            + payload)


def sign(secret: bytes, payload: bytes, *, topic: str, response_topic: str | None = None) -> str:
    """The HMAC-SHA256 of the signing string of ``payload``, 64 lowercase hex digits."""
    return hmac.new(secret, signing_string(payload, topic=topic, response_topic=response_topic),
                    hashlib.sha256).hexdigest()


def signature_of(secret: bytes, payload: bytes, *, topic: str,
                 response_topic: str | None = None, key: str | None = None) -> str:
    """The signature as carried: ``[<key>:]<hex>``."""
    digest = sign(secret, payload, topic=topic, response_topic=response_topic)
    return f"{key}:{digest}" if key else digest


def signed_payload(secret: bytes, payload: bytes, *, topic: str,
                   response_topic: str | None = None, key: str | None = None) -> bytes:
    """``payload`` in the form any MQTT version can carry: ``[<key>:]<hex> <payload>``."""
    return (signature_of(secret, payload, topic=topic, response_topic=response_topic,
                         key=key).encode("ascii") + b" " + payload)


def sign_command(secret: bytes, command: dict[str, Any], *, topic: str,
                 response_topic: str | None = None, key: str | None = None,
                 now: float | None = None) -> bytes:
    """A command ready to publish on ``topic`` to a controller that checks signatures:
    ``ts`` added when missing (unix seconds), encoded as JSON, in the prefix form."""
    body = dict(command)
    body.setdefault("ts", round(time.time() if now is None else now, 3))
    return signed_payload(secret, json.dumps(body).encode("utf-8"), topic=topic,
                          response_topic=response_topic, key=key)


def split_signature(payload: bytes) -> tuple[str | None, bytes]:
    """``(signature, command bytes)`` of a payload in the prefix form; ``(None, payload)``
    for any other payload (a JSON command starts with ``{``)."""
    found = _PREFIX.match(payload[:130])
    if found is None:
        return None, payload
    return found.group(1).decode("ascii"), payload[found.end():]


def _parse_signature(text: str) -> tuple[str | None, str]:
    found = _SIGNATURE.match(text.strip().encode("utf-8", "replace"))
    if found is None:
        raise SignatureRefused(
            f"the signature must be '[<key name>:]<64 hex digits>' (HMAC-SHA256), got "
            f"{len(text)} characters {text[:16]!r}{'…' if len(text) > 16 else ''}")
    name = found.group(1)
    return (name.decode("ascii") if name else None), found.group(2).decode("ascii").lower()


def verify(keys: Keys, payload: bytes, prop: str | None, *, topic: str,
           response_topic: str | None = None) -> Verified:
    """Check the signature of one command message published on ``topic``.

    ``prop`` is the ``signature`` user property (MQTT 5), if any. Raises
    :class:`SignatureRefused` (``not_permitted``, path ``signature``) when keys are set
    and the command is unsigned, names an unknown key, or its signature does not match.
    """
    prefixed, body = split_signature(payload)
    if not keys.on:
        return Verified(body)
    if prefixed is not None and prop is not None:
        raise SignatureRefused(
            "the command is signed twice (a 'signature' user property and a signature "
            "before the JSON): use one of the two")
    if prefixed is None and prop is None:
        raise SignatureRefused(
            f"this controller accepts signed commands only and this one carries no "
            f"signature: {_HOW}")
    name, given = _parse_signature(prop if prop is not None else str(prefixed))
    signed = payload if prop is not None else body
    if name is None:
        secret = keys.unnamed
        if secret is None:
            raise SignatureRefused(
                "the signature names no key and this controller has named keys only: "
                "sign with your key and send '<key name>:<64 hex digits>'")
    else:
        secret = keys.named.get(name)
        if secret is None:
            raise SignatureRefused(
                f"the signature names key {name!r}, which this controller does not have "
                "(TWIN_COMMAND_KEYS_FILE): use the name your key was given")
    if not hmac.compare_digest(sign(secret, signed, topic=topic,
                                    response_topic=response_topic), given):
        where = "the whole payload" if prop is not None else "the bytes after the space"
        raise SignatureRefused(
            f"the signature does not match the command: sign '{topic}\\n"
            f"{response_topic or ''}\\n' followed by {where} with HMAC-SHA256 and "
            f"{'key ' + repr(name) if name else 'this controller' + chr(39) + 's secret'}; a "
            "command changed in transit, sent to another controller or with another "
            "response topic than it was signed for, or signed with another key, is refused")
    return Verified(body, name)


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
