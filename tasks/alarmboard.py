"""Live alarms: each alarm's ISA-18.2 state in Redis, and its messages through the outbox.

A live alarm is named by its ``source`` (a real-time job's request id, or
``controller`` for the controller's own health) and its name. Its record in Redis
holds whether the condition is active, whether it was acknowledged, whether it is
shelved (until when), and its last value and limit; its state follows from them
(ISA-18.2 / IEC 62682):

==============  ===========================================================
``normal``      inactive and acknowledged (the record is removed)
``unack_active`` raised, not acknowledged
``ack_active``  raised and acknowledged
``unack_rtn``   cleared (returned to normal) before it was acknowledged
``shelved``     shelved by an operator: no messages until unshelved or its
                shelf ends; raised and cleared still update it, silently
==============  ===========================================================

Every change that an operator must see — ``raised``, ``cleared``, ``acknowledged``,
``shelved``, ``unshelved`` — is one message on ``{prefix}/{cid}/alarms``, stored
in the outbox in the same Lua call that writes the new record, only if the record
is still the one the change was computed from (compare and set: a worker raising
and an ingress acknowledging the same alarm cannot lose either). ``seq`` counts the
controller's alarm messages from 0 with no gap (one counter per controller).

Keys (``{cid}`` the controller)::

    twin:{cid}:alarms       hash "{source}\\x00{alarm}" -> the record (JSON)
    twin:{cid}:alarms:seq   hash "#": the next alarm message's seq
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from .outbox import APPEND_FN, outbox_stream
from .replies import encode_json, timestamp

__all__ = ["AlarmBoard", "Change", "state_of", "transition", "STATES", "EVENTS",
           "alarms_key", "CONTROLLER"]

STATES = ("normal", "unack_active", "ack_active", "unack_rtn", "shelved")
EVENTS = ("raised", "cleared", "acknowledged", "shelved", "unshelved")
CONTROLLER = "controller"
"""the source of the controller's own health alarms"""
_SEQ_TTL = 10 * 365 * 86_400
_TRIES = 20


def alarms_key(controller: str) -> str:
    return f"twin:{controller}:alarms"


def state_of(rec: dict[str, Any] | None) -> str:
    """The ISA-18.2 state of an alarm's record (None: normal)."""
    if rec is None:
        return "normal"
    if rec.get("shelved_until") is not None:
        return "shelved"
    if rec.get("active"):
        return "ack_active" if rec.get("acked") else "unack_active"
    return "normal" if rec.get("acked", True) else "unack_rtn"


@dataclass
class Change:
    """What an event does to an alarm: its new record (None: normal, removed) and
    whether it sends a message."""

    record: dict[str, Any] | None
    send: bool


def transition(rec: dict[str, Any] | None, event: str, fields: dict[str, Any]) -> Change | None:
    """The change ``event`` makes to the alarm whose record is ``rec``; None when it
    changes nothing (a raise of an active alarm, an acknowledgement of one that waits
    for none). ``fields``: the event's value, limit, priority, message, t, and for
    ``shelved`` its ``until`` (unix s)."""
    old = dict(rec or {"active": False, "acked": True})
    new = {**old, **{k: v for k, v in fields.items() if k not in ("until",)}}
    shelved = old.get("shelved_until") is not None
    if event == "raised":
        if old.get("active"):
            return None
        new.update(active=True, acked=False, since=time.time())
    elif event == "cleared":
        if not old.get("active"):
            return None
        new.update(active=False)
    elif event == "acknowledged":
        if shelved or state_of(old) not in ("unack_active", "unack_rtn"):
            return None
        new.update(acked=True)
    elif event == "shelved":
        new.update(shelved_until=float(fields["until"]))
        return Change(new, True)
    elif event == "unshelved":
        if not shelved:
            return None
        new.update(shelved_until=None)
        if new.get("active"):
            new.update(acked=False)  # re-annunciated: an operator must see it again
        return Change(None if state_of(new) == "normal" else new, True)
    else:
        raise ValueError(f"no alarm event {event!r}")
    return Change(None if state_of(new) == "normal" else new, not shelved)


# KEYS: the outbox's four (stream, the alarm seq hash, data index, dropped), 5 the
# alarms hash; ARGV: the outbox's nine (see tasks/outbox.py), 10 the record's field,
# 11 the record expected ("": none), 12 the new record ("": remove), 13 send ("1"/"0").
# Returns {-1, 0} when the record is not the one expected (computed again, by the caller).
_CHANGE = APPEND_FN + """
local current = redis.call('HGET', KEYS[5], ARGV[10]) or ''
if current ~= ARGV[11] then return {-1, 0} end
if ARGV[12] == '' then
  redis.call('HDEL', KEYS[5], ARGV[10])
else
  redis.call('HSET', KEYS[5], ARGV[10], ARGV[12])
end
if ARGV[13] == '1' then
  return append(ARGV[6], ARGV[7], ARGV[8], ARGV[9])
end
return {0, -1}
"""


class AlarmBoard:
    """The live alarms of controller ``controller`` (ingress and workers alike)."""

    def __init__(self, client: redis.Redis, controller: str, topic: str, *,
                 max_entries: int = 0) -> None:
        self.redis = client
        self.cid = controller
        self.topic = topic
        """``{prefix}/{cid}/alarms``"""
        self.key = alarms_key(controller)
        self.max_entries = max_entries
        self._change = client.register_script(_CHANGE)

    @staticmethod
    def _field(source: str, alarm: str) -> str:
        return f"{source}\x00{alarm}"

    def get(self, source: str, alarm: str) -> dict[str, Any] | None:
        raw = self.redis.hget(self.key, self._field(source, alarm))
        return None if raw is None else dict(json.loads(raw))

    def active(self) -> list[dict[str, Any]]:
        """Every live alarm that is not ``normal``: source, alarm, state, priority,
        value, limit, since (unix s), message; the most urgent first, then the oldest."""
        found: dict[bytes, bytes] = self.redis.hgetall(self.key)  # type: ignore[assignment]
        out = []
        for field, raw in found.items():
            source, _, alarm = field.decode().partition("\x00")
            rec = json.loads(raw)
            out.append({"source": source, "alarm": alarm, "state": state_of(rec),
                        **{k: rec.get(k) for k in ("priority", "value", "limit", "t",
                                                    "since", "message", "shelved_until")
                           if rec.get(k) is not None}})
        rank = {"urgent": 0, "high": 1, "medium": 2, "low": 3}
        out.sort(key=lambda a: (rank.get(str(a.get("priority")), 4), a.get("since") or 0))
        return out

    def event(self, source: str, alarm: str, event: str, **fields: Any) -> str | None:
        """Apply ``event`` to alarm (``source``, ``alarm``), atomically with its message;
        the state it leaves the alarm in, or None when it changed nothing."""
        field = self._field(source, alarm)
        for _ in range(_TRIES):
            found = self.redis.hget(self.key, field)
            raw = found.decode() if isinstance(found, bytes) else found
            rec = None if raw is None else json.loads(raw)
            change = transition(rec, event, fields)
            if change is None:
                return None
            state = state_of(change.record)
            message = {"source": source, "alarm": alarm, "event": event, "state": state,
                       **{k: v for k, v in (change.record or {**(rec or {}), **fields}).items()
                          if k in ("priority", "value", "limit", "t", "message")},
                       **({"until": fields["until"]} if event == "shelved" else {})}
            head, tail = self._parts(message)
            stream = outbox_stream(self.cid)
            seq_key = f"{self.key}:seq"
            new = "" if change.record is None else json.dumps(change.record)
            done, _ = self._change(
                keys=[stream, seq_key, f"{stream}:data", f"{stream}:dropped", self.key],
                args=["~alarms", self.topic, "", _SEQ_TTL, self.max_entries, "", head, tail,
                      "0", field, raw or "", new,
                      "1" if change.send else "0"])
            if int(done) != -1:
                return state
        raise RuntimeError(f"alarm {alarm!r} of {source!r} changed {_TRIES} times while "
                           "it was being updated")

    def _parts(self, fields: dict[str, Any]) -> tuple[str, str]:
        """The alarm message as (head, tail): the message is ``head + seq + tail``."""
        head = '{"controller":' + json.dumps(self.cid) + ',"type":"alarm","seq":'
        body = encode_json(fields)
        return head, ',"ts":"' + timestamp() + '",' + body[1:]

    def end_source(self, source: str, why: str) -> int:
        """Clear every alarm of ``source`` (a real-time run that ended), each with a last
        message, and remove them; how many."""
        found: dict[bytes, bytes] = self.redis.hgetall(self.key)  # type: ignore[assignment]
        n = 0
        for field in found:
            src, _, alarm = field.decode().partition("\x00")
            if src != source:
                continue
            rec = self.get(source, alarm) or {}
            if rec.get("shelved_until") is not None:
                self.event(source, alarm, "unshelved", message=why)
            if (self.get(source, alarm) or {}).get("active"):
                self.event(source, alarm, "cleared", message=why)
            self.redis.hdel(self.key, field)
            n += 1
        return n

    def records(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every live alarm's record, by (source, alarm): one read of the hash."""
        found: dict[bytes, bytes] = self.redis.hgetall(self.key)  # type: ignore[assignment]
        out = {}
        for field, raw in found.items():
            source, _, alarm = field.decode().partition("\x00")
            out[(source, alarm)] = dict(json.loads(raw))
        return out

    def due_shelves(self, now: float | None = None,
                    records: dict[tuple[str, str], dict[str, Any]] | None = None
                    ) -> list[tuple[str, str]]:
        """(source, alarm) of the shelved alarms whose shelf has ended (``records``: as
        :meth:`records` read them this tick, else read now)."""
        now = time.time() if now is None else now
        recs = self.records() if records is None else records
        return [key for key, rec in recs.items()
                if rec.get("shelved_until") is not None and float(rec["shelved_until"]) <= now]
