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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from .replies import encode_json, envelope_parts

__all__ = ["Outbox", "Stored", "outbox_stream"]

_APPEND = """
local existing = redis.call('HGET', KEYS[3], ARGV[1])
if existing then
  return {0, tonumber(existing)}
end
local seq = redis.call('INCR', KEYS[2]) - 1
redis.call('HSET', KEYS[3], ARGV[1], seq)
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[6])
local payload = ARGV[2] .. seq .. ARGV[3]
if ARGV[5] == '' then
  redis.call('XADD', KEYS[1], '*', 't', ARGV[4], 'p', payload)
else
  redis.call('XADD', KEYS[1], '*', 't', ARGV[4], 'p', payload, 'c', ARGV[5])
end
return {1, seq}
"""


def outbox_stream(controller: str) -> str:
    return f"twin:{controller}:outbox"


@dataclass(frozen=True)
class Stored:
    """What :meth:`Outbox.put` did: the reply's seq, and whether it was new."""

    seq: int
    new: bool


class Outbox:
    """Writes replies of any controller into its outbox stream (workers and ingress)."""

    def __init__(self, client: redis.Redis, *, ttl: int = 86_400) -> None:
        self.redis = client
        self.ttl = ttl
        self._append = client.register_script(_APPEND)

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
        base = f"twin:{controller}:req:{request_id}"
        new, seq = self._append(
            keys=[outbox_stream(controller), f"{base}:seq", f"{base}:keys"],
            args=[key, head, tail, topic, correlation or "", self.ttl],
        )
        return Stored(seq=int(seq), new=bool(new))

    def put_plain(self, *, controller: str, topic: str, fields: dict[str, Any]) -> None:
        """Store a message that belongs to no request (the ``errors`` topic)."""
        self.redis.xadd(outbox_stream(controller), {"t": topic, "p": encode_json(fields)})

    def pending(self, controller: str) -> int:
        """How many replies wait for the broker's PUBACK."""
        return int(self.redis.xlen(outbox_stream(controller)))
