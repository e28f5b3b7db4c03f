"""Job control: ``jobs`` lists, ``stop`` ends, ``set`` steers the jobs of this controller.

Running jobs are on the job board (registered by the worker that runs them);
waiting ones are read from the Celery queues. ``stop`` and ``set`` are written to
the job board, where the job reads them (a real-time loop every tick, a dynamic
run every 0.2 s of integration, a waiting job when a worker takes it): no signals,
which can land in the wrong job or in the storing of a reply.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from modellib.errors import InvalidArgument, did_you_mean
from tasks import queues
from tasks.jobboard import JobBoard
from tasks.outbox import Outbox

from .commands import Command
from .errors import UnknownJob
from .replies import Durable, Replies

__all__ = ["JobControl"]

SHOWN = ("id", "task", "queue", "state", "summary", "started", "worker", "worker_pid",
         "celery_id", "inputs", "t", "ticks", "rows", "overruns")
"""What ``jobs`` shows of a job."""

FIND_ATTEMPTS = 10
"""How often a job in flight (acked, not final) is looked for, 20 ms apart."""


class JobControl:
    def __init__(self, board: JobBoard, outbox: Outbox, replies: Replies,
                 durable: Durable) -> None:
        self.board = board
        self.outbox = outbox
        self.replies = replies
        self.durable = durable

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs of this controller running or waiting, running first."""
        running = self.durable("reading the jobs", self.board.running)
        queued = self.durable("reading the queues", lambda: self.board.queued(queues.ALL))
        jobs = [{"id": rid, **info} for rid, info in sorted(
            running.items(), key=lambda item: item[1].get("started", 0))]
        jobs += [j for j in queued if j["id"] not in running]
        return [{k: j[k] for k in SHOWN if k in j} for j in jobs]

    def find(self, target: str) -> dict[str, Any]:
        """A job of this controller, running or waiting; ``unknown_job`` otherwise.

        A job taken from its queue by a worker that has not registered it yet is
        in neither place for a moment; a request that was acked and has no final
        reply yet is looked for again (a few times, 20 ms apart) before refusing."""
        for attempt in range(FIND_ATTEMPTS):
            info = self.durable("reading the jobs", lambda: self.board.get_running(target))
            if info is not None:
                return {"id": target, **info}
            for job in self.durable("reading the queues",
                                    lambda: self.board.queued(queues.ALL)):
                if job["id"] == target:
                    return job
            if attempt == 0:
                keys = self.durable("reading the request", lambda: self.outbox.logical_keys(
                    self.replies.cid, target))
                if "ack" not in keys or "final" in keys:
                    break  # not a job in flight: no need to look again
            time.sleep(0.02)
        raise UnknownJob(
            f"no job {target!r} is running or waiting on this controller (it may have "
            "ended already; `jobs` lists those that are)", path="target")

    def stop(self, command: Command, job: dict[str, Any]) -> None:
        target = job["id"]
        self.durable("storing the stop", lambda: self.board.request_stop(target))
        self.replies.final(command, "result", {"status": "ok", "target": target,
                                               "state": job["state"]})

    @staticmethod
    def check_set(job: dict[str, Any], inputs: dict[str, Any]) -> dict[str, float]:
        """The values of a ``set``, checked against the target's settable inputs (which
        the ingress queued with the job, and the worker registered with it)."""
        target = job["id"]
        if job.get("task") != queues.REALTIME_RUN:
            raise InvalidArgument(
                f"job {target!r} is not a real-time run ({job.get('summary') or job.get('task')}"
                "); `set` steers real-time runs only", path="target")
        ports = job.get("inputs") or []
        values: dict[str, float] = {}
        for key, value in inputs.items():
            if key not in ports:
                raise InvalidArgument(
                    f"{key!r} is not an input of job {target!r} that can be set"
                    f"{did_you_mean(key, ports)}; settable: {', '.join(ports) or 'none'}",
                    path=f"inputs.{key}")
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise InvalidArgument(
                    f"inputs.{key} must be a finite number, got {json.dumps(value)[:60]}",
                    path=f"inputs.{key}")
            values[key] = float(value)
        return values

    def set_inputs(self, command: Command, job: dict[str, Any],
                   values: dict[str, float]) -> None:
        self.durable("storing the inputs", lambda: self.board.set_inputs(job["id"], values))
        self.replies.final(command, "result", {"status": "ok", "target": job["id"],
                                               "inputs": values, "state": job["state"]})
