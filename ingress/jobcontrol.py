"""Job control: ``jobs`` lists, ``stop`` ends, ``set`` steers the jobs of this controller.

Every job queued or running is on the job board (entered by the ingress with its
``ack``, marked running by the worker that takes it, removed with its final
reply): nothing is read from Celery's queues. ``stop`` and ``set`` are written to
the job board, where the job reads them (a real-time loop every tick, a dynamic
run every 0.2 s of integration, a waiting job when a worker takes it): no signals,
which can land in the wrong job or in the storing of a reply.
"""

from __future__ import annotations

import json
import math
from typing import Any

from modellib.errors import InvalidArgument, did_you_mean
from tasks import queues
from tasks.jobboard import JobBoard

from .commands import Command
from .errors import UnknownJob
from .replies import Durable, Replies

__all__ = ["JobControl"]

SHOWN = ("id", "task", "queue", "state", "summary", "client", "expires_at", "started",
         "worker", "worker_pid", "celery_id", "inputs", "t", "ticks", "rows", "overruns",
         "cases", "done", "chunks")
"""What ``jobs`` shows of a job."""

class JobControl:
    def __init__(self, board: JobBoard, replies: Replies, durable: Durable) -> None:
        self.board = board
        self.replies = replies
        self.durable = durable

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs of this controller running or waiting: running first (oldest first),
        then the waiting ones in the order they were queued."""
        entries = self.durable("reading the jobs", self.board.entries)

        def order(item: tuple[str, dict[str, Any]]) -> tuple[int, float]:
            info = item[1]
            if info.get("state") == "running":
                return 0, float(info.get("started", 0))
            return 1, float(info.get("queued", 0))

        jobs = [{"id": rid, **info} for rid, info in sorted(entries.items(), key=order)]
        return [{k: j[k] for k in SHOWN if k in j} for j in jobs]

    def find(self, target: str) -> dict[str, Any]:
        """A job of this controller, running or waiting; ``unknown_job`` otherwise."""
        info = self.durable("reading the jobs", lambda: self.board.get(target))
        if info is not None:
            return {"id": target, **info}
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
