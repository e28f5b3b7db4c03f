"""A Celery job the ingress sends, and what it keeps of it to send it again.

A :class:`Job` is a task, its queue, JSON-able arguments and per-job options. Its
Celery task id is derived from the controller and the request id (:func:`task_id`),
so every handling of one command names the same task. :meth:`Job.spec` is the JSON
the ingress keeps in the request's hash while the job is queued or running (field
:data:`tasks.outbox.SPEC_FIELD`, written with the ``ack``, removed with the final
reply); :meth:`Job.from_spec` reads it back, to send the job again when its message
vanished on its way to a worker (:mod:`ingress.vanished`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from tasks import queues

__all__ = ["Job", "SweepJob", "task_id", "chunk_task_id"]

_NAMESPACE = uuid.UUID("5f0c3b8e-2a51-4c7e-9d1a-7b3e6f2c9a40")


def task_id(controller: str, request_id: str) -> str:
    """The Celery task id of request ``request_id``'s job on ``controller`` (a UUID)."""
    return str(uuid.uuid5(_NAMESPACE, f"{controller}\x00{request_id}"))


def chunk_task_id(controller: str, request_id: str, chunk: int) -> str:
    """The Celery task id of chunk ``chunk`` of sweep ``request_id``."""
    return str(uuid.uuid5(_NAMESPACE, f"{controller}\x00{request_id}\x00{chunk}"))


def _dumps(data: Any) -> str:
    """JSON (orjson: a long scenario's copy costs ~1 ms, not the standard encoder's ~9)."""
    try:
        return orjson.dumps(data).decode("utf-8")
    except TypeError:  # an integer beyond 64 bits (checked and accepted as such)
        return json.dumps(data)


@dataclass(frozen=True)
class Job:
    """A Celery job to send: task, queue, JSON-able arguments, per-job options."""

    task: Any
    queue: str
    args: tuple[Any, ...]
    """request id, controller id, reply topic, then the scenario or the function's
    name and arguments"""
    kwargs: dict[str, Any]
    options: dict[str, Any]

    @property
    def task_id(self) -> str:
        return task_id(str(self.args[1]), str(self.args[0]))

    def shown(self) -> dict[str, str]:
        """What Flower and the worker's log show of the arguments: the request id,
        controller and reply topic, then the scenario's summary or the function's name,
        not the scenario or the data (which may be large, and Celery's own ``saferepr``
        of them costs more than the checks of the command)."""
        head = ", ".join(repr(a) for a in self.args[:3])
        if self.task.name == queues.CALL:
            rest = f"{self.args[3]!r}, <{len(self.args[4])} argument(s)>"
        else:
            rest = f"<scenario: {self.kwargs['summary']}>"
        return {"argsrepr": f"({head}, {rest})", "kwargsrepr": repr(self.kwargs)}

    def send(self) -> None:
        """Queue the job (one Celery message)."""
        self.task.apply_async(args=self.args, kwargs=self.kwargs, queue=self.queue,
                              task_id=self.task_id, **self.options, **self.shown())

    def spec(self) -> str:
        """What is kept of the job to send it again (JSON)."""
        return _dumps({"task": self.task.name, "queue": self.queue, "args": list(self.args),
                       "kwargs": self.kwargs, "options": self.options})

    @classmethod
    def from_spec(cls, raw: bytes | str) -> Job:
        """The job :meth:`spec` describes (its task looked up in Celery's registry)."""
        from tasks.app import app  # (Celery's app: imported with the tasks already)

        data = json.loads(raw)
        return cls(app.tasks[data["task"]], str(data["queue"]), tuple(data["args"]),
                   dict(data["kwargs"]), dict(data["options"]))


@dataclass(frozen=True)
class SweepJob:
    """A sweep's chunks: one Celery ``group`` of chunk tasks (:mod:`tasks.sweeps`).

    ``args`` are those of every chunk: request id, controller id, reply topic, the
    checked scenario; ``sweep`` the whole checked sweep
    (:meth:`scenario_builder.sweeps.Sweep.to_data`), cut into ``size`` cases a chunk."""

    task: Any
    queue: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    sweep: dict[str, Any]
    size: int

    @property
    def task_id(self) -> str:
        return task_id(str(self.args[1]), str(self.args[0]))

    @property
    def total(self) -> int:
        return len(self.sweep["cases"])

    @property
    def chunks(self) -> int:
        return -(-self.total // self.size)

    def chunk(self, k: int) -> _Chunk:
        """Chunk ``k``: cases ``k * size`` to ``(k + 1) * size - 1``, as one job."""
        first = k * self.size
        end = min(self.total, first + self.size)
        part = {**self.sweep, "cases": self.sweep["cases"][first:end]}
        return _Chunk(self.task, self.queue, (*self.args, part), {
            **self.kwargs, "chunk": k, "first": first, "total": self.total,
            "chunks": self.chunks}, {})

    def send(self) -> None:
        """Queue every chunk, as one Celery group (one connection, in order)."""
        from celery import group

        group(self.chunk(k).signature() for k in range(self.chunks)).apply_async()

    def spec(self) -> str:
        """What is kept of the sweep to send a chunk again (JSON)."""
        return _dumps({"task": self.task.name, "queue": self.queue, "args": list(self.args),
                       "kwargs": self.kwargs, "sweep": self.sweep, "size": self.size})

    @classmethod
    def from_spec(cls, raw: bytes | str) -> SweepJob:
        from tasks.app import app  # (Celery's app: imported with the tasks already)

        data = json.loads(raw)
        return cls(app.tasks[data["task"]], str(data["queue"]), tuple(data["args"]),
                   dict(data["kwargs"]), dict(data["sweep"]), int(data["size"]))


class _Chunk(Job):
    """One chunk of a sweep: its task id and what Flower shows name the request and the
    chunk's range of cases."""

    @property
    def task_id(self) -> str:
        return chunk_task_id(str(self.args[1]), str(self.args[0]), int(self.kwargs["chunk"]))

    def shown(self) -> dict[str, str]:
        head = ", ".join(repr(a) for a in self.args[:3])
        k, first = self.kwargs["chunk"], self.kwargs["first"]
        last = first + len(self.args[4]["cases"]) - 1
        rest = (f"<sweep chunk {k + 1} of {self.kwargs['chunks']}: cases {first}-{last} of "
                f"{self.kwargs['total']}; {self.kwargs['summary']}>")
        shown = {k: v for k, v in self.kwargs.items() if k != "summary"}
        return {"argsrepr": f"({head}, {rest})", "kwargsrepr": repr(shown)}

    def signature(self) -> Any:
        return self.task.signature(args=self.args, kwargs=self.kwargs, queue=self.queue,
                                   task_id=self.task_id, **self.shown())
