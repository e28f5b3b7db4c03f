"""The Redis outbox: every reply is stored here before it is sent.

One Redis stream per controller holds the replies in the order they were made.
Each reply of a request gets its ``seq`` from one counter per request, assigned
atomically with the append (a Lua script), and each reply has a *logical key*
(``ack``, ``final``, ``data:17``…): a second copy of the same logical reply —
a task that ran twice after a worker crash — returns the seq already given and
appends nothing. So ``(id, seq)`` is gapless and never doubled.

The publisher (:mod:`ingress.publisher`) drains the stream to MQTT and deletes an
entry only after the broker's PUBACK.

Keys (``{cid}`` is the controller id)::

    twin:{cid}:outbox            stream of {t: topic, p: payload, c: correlation hex}
    twin:{cid}:req:{id}          hash: everything kept of request id, for 24 h after its
                                 last reply (one key per command, :func:`request_key`):
                                   "#"        its next seq (HINCRBY)
                                   "!"        the duplicate-id guard (HSETNX: the token
                                              of the handling that claimed the id)
                                   "@"        its orchestrator, while its job counts
                                              (:meth:`tasks.jobboard.JobBoard.add_client_job`)
                                   ">"        its job's Celery task, arguments and options
                                              (JSON, :mod:`ingress.jobspec`), while the
                                              job is queued or running: to send it again
                                              if its message vanishes (ingress/vanished.py)
                                   <logical key>  the seq of that reply (``ack``,
                                              ``final``, ``data:17``…)
    twin:{cid}:outbox:data       stream ids of waiting data replies, oldest first
    twin:{cid}:outbox:dropped    data replies dropped (outbox full), by request id
    twin:{cid}:outbox:dead       replies that could never be sent, with the reason
    twin:{cid}:id:{id}, twin:{cid}:req:{id}:seq
                                 the guard and seq of versions before one key per
                                 request: read by the guard, never written
                                 (:func:`legacy_keys`)

With a bound (``max_entries``), a full outbox drops its oldest waiting ``data``
reply to make room — never an ``ack``, ``result`` or ``error`` — and the next
reply of that request carries ``"dropped_data": n``: the loss is never silent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import redis

from .replies import encode_json, envelope_parts, timestamp

__all__ = ["Outbox", "Stored", "First", "JobKeys", "outbox_stream", "dead_letter_stream",
           "request_key", "legacy_keys", "CLIENT_FIELD", "SPEC_FIELD", "APPEND_FN"]

# KEYS: 1 stream, 2 the request's hash (request_key), 3 data index (list of "sid|id"),
#       4 dropped counts by request
# ARGV: 1 request id, 2 topic, 3 correlation hex, 4 ttl, 5 max entries (0: no bound),
#       6 logical key, 7 head, 8 tail, 9 "1" for a data reply;
#       (put_first) 10 redelivered flag, 11 duplicate error key, 12 its head, 13 its tail,
#       14 the guard's value: a token of this handling, so that a retry after a lost
#          answer finds its own claim (and the logical key its own reply)
# Logical keys never start with "#", "!", "@" or ">" (the request hash's own fields).
APPEND_FN = """
local function append(key, head, tail, is_data)
  if key ~= '' then
    local existing = redis.call('HGET', KEYS[2], key)
    if existing then
      return {0, tonumber(existing)}
    end
  end
  local max = tonumber(ARGV[5])
  if max > 0 and redis.call('XLEN', KEYS[1]) >= max then
    -- full: drop the oldest data reply still waiting; never an ack, result or error
    while true do
      local item = redis.call('LPOP', KEYS[3])
      if not item then break end
      local sep = string.find(item, '|', 1, true)
      if redis.call('XDEL', KEYS[1], string.sub(item, 1, sep - 1)) == 1 then
        redis.call('HINCRBY', KEYS[4], string.sub(item, sep + 1), 1)
        break
      end
    end
  end
  local seq = redis.call('HINCRBY', KEYS[2], '#', 1) - 1
  if key ~= '' then
    redis.call('HSET', KEYS[2], key, seq)
  end
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  local extra = ''
  local lost = redis.call('HGET', KEYS[4], ARGV[1])
  if lost then
    extra = ',"dropped_data":' .. lost
    redis.call('HDEL', KEYS[4], ARGV[1])
  end
  local payload = head .. seq .. extra .. tail
  local sid
  if ARGV[3] == '' then
    sid = redis.call('XADD', KEYS[1], '*', 't', ARGV[2], 'p', payload)
  else
    sid = redis.call('XADD', KEYS[1], '*', 't', ARGV[2], 'p', payload, 'c', ARGV[3])
  end
  if is_data == '1' then
    redis.call('RPUSH', KEYS[3], sid .. '|' .. ARGV[1])
    if max > 0 then
      redis.call('LTRIM', KEYS[3], -max, -1)
    end
  end
  return {1, seq}
end
"""
_APPEND = APPEND_FN + "return append(ARGV[6], ARGV[7], ARGV[8], ARGV[9])"
# The final reply and the end of its job in one round trip. KEYS 5-7: the job board's
# running jobs (hash), heartbeats (sorted set) and the job's steering hash; ARGV 10: the
# prefix of the orchestrators' sorted sets; 11, 12: the head and tail of the reply to
# store instead if a stop was requested ('': none).
_FINAL = APPEND_FN + """
local r
if ARGV[11] ~= '' and redis.call('HEXISTS', KEYS[7], 'stop') == 1 then
  r = append(ARGV[6], ARGV[11], ARGV[12], '0')
else
  r = append(ARGV[6], ARGV[7], ARGV[8], ARGV[9])
end
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('DEL', KEYS[7])
redis.call('HDEL', KEYS[2], '>')
local client = redis.call('HGET', KEYS[2], '@')
if client then
  redis.call('HDEL', KEYS[2], '@')
  redis.call('ZREM', ARGV[10] .. client, ARGV[1])
end
return r
"""
# Returns {1, seq} for a new id, {2, seq} for a repeated one, {3, -1} for a re-delivery.
# (put_first) KEYS 5: the job board's hash of jobs; 6, 7: the guard key and seq counter
# of versions before the one-key layout (legacy_keys: an id used within 24 h before an
# upgrade stays used, and its seq goes on); ARGV 15: the job's entry ('' none), 16: what
# is kept of the job to send it again (SPEC_FIELD, '' none)
_FIRST = APPEND_FN + """
local legacy = redis.call('EXISTS', KEYS[6]) == 1
if legacy and redis.call('HEXISTS', KEYS[2], '#') == 0 then
  local next_seq = redis.call('GET', KEYS[7])
  if next_seq then
    redis.call('HSET', KEYS[2], '#', next_seq)
  end
end
if not legacy and (redis.call('HSETNX', KEYS[2], '!', ARGV[14]) == 1
    or redis.call('HGET', KEYS[2], '!') == ARGV[14]) then
  local r = append(ARGV[6], ARGV[7], ARGV[8], ARGV[9])
  if ARGV[15] ~= '' then
    redis.call('HSET', KEYS[5], ARGV[1], ARGV[15])
  end
  if ARGV[16] ~= '' then
    redis.call('HSET', KEYS[2], '>', ARGV[16])
  end
  return {1, r[2]}
end
if ARGV[10] == '1' then
  return {3, -1}
end
local r = append(ARGV[11], ARGV[12], ARGV[13], '0')
return {2, r[2]}
"""


def request_key(controller: str, request_id: str) -> str:
    """The one key kept per request: its seq, duplicate-id guard, orchestrator and the
    seq of each logical reply (see the module's docstring)."""
    return f"twin:{controller}:req:{request_id}"


def legacy_keys(controller: str, request_id: str) -> tuple[str, str]:
    """The duplicate-id guard and seq counter of versions before one key per request
    (keys of their own, 24 h): still read, never written, so that no id used in the
    24 h before an upgrade can be used again after it, and its seq goes on. (Remove
    once no such key can be left: 24 h after every controller runs this version.)"""
    return f"twin:{controller}:id:{request_id}", f"twin:{controller}:req:{request_id}:seq"


CLIENT_FIELD = "@"
"""The field of :func:`request_key` naming a counted job's orchestrator."""
SPEC_FIELD = ">"
"""The field of :func:`request_key` keeping a queued or running job's Celery message
(:mod:`ingress.jobspec`), removed with the final reply."""


def outbox_stream(controller: str) -> str:
    return f"twin:{controller}:outbox"


def dead_letter_stream(controller: str) -> str:
    """Replies that could never be sent (ingress/publisher.py), with the reason."""
    return f"twin:{controller}:outbox:dead"


@dataclass(frozen=True)
class JobKeys:
    """Where the job board keeps a job (:meth:`tasks.jobboard.JobBoard.keys_of`): what
    :meth:`Outbox.put_final` removes with the final reply."""

    keys: tuple[str, str, str]
    """running jobs, heartbeats, the job's steering (its orchestrator is in the request's
    hash, :data:`CLIENT_FIELD`)"""
    client_prefix: str
    """the orchestrators' sorted sets are this prefix and the orchestrator's name"""


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

    def __init__(self, client: redis.Redis, *, ttl: int = 86_400, max_entries: int = 0) -> None:
        """``max_entries`` bounds the stream (0: unbounded): when it is full, the oldest
        waiting ``data`` reply is dropped to make room, and the next reply of its
        request says how many were (``dropped_data``)."""
        self.redis = client
        self.ttl = ttl
        self.max_entries = max_entries
        self._append = client.register_script(_APPEND)
        self._first = client.register_script(_FIRST)
        self._final = client.register_script(_FINAL)

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
        """Store one reply of ``request_id`` under logical ``key``; idempotent per key.

        ``key=""`` stores without a logical key (no bookkeeping per reply): for the
        ``data`` of a real-time run, which is never run twice and may be endless."""
        head, tail = envelope_parts(request_id, controller, rtype, fields)
        new, seq = self._append(
            keys=self._keys(controller, request_id),
            args=self._args(request_id, topic, correlation, key, head, tail, rtype),
        )
        return Stored(seq=int(seq), new=bool(new))

    def put_final(
        self,
        *,
        controller: str,
        request_id: str,
        rtype: str,
        fields: dict[str, Any],
        topic: str,
        correlation: str | None = None,
        job: JobKeys,
        if_stopped: dict[str, Any] | None = None,
    ) -> Stored:
        """The request's final reply (logical key ``final``, stored once) and the end of
        its job on the job board (:meth:`tasks.jobboard.JobBoard.end`), in one round trip.

        ``if_stopped``: the ``result`` fields to store instead when a ``stop`` of the job
        was requested (a short job checks for a stop here, not before it runs)."""
        head, tail = envelope_parts(request_id, controller, rtype, fields)
        shead, stail = (envelope_parts(request_id, controller, "result", if_stopped)
                        if if_stopped is not None else ("", ""))
        new, seq = self._final(
            keys=[*self._keys(controller, request_id), *job.keys],
            args=[*self._args(request_id, topic, correlation, "final", head, tail, rtype),
                  job.client_prefix, shead, stail],
        )
        return Stored(seq=int(seq), new=bool(new))

    @staticmethod
    def _keys(controller: str, request_id: str) -> list[str]:
        stream = outbox_stream(controller)
        return [stream, request_key(controller, request_id), f"{stream}:data",
                f"{stream}:dropped"]

    def _args(self, request_id: str, topic: str, correlation: str | None, key: str,
              head: str, tail: str, rtype: str) -> list[Any]:
        return [request_id, topic, correlation or "", self.ttl, self.max_entries, key, head,
                tail, "1" if rtype == "data" else "0"]

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
        token: str = "",
        job: tuple[str, str, str] | None = None,
        spec: str = "",
    ) -> First:
        """The duplicate-id guard and the first reply of a request, in one round trip.

        If ``request_id`` is new on this controller (``HSETNX`` of its guard) the
        reply is stored; if it was used before, the ``duplicate`` error fields are
        stored instead (continuing the id's seq), unless the message is a QoS 1
        re-delivery (``redelivered``), which gets nothing. ``token`` names this
        handling of the command: calling again with the same token (a retry after
        Redis went away mid-call) is "new" again and stores nothing twice. ``job``:
        the entry of the job the command queues, ``(hash, request id, JSON)`` of
        :meth:`tasks.jobboard.JobBoard.waiting`, written with a new reply, and ``spec``
        what is kept of that job to send it again (:data:`SPEC_FIELD`).
        """
        head, tail = envelope_parts(request_id, controller, rtype, fields)
        dhead, dtail = envelope_parts(request_id, controller, "error", duplicate)
        keys = self._keys(controller, request_id)
        outcome, seq = self._first(
            keys=[*keys, job[0] if job else keys[1], *legacy_keys(controller, request_id)],
            args=[*self._args(request_id, topic, correlation, key, head, tail, rtype),
                  "1" if redelivered else "0", f"duplicate:{uuid.uuid4().hex}", dhead, dtail,
                  token or f"{timestamp()} {uuid.uuid4().hex}", job[2] if job else "", spec],
        )
        names = {1: "new", 2: "duplicate", 3: "redelivered"}
        return First(outcome=names[int(outcome)], seq=int(seq))

    def put_plain(self, *, controller: str, topic: str, fields: dict[str, Any]) -> None:
        """Store a message that belongs to no request (the ``errors`` topic)."""
        self.redis.xadd(outbox_stream(controller), {"t": topic, "p": encode_json(fields)})

    def finished(self, controller: str, request_ids: list[str]) -> list[bool]:
        """Whether each request's final reply is stored (one pipelined round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for rid in request_ids:
            pipe.hexists(request_key(controller, rid), "final")
        return [bool(found) for found in pipe.execute()]

    def pending(self, controller: str) -> int:
        """How many replies wait for the broker's PUBACK."""
        return int(self.redis.xlen(outbox_stream(controller)))
