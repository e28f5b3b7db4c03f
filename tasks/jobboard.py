"""The jobs of a controller in Redis: what runs, stop requests, live inputs, heartbeats.

The ingress enters a job as ``queued`` with its ``ack`` (:meth:`JobBoard.waiting`, in
the same Lua call as the ack: no round trip of its own); the worker that runs it
marks it ``running`` (:meth:`JobBoard.begin`) and removes it with its final reply
(:meth:`tasks.outbox.Outbox.put_final`, or :meth:`JobBoard.end`). The ingress writes
stop requests and input values that a running real-time job reads once per tick
(:meth:`JobBoard.poll`, one pipelined round trip), whichever worker holds it; the
process running it renews a heartbeat every second (:meth:`JobBoard.heartbeat`).
So ``jobs``, ``stop`` and ``set`` read this board only, never Celery's queues.

Keys (``{cid}`` is the controller id)::

    twin:{cid}:jobs          hash request id -> JSON of a job queued or running
    twin:{cid}:steer:{id}    hash "stop" -> "1", "in:{element.port}" -> value (JSON)
    twin:{cid}:client:{c}    sorted set request id -> time queued: the jobs of
                             orchestrator c queued or running (TWIN_MAX_JOBS_PER_CLIENT)
    twin:{cid}:req:{id}      field "@": the orchestrator of a counted job (removed by
                             end; the request's hash, :func:`tasks.outbox.request_key`)
    twin:{cid}:alive         sorted set request id -> time (unix s) by which a running
                             real-time job must renew its heartbeat, or it is lost, and
                             a running batch job its worker's lease (:meth:`JobBoard.lease`),
                             or the ingress gives it back to its queue
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

from .outbox import CLIENT_FIELD, SPEC_FIELD, JobKeys, request_key

__all__ = ["JobBoard", "HEARTBEAT_MIN_S", "LEASE_S", "LEASE_RENEW_S"]

LEASE_S = 20.0
"""How long a batch worker's hold on a running job lasts; renewed every
:data:`LEASE_RENEW_S` while the job runs."""
LEASE_RENEW_S = 5.0
HEARTBEAT_MIN_S = 5.0
"""A running real-time job whose process has not renewed its heartbeat for this long is lost."""


class JobBoard:
    """Jobs of controller ``controller`` (used by the ingress and by the workers)."""

    def __init__(self, client: redis.Redis, controller: str, *, ttl: int = 86_400) -> None:
        self.redis = client
        self.cid = controller
        self.ttl = ttl
        self.jobs_key = f"twin:{controller}:jobs"
        self.alive_key = f"twin:{controller}:alive"

    def steer_key(self, request_id: str) -> str:
        return f"twin:{self.cid}:steer:{request_id}"

    # ----- the worker's side ------------------------------------------------
    def begin(self, request_id: str, info: dict[str, Any]) -> bool:
        """Register a job as running; True if a stop was requested before it started.

        The registration comes before the read of the stop flag (one transaction): a
        ``stop`` either finds the job running or is seen here."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.jobs_key, request_id, json.dumps(
            {**info, "state": "running", "started": time.time()}))
        pipe.hget(self.steer_key(request_id), "stop")
        _, stop = pipe.execute()
        return stop is not None

    def get_stop(self, request_id: str) -> bool:
        """Whether a stop was requested for ``request_id``."""
        return bool(self.redis.hexists(self.steer_key(request_id), "stop"))

    def progress(self, request_id: str, info: dict[str, Any]) -> None:
        """Update a running job's entry (what ``jobs`` shows)."""
        self.redis.hset(self.jobs_key, request_id, json.dumps(info))

    def lease(self, request_id: str, seconds: float | None = None) -> None:
        """A running batch job's worker holds it ``seconds`` more (:data:`LEASE_S`); a
        lease that runs out tells the ingress the worker may be gone."""
        self.redis.zadd(self.alive_key,
                        {request_id: time.time() + (LEASE_S if seconds is None else seconds)})

    def requeued(self, request_id: str, info: dict[str, Any]) -> None:
        """A job given back to its queue (its worker is gone): waiting again."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.jobs_key, request_id, json.dumps(
            {**{k: v for k, v in info.items() if k not in ("started", "worker_pid")},
             "state": "queued", "requeued": time.time()}))
        pipe.zrem(self.alive_key, request_id)
        pipe.execute()

    def heartbeat(self, request_id: str) -> None:
        """A running real-time job is alive: it must say so again within
        :data:`HEARTBEAT_MIN_S`."""
        self.redis.zadd(self.alive_key, {request_id: time.time() + HEARTBEAT_MIN_S})

    def poll(self, request_id: str) -> tuple[bool, dict[str, float]]:
        """The stop flag and input values of a running real-time job (one round trip).

        A job whose entry was removed (declared lost by the ingress) is told to stop."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.steer_key(request_id))
        pipe.hexists(self.jobs_key, request_id)
        steer, registered = pipe.execute()
        stop = b"stop" in steer or not registered
        inputs = {k.decode()[3:]: float(json.loads(v)) for k, v in steer.items()
                  if k.startswith(b"in:")}
        return stop, inputs

    def keys_of(self, request_id: str) -> JobKeys:
        """The keys :meth:`end` clears, for :meth:`tasks.outbox.Outbox.put_final`, which
        ends the job with its final reply in one round trip."""
        return JobKeys((self.jobs_key, self.alive_key, self.steer_key(request_id)),
                       self.client_key(""))

    def end(self, request_id: str) -> None:
        """The job is over (its final reply is stored); see also :meth:`keys_of`."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(self.jobs_key, request_id)
        pipe.zrem(self.alive_key, request_id)
        pipe.delete(self.steer_key(request_id))
        pipe.hget(request_key(self.cid, request_id), CLIENT_FIELD)
        pipe.hdel(request_key(self.cid, request_id), CLIENT_FIELD, SPEC_FIELD)
        client = pipe.execute()[3]
        if client is not None:  # counted against its orchestrator (TWIN_MAX_JOBS_PER_CLIENT)
            self.redis.zrem(self.client_key(client.decode()), request_id)

    # ----- the jobs of one orchestrator (TWIN_MAX_JOBS_PER_CLIENT) ------------------
    def client_key(self, client: str) -> str:
        """Sorted set: request id -> when queued (unix s), of one orchestrator's jobs."""
        return f"twin:{self.cid}:client:{client}"

    def add_client_job(self, client: str, request_id: str) -> None:
        """The ingress queues a job of ``client``: it counts until :meth:`end` (or, if
        it is lost, until :meth:`drop_client_jobs` or the TTL)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(self.client_key(client), {request_id: time.time()})
        pipe.expire(self.client_key(client), self.ttl)
        pipe.hset(request_key(self.cid, request_id), CLIENT_FIELD, client)
        pipe.expire(request_key(self.cid, request_id), self.ttl)
        pipe.execute()

    def client_jobs(self, client: str) -> dict[str, float]:
        """The jobs of ``client`` queued or running: request id -> when queued."""
        key = self.client_key(client)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zremrangebyscore(key, "-inf", time.time() - self.ttl)
        pipe.zrange(key, 0, -1, withscores=True)
        found = pipe.execute()[1]
        return {rid.decode(): float(at) for rid, at in found}

    def drop_client_jobs(self, client: str, request_ids: Iterable[str]) -> None:
        """Stop counting jobs of ``client`` that have ended (their final reply is stored)
        or were lost (found neither running nor waiting)."""
        ids = list(request_ids)
        if ids:
            self.redis.zrem(self.client_key(client), *ids)

    # ----- the ingress's side -------------------------------------------------
    def waiting(self, request_id: str, info: dict[str, Any]) -> tuple[str, str, str]:
        """The entry of a job the ingress is about to queue: (hash, field, JSON), for
        :meth:`tasks.outbox.Outbox.put_first` to write with the ``ack``."""
        return self.jobs_key, request_id, json.dumps(
            {**info, "state": "queued", "queued": time.time()})

    def entries(self) -> dict[str, dict[str, Any]]:
        """Every job queued or running (request id -> its entry)."""
        found: dict[bytes, bytes] = self.redis.hgetall(self.jobs_key)  # type: ignore[assignment]
        return {k.decode(): json.loads(v) for k, v in found.items()}

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The entry of one job queued or running, or None."""
        raw = self.redis.hget(self.jobs_key, request_id)
        return None if raw is None else dict(json.loads(raw))

    def request_stop(self, request_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.steer_key(request_id), "stop", "1")
        pipe.expire(self.steer_key(request_id), self.ttl)
        pipe.execute()

    def set_inputs(self, request_id: str, values: dict[str, float]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.steer_key(request_id),
                  mapping={f"in:{k}": json.dumps(v) for k, v in values.items()})
        pipe.expire(self.steer_key(request_id), self.ttl)
        pipe.execute()

    def lost(self, now: float | None = None) -> list[str]:
        """Running real-time jobs that missed their heartbeat."""
        now = time.time() if now is None else now
        found: list[bytes] = self.redis.zrangebyscore(self.alive_key, "-inf", now)  # type: ignore[assignment]
        return [m.decode() for m in found]
