"""Jobs whose Celery message vanished on its way to a worker: sent again within a minute.

kombu's Redis transport takes a message off its queue with ``BRPOP`` and records it
as unacknowledged (``unacked``) only once the worker has read Redis's answer. If the
worker's connection dies in between — its host cut off the network just as Redis
answered, a socket timeout, a NAT dropping the flow — the message is gone: in no
queue, not unacknowledged, held by no worker (a known limit of the transport,
celery/kombu#305). Its job would never be answered. So can a job the ingress entered
with its ``ack`` but never queued (it died in between, and the command was not
delivered again).

The ingress keeps what it queues: each job's task, arguments and options in its
request's hash (:data:`tasks.outbox.SPEC_FIELD`, written with the ``ack``, removed
with the final reply). Every :data:`EVERY_S` one ingress of the controller (a Redis
claim) takes the jobs that the job board has had ``queued`` for more than
:data:`STALE_S` (a short job stays ``queued`` while it runs; a longer one is marked
``running`` when it starts, then leased) and asks Redis, in one Lua call that reads
the task id out of every message's headers on the server, which of their task ids are
in a queue or unacknowledged. A job found in neither, twice in a row, is sent again
with the same task id (:meth:`ingress.jobspec.Job.send`); its replies are stored once
(logical keys), so a message that was only slow costs a second run, never a reply.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport.redis import Channel as RedisChannel

from tasks import queues
from tasks.jobboard import JobBoard
from tasks.outbox import SPEC_FIELD, request_key
from tasks.sweeps import SweepStore

from .jobspec import Job, SweepJob, chunk_task_id, task_id

__all__ = ["Vanished", "STALE_S", "EVERY_S"]

log = logging.getLogger("twinctl.ingress")

STALE_S = 30.0
"""A job queued this long ago that has not started is looked for."""
EVERY_S = 5.0
"""How often (in one ingress of the controller at a time)."""
MAX_LOOKED_FOR = 500
"""At most this many jobs are looked for in one sweep (the oldest first)."""

# KEYS: the queues, then kombu's hash of unacknowledged messages; ARGV: task ids.
# Returns the task ids found. A message is kombu's JSON: its "headers" object starts
# with "lang", "task", then "id" (Celery's protocol 2); the body before it is base64,
# so the first '"id": "' after '"headers": {' is the task id. Reads the lists 1000
# items at a time and stops once every id is found.
_FIND = """
local want, left = {}, 0
for _, id in ipairs(ARGV) do
  if not want[id] then want[id] = true; left = left + 1 end
end
local found = {}
local function look(item)
  local at = string.find(item, '"headers": {', 1, true)
  if not at then return end
  local id = string.match(item, '"id": "([^"]*)"', at)
  if id and want[id] then
    want[id] = nil; left = left - 1; found[#found + 1] = id
  end
end
for k = 1, #KEYS - 1 do
  local n, i = redis.call('LLEN', KEYS[k]), 0
  while i < n and left > 0 do
    for _, item in ipairs(redis.call('LRANGE', KEYS[k], i, i + 999)) do look(item) end
    i = i + 1000
  end
end
if left > 0 then
  for _, item in ipairs(redis.call('HVALS', KEYS[#KEYS])) do look(item) end
end
return found
"""


class Vanished:
    """The sweep of one controller's queued jobs whose message is nowhere."""

    def __init__(self, client: redis.Redis, board: JobBoard, *, stale_s: float = STALE_S,
                 every_s: float = EVERY_S) -> None:
        self.redis = client
        self.board = board
        self.stale_s = stale_s
        self.every_s = every_s
        self.claim_key = f"twin:{board.cid}:vanished:sweep"
        self._find = client.register_script(_FIND)
        self._suspects: set[str] = set()
        """task ids whose message was nowhere at the last sweep"""
        self.sent_again = 0

    def sweep(self) -> int:
        """Send again the jobs whose message was nowhere at this sweep and the last; how
        many (run every :attr:`every_s`)."""
        if not self.redis.set(self.claim_key, "1", nx=True, px=int(self.every_s * 900)):
            return 0  # another ingress of this controller sweeps now
        waiting = self._waiting()
        if not waiting:
            self._suspects = set()
            return 0
        ids = self._task_ids(waiting)
        found = {raw.decode() if isinstance(raw, bytes) else str(raw) for raw in self._find(
            keys=[*queues.ALL, RedisChannel.unacked_key], args=list(ids))} if ids else set()
        nowhere = {tid for tid in ids if tid not in found}
        due, self._suspects = nowhere & self._suspects, nowhere
        sent = 0
        for tid in sorted(due):
            rid, chunk = ids[tid]
            if self._send_again(rid, waiting[rid], chunk):
                sent += 1
        self.sent_again += sent
        return sent

    def _task_ids(self, waiting: dict[str, dict[str, Any]]) -> dict[str, tuple[str, int | None]]:
        """Task id -> (request id, chunk), of the messages to look for: a job's, and a
        sweep's chunks that have not reported (:class:`tasks.sweeps.SweepStore`)."""
        ids: dict[str, tuple[str, int | None]] = {}
        for rid, entry in waiting.items():
            if entry.get("task") != queues.SWEEP_CHUNK:
                ids[task_id(self.board.cid, rid)] = (rid, None)
                continue
            reported = SweepStore(self.board, rid).reported(int(entry.get("chunks") or 0))
            for k, done in enumerate(reported):
                if not done:
                    ids[chunk_task_id(self.board.cid, rid, k)] = (rid, k)
        return ids

    def _waiting(self) -> dict[str, dict[str, Any]]:
        """Request id -> entry, of the jobs queued more than :attr:`stale_s` ago that
        have not started, and of the sweeps queued as long ago, started or not (their
        chunks are looked for; the oldest :data:`MAX_LOOKED_FOR`)."""
        now = time.time()
        old = []
        for rid, entry in self.board.entries().items():
            since = max(float(entry.get("queued") or 0), float(entry.get("requeued") or 0))
            if (entry.get("state") == "queued" or entry.get("task") == queues.SWEEP_CHUNK) \
                    and now - since > self.stale_s:
                old.append((since, rid, entry))
        old.sort()
        return {rid: entry for _, rid, entry in old[:MAX_LOOKED_FOR]}

    def _send_again(self, rid: str, entry: dict[str, Any], chunk: int | None = None) -> bool:
        spec = self.redis.hget(request_key(self.board.cid, rid), SPEC_FIELD)
        if spec is None:  # queued by a version that kept nothing, or just answered
            return False
        if self.board.get(rid) is None:  # answered meanwhile
            return False
        if chunk is not None:
            part = SweepJob.from_spec(spec).chunk(chunk)
            part.send()
            log.error("request %s: the message of its sweep's chunk %d (Celery task %s) was "
                      "in no queue and held by no worker; the chunk is queued again", rid,
                      chunk, part.task_id)
            return True
        job = Job.from_spec(spec)
        job.send()
        self.board.requeued(rid, entry)
        log.error("request %s: its job's message (Celery task %s) was in no queue and held "
                  "by no worker for %.0f s (lost between Redis and a worker, or never "
                  "queued); the job is queued again", rid, job.task_id,
                  time.time() - float(entry.get("queued") or 0))
        return True
