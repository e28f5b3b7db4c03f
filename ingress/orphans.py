"""Celery messages held by no live worker: given back to their queue within a minute.

A worker takes a job's message from its queue and kombu keeps it, until the worker
acknowledges it, in the hash ``unacked`` (delivery tag -> message, exchange, routing
key) with the time it was taken in the sorted set ``unacked_index``. If the worker's
host dies, only Redis's visibility timeout (~22 minutes here, longer than any job)
would put it back. Running batch jobs have leases (:meth:`tasks.jobboard.JobBoard.lease`);
this sweep covers every other message a dead worker held: short jobs (static runs,
calls: never leased, to keep them one round trip short) and jobs a worker had taken
but not yet started.

Every :data:`EVERY_S` one ingress (a Redis claim, ``twin:orphans:sweep``) reads the
messages taken more than :data:`STALE_S` ago from a batch queue, leaves out the jobs
whose worker's lease is current (a long run going on), and asks the workers which of
the rest they hold (Celery's ``query_task``, one broadcast; only when such a message
exists). A message no worker claims, twice in a row, is put back in its
queue with kombu's own ``restore_by_tag`` (what the visibility timeout would do),
and another worker runs it; its replies are stored once (logical keys). A worker
too busy to answer the broadcast in time makes a job run twice, never lose it.

Real-time jobs are left alone: their own heartbeat answers them when their worker
dies (:meth:`ingress.monitor.Monitor.reap_lost`), and they must not start again.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import redis
from kombu.transport.redis import Channel as RedisChannel

from tasks import queues
from tasks.jobboard import JobBoard

__all__ = ["Orphans", "STALE_S", "EVERY_S", "unacked_messages", "held_tag"]

log = logging.getLogger("twinctl.ingress")

STALE_S = 30.0
"""A message taken this long ago and not acknowledged is checked."""
EVERY_S = 5.0
"""How often the check runs (in one ingress at a time)."""
CLAIM_KEY = "twin:orphans:sweep"
_SHOWN = re.compile(r"^\('([^'\\]*)', '([^'\\]*)'")
"""request id and controller id, the first two of a job's ``argsrepr``"""


def _read(raw: bytes | str) -> tuple[dict[str, Any], str] | None:
    """(headers, routing key) of one of kombu's unacknowledged messages (its ``unacked``
    hash holds ``[message, exchange, routing key]``), or None if it is unreadable."""
    try:
        message, _, routing_key = json.loads(raw)
        return dict(message.get("headers") or {}), str(routing_key)
    except (ValueError, TypeError, AttributeError):
        return None


def _name(tag: Any) -> str:
    return tag.decode() if isinstance(tag, bytes) else str(tag)


def unacked_messages(client: redis.Redis) -> Iterator[tuple[str, bytes]]:
    """(delivery tag, raw message) of every message a worker took and has not
    acknowledged (a scan of kombu's hash: for rare checks only)."""
    for tag, raw in client.hscan_iter(RedisChannel.unacked_key, count=500):
        yield _name(tag), raw


def held_tag(client: redis.Redis, celery_id: str) -> str | None:
    """The delivery tag of the unacknowledged message of Celery task ``celery_id`` (the
    pool process running a task is not told its tag), or None."""
    for tag, raw in unacked_messages(client) if celery_id else ():
        read = _read(raw)
        if read is not None and read[0].get("id") == celery_id:
            return tag
    return None


class Orphans:
    """The sweep of unacknowledged batch messages that no live worker holds."""

    def __init__(self, client: redis.Redis, *, stale_s: float = STALE_S,
                 every_s: float = EVERY_S) -> None:
        self.redis = client
        self.stale_s = stale_s
        self.every_s = every_s
        self._suspects: set[str] = set()
        """delivery tags that no worker claimed at the last sweep"""
        self.restored = 0
        self._messages: dict[str, dict[str, Any]] = {}
        """the headers of the stale messages of this sweep, by delivery tag"""

    def sweep(self) -> int:
        """Give back the messages no worker held at this sweep and the last; how many
        (run every :attr:`every_s`)."""
        if not self.redis.set(CLAIM_KEY, "1", nx=True, px=int(self.every_s * 900)):
            return 0  # another ingress sweeps now
        from tasks.app import app  # (Celery's app: imported with the tasks already)

        stale = self._unleased(self._stale())
        if not stale:
            self._suspects = set()
            return 0
        held = self._held(app, sorted(set(stale.values())))
        orphans = {tag for tag, task_id in stale.items() if task_id not in held}
        due, self._suspects = orphans & self._suspects, orphans
        if not due:
            return 0
        with app.connection_for_write() as conn:  # (a connection only to give back)
            channel: Any = conn.default_channel
            for tag in sorted(due):
                channel.qos.restore_by_tag(tag)
                rid = self._shown(tag)[0]
                log.error("request %s: its job (Celery task %s) was held by a worker that "
                          "no longer answers; the job is queued again", rid or "?",
                          stale[tag])
        self.restored += len(due)
        return len(due)

    def _stale(self) -> dict[str, str]:
        """Delivery tag -> Celery task id, of batch messages taken over :attr:`stale_s`
        ago and still unacknowledged (kombu's keys, read here without a connection of
        kombu's own)."""
        tags = self.redis.zrangebyscore(RedisChannel.unacked_index_key, "-inf",
                                        time.time() - self.stale_s)
        if not tags:
            return {}
        raws = self.redis.hmget(RedisChannel.unacked_key, tags)  # type: ignore[arg-type]
        self._messages = {}
        found: dict[str, str] = {}
        for tag, raw in zip(tags, raws, strict=True):
            read = _read(raw) if raw is not None else None
            if read is None:
                continue
            headers, routing_key = read
            task_id = headers.get("id")
            if routing_key in queues.BATCH and isinstance(task_id, str):
                found[_name(tag)] = task_id
                self._messages[_name(tag)] = headers
        return found

    def _shown(self, tag: str) -> tuple[str | None, str | None]:
        """(request id, controller id) of a message, from its ``argsrepr``."""
        found = _SHOWN.match(str(self._messages.get(tag, {}).get("argsrepr") or ""))
        return (found.group(1), found.group(2)) if found else (None, None)

    def _unleased(self, stale: dict[str, str]) -> dict[str, str]:
        """``stale`` without the jobs whose worker holds a current lease (one pipelined
        read of the leases)."""
        if not stale:
            return stale
        tags = list(stale)
        pipe = self.redis.pipeline(transaction=False)
        for tag in tags:
            rid, cid = self._shown(tag)
            pipe.zscore(JobBoard(self.redis, cid or "").alive_key, rid or "")
        now = time.time()
        return {tag: stale[tag] for tag, until in zip(tags, pipe.execute(), strict=True)
                if until is None or float(until) < now}

    @staticmethod
    def _held(app: Any, task_ids: list[str]) -> set[str]:
        """The task ids that some live worker holds (running, or taken and waiting)."""
        replies = app.control.inspect(timeout=1.0).query_task(*task_ids) or {}
        return {task_id for tasks in replies.values() if isinstance(tasks, dict)
                for task_id in tasks}
