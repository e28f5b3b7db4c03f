"""The Redis outbox: every reply is stored here before it is sent.

One Redis stream per controller holds the replies in the order they were made.
Each reply of a request gets its ``seq`` from one counter per request, assigned
atomically with the append (a Lua script), and each reply has a *logical key*
(``ack``, ``final``, ``data:17``…): a second copy of the same logical reply —
a task that ran twice after a worker crash — returns the seq already given and
appends nothing. So ``(id, seq)`` is gapless and never doubled.

The publisher (:mod:`tasks.publisher`) drains the stream to MQTT and deletes an
entry only after the broker's PUBACK.

Keys (``{cid}`` is the controller id)::

    twin:{cid}:outbox            stream of {t: topic, p: payload, c: correlation hex}
    twin:{cid}:req:{id}:seq      next seq of request id (INCR)
    twin:{cid}:req:{id}:keys     hash logical key -> seq
    twin:{cid}:id:{id}           the duplicate-id guard (SET NX, 24 h)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import redis

from .replies import encode_json, envelope_parts, timestamp

__all__ = ["Outbox", "Stored", "First", "outbox_stream"]

_APPEND_FN = """
local function append(key, head, tail)
  local existing = redis.call('HGET', KEYS[3], key)
  if existing then
    return {0, tonumber(existing)}
  end
  local seq = redis.call('INCR', KEYS[2]) - 1
  redis.call('HSET', KEYS[3], key, seq)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  local payload = head .. seq .. tail
  if ARGV[3] == '' then
    redis.call('XADD', KEYS[1], '*', 't', ARGV[2], 'p', payload)
  else
    redis.call('XADD', KEYS[1], '*', 't', ARGV[2], 'p', payload, 'c', ARGV[3])
  end
  return {1, seq}
end
"""
# KEYS: stream, seq counter, logical-key hash; ARGV: key, topic, correlation, ttl, head, tail
_APPEND = _APPEND_FN + "return append(ARGV[1], ARGV[5], ARGV[6])"
# … plus KEYS[4] the duplicate-id guard; ARGV[7..11]: redelivered flag, then the
# duplicate_id error's key, head and tail; ARGV[11] the guard's value.
# Returns {1, seq} for a new id, {2, seq} for a repeated one, {3, -1} for a re-delivery.
_FIRST = _APPEND_FN + """
if redis.call('SET', KEYS[4], ARGV[11], 'NX', 'EX', ARGV[4]) then
  local r = append(ARGV[1], ARGV[5], ARGV[6])
  return {1, r[2]}
end
if ARGV[7] == '1' then
  return {3, -1}
end
local r = append(ARGV[8], ARGV[9], ARGV[10])
return {2, r[2]}
"""


def outbox_stream(controller: str) -> str:
    return f"twin:{controller}:outbox"


@dataclass(frozen=True)
class Stored:
    """What :meth:`Outbox.put` did: the reply's seq, and whether it was new."""

    seq: int
    new: bool


@dataclass(frozen=True)
class First:
    """What :meth:`Outbox.put_first` did."""

    outcome: str
    """``new`` (the reply was stored), ``duplicate`` (the id was used before: the
    duplicate error was stored instead) or ``redelivered`` (nothing stored)"""
    seq: int


class Outbox:
    """Writes replies of any controller into its outbox stream (workers and ingress)."""

    def __init__(self, client: redis.Redis, *, ttl: int = 86_400) -> None:
        self.redis = client
        self.ttl = ttl
        self._append = client.register_script(_APPEND)
        self._first = client.register_script(_FIRST)

    def put(
        self,
        *,
        controller: str,
        request_id: str,
        key: str,
        rtype: str,
        fields: dict[str, Any],
        topic: str,
        correlation: str | None = None,
    ) -> Stored:
        """Store one reply of ``request_id`` under logical ``key``; idempotent per key."""
        head, tail = envelope_parts(request_id, controller, rtype, fields)
        new, seq = self._append(
            keys=self._keys(controller, request_id),
            args=[key, topic, correlation or "", self.ttl, head, tail],
        )
        return Stored(seq=int(seq), new=bool(new))

    @staticmethod
    def _keys(controller: str, request_id: str) -> list[str]:
        base = f"twin:{controller}:req:{request_id}"
        return [outbox_stream(controller), f"{base}:seq", f"{base}:keys"]

    def put_first(
        self,
        *,
        controller: str,
        request_id: str,
        key: str,
        rtype: str,
        fields: dict[str, Any],
        topic: str,
        duplicate: dict[str, Any],
        redelivered: bool = False,
        correlation: str | None = None,
    ) -> First:
        """The duplicate-id guard and the first reply of a request, in one round trip.

        If ``request_id`` is new on this controller (``SET NX`` with the TTL) the
        reply is stored; if it was used before, the ``duplicate`` error fields are
        stored instead (continuing the id's seq), unless the message is a QoS 1
        re-delivery (``redelivered``), which gets nothing.
        """
        head, tail = envelope_parts(request_id, controller, rtype, fields)
        dhead, dtail = envelope_parts(request_id, controller, "error", duplicate)
        outcome, seq = self._first(
            keys=[*self._keys(controller, request_id), f"twin:{controller}:id:{request_id}"],
            args=[key, topic, correlation or "", self.ttl, head, tail,
                  "1" if redelivered else "0", f"duplicate:{uuid.uuid4().hex}", dhead, dtail,
                  timestamp()],
        )
        names = {1: "new", 2: "duplicate", 3: "redelivered"}
        return First(outcome=names[int(outcome)], seq=int(seq))

    def put_plain(self, *, controller: str, topic: str, fields: dict[str, Any]) -> None:
        """Store a message that belongs to no request (the ``errors`` topic)."""
        self.redis.xadd(outbox_stream(controller), {"t": topic, "p": encode_json(fields)})

    def pending(self, controller: str) -> int:
        """How many replies wait for the broker's PUBACK."""
        return int(self.redis.xlen(outbox_stream(controller)))
