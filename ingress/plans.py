"""What to do with a command that passed the envelope checks: its plan.

:meth:`Planner.plan` checks a command against the libraries, the policy and the
limits, with no side effect, and says what to answer first (after the
duplicate-id guard) and what to do then (queue a job, store an instance, steer a
job). A ``run`` is checked here once, and what is queued is the checked scenario
(:meth:`scenario_builder.Scenario.to_data`: instances resolved, every parameter
given), with the settable inputs of a real-time run, so the worker's own check is
cheap and nothing builds it a third time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.settings import Settings
from instances import Instance, InstanceLibrary
from modellib import describe_models
from modellib.errors import CodedError
from modellib.functions import check_call, describe_functions
from modellib.plugins import load_plugins, model_set_digest
from scenario_builder import check_scenario, describe_templates, expand_template, settable_inputs
from scenario_builder.graph import Scenario
from scenario_builder.sweeps import parse_sweep
from scenario_builder.templates import templates
from tasks import queues
from tasks.jobs import call as call_task
from tasks.jobs import realtime as realtime_task
from tasks.jobs import run as run_task
from tasks.sweeps import sweep_chunk as sweep_task

from . import limits
from .admission import Admission
from .alarmcontrol import AlarmControl
from .commands import Command
from .jobcontrol import JobControl
from .jobspec import Job, SweepJob
from .policy import Policy
from .replies import Durable, Replies

__all__ = ["Plan", "Planner"]

log = logging.getLogger("twinctl.ingress")

ALARM_EVENTS = {"ack_alarm": "acknowledged", "shelve_alarm": "shelved",
                "unshelve_alarm": "unshelved"}


@dataclass
class Plan:
    """What to answer first (after the duplicate-id guard), and what to do then."""

    rtype: str
    fields: dict[str, Any]
    key: str = "final"
    then: Callable[[], None] | None = None
    entry: tuple[str, str, str] | None = None
    """the job board's entry of the job it queues, written with the first reply"""
    spec: str = ""
    """what is kept of the job it queues, to send it again (:meth:`Job.spec`)"""


class Planner:
    def __init__(self, settings: Settings, policy: Policy, library: InstanceLibrary,
                 admission: Admission, jobs: JobControl, replies: Replies,
                 durable: Durable, on_library_change: Callable[[], None],
                 alarms: AlarmControl | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.library = library
        self.admission = admission
        self.jobs = jobs
        self.replies = replies
        self.durable = durable
        self.on_library_change = on_library_change
        self.alarms = alarms

    def plan(self, command: Command) -> Plan:
        """Check ``command`` against the libraries (no side effects); say what to do."""
        body = command.body
        if command.cmd == "ping":
            return Plan("pong", {})
        if command.cmd == "describe":
            return Plan("description", self.describe())
        if command.cmd in ("run", "call"):
            self.admission.admit()
            job = self._run(command) if command.cmd == "run" else self._call(command)
            self.admission.check_client(command)
            entry = self.jobs.board.waiting(command.id, {
                "task": job.task.name, "queue": job.queue, "summary": job.kwargs["summary"],
                "reply_to": job.args[2], "correlation": job.kwargs["correlation"],
                "client": command.client,
                **({"expires_at": job.kwargs["expires_at"]} if "expires_at" in job.kwargs
                   else {}),
                **({"inputs": job.kwargs["inputs"]} if "inputs" in job.kwargs else {}),
                **({"cases": job.total, "chunks": job.chunks} if isinstance(job, SweepJob)
                   else {})})
            ack = {"queue": job.queue, **({"cases": job.total, "chunks": job.chunks}
                                          if isinstance(job, SweepJob) else {})}
            return Plan("ack", ack, "ack", lambda: self._enqueue(job, command), entry,
                        job.spec())
        if command.cmd in ("put_instance", "delete_instance"):
            self.policy.check_instances(command.client, command.cmd)
        if command.cmd == "put_instance":
            self.policy.check_instance(body["instance"], path="instance")
            limits.check_instance(body["instance"], _id_of(body["instance"]) in self.library,
                                  len(self.library), max_count=self.settings.max_instances,
                                  max_bytes=self.settings.max_instance_bytes)
            inst = self.library.check(body["instance"], path="instance")
            return Plan("ack", {}, "ack", lambda: self._put_instance(command, inst))
        if command.cmd == "delete_instance":
            if not (command.dup and body["instance_id"] not in self.library):
                self.library.get(body["instance_id"], path="instance_id")
            # (a re-delivery may find it deleted by its own interrupted first handling)
            return Plan("ack", {}, "ack", lambda: self._delete_instance(command))
        if command.cmd == "jobs":
            return Plan("result", {"status": "ok", "jobs": self.jobs.jobs()})
        if command.cmd == "stop":
            target = self.jobs.find(body["target"])
            self.policy.check_steering(command.client, command.cmd, target)
            return Plan("ack", {}, "ack", lambda: self.jobs.stop(command, target))
        if command.cmd == "set":
            target = self.jobs.find(body["target"])
            self.policy.check_steering(command.client, command.cmd, target)
            values = self.jobs.check_set(target, body["inputs"])
            return Plan("ack", {}, "ack", lambda: self.jobs.set_inputs(command, target, values))
        if command.cmd in ALARM_EVENTS or command.cmd == "alarms":
            return self._alarm_plan(command)
        raise AssertionError(f"no plan for {command.cmd!r}")  # parse_command refused it

    def _alarm_plan(self, command: Command) -> Plan:
        alarms = self.alarms
        if alarms is None:  # (a planner built without the alarm board: tests)
            raise AssertionError("no alarm board")
        if command.cmd == "alarms":
            return Plan("result", {"status": "ok", "alarms": alarms.active()})
        alarms.find(command.body)
        event = ALARM_EVENTS[command.cmd]
        return Plan("ack", {}, "ack", lambda: alarms.change(command, event))

    def describe(self) -> dict[str, Any]:
        """The libraries, as far as the deployment policy allows them, and what of the
        operator's plugins was skipped (``skipped``: where, why)."""
        s = self.settings
        skipped = load_plugins(model_path=s.model_path, allow=s.plugins).describe()
        return {**self.policy.describe(
            {"models": describe_models(), "functions": describe_functions(),
             "instances": self.library.describe(), "templates": describe_templates()},
            templates()), "skipped": skipped}

    # ----- jobs ------------------------------------------------------------------------
    def _route(self, command: Command) -> tuple[str, str | None]:
        reply_to = command.reply_to or self.settings.reply_topic(command.id)
        return reply_to, command.correlation.hex() if command.correlation else None

    @staticmethod
    def _expiry(command: Command) -> dict[str, float]:
        """The ``expires_at`` of a job whose command has a ``ttl`` (unix seconds): a
        worker that takes it later answers ``expired`` and does not run it."""
        if command.ttl is None:
            return {}
        return {"expires_at": round(command.received + command.ttl, 3)}

    def _call(self, command: Command) -> Job:
        """Check a ``call`` against the function library."""
        name, args = command.body["function"], command.body["args"]
        self.policy.check_function(name, "function")
        limits.check_args(args, self.settings.max_series, "args")
        check_call(name, args, path="args", function_path="function")
        reply_to, correlation = self._route(command)
        return Job(call_task, queues.SHORT,
                   (command.id, self.settings.controller_id, reply_to, name, args),
                   {"correlation": correlation, "summary": f"call: {name}",
                    "client": command.client, "models_digest": model_set_digest(),
                    **self._expiry(command)}, {})

    def _run(self, command: Command) -> Job | SweepJob:
        """Check a ``run`` against the libraries, the policy and the limits."""
        body, s = command.body, self.settings
        template = body.get("template")
        if template is not None:
            limits.check_args(body["args"], s.max_series, "args")
        raw = expand_template(template, body["args"]) if template else body["scenario"]
        limits.check_elements(raw, s.max_elements)
        limits.check_series(raw, s.max_series)
        scenario = self.library.resolve(raw)
        self.policy.check_scenario(scenario, template=template)
        checked = check_scenario(scenario)
        limits.check_steps(checked, s.max_steps)
        limits.check_max_step(checked, s.max_steps)
        limits.check_realtime_length(checked, s.max_realtime_s)
        limits.check_result_bytes(checked, s.max_result_bytes, s.max_message_bytes)
        models = sorted({el.cls.name for el in checked.elements.values()})
        summary = f"{checked.mode}: {len(checked.elements)} element(s) {', '.join(models)}"
        reply_to, correlation = self._route(command)
        args = (command.id, s.controller_id, reply_to, checked.to_data())
        kwargs: dict[str, Any] = {"correlation": correlation, "summary": summary,
                                  "client": command.client, "models_digest": model_set_digest(),
                                  **self._expiry(command)}
        if "sweep" in body:
            return self._sweep(body["sweep"], checked, args, kwargs)
        if checked.mode == "realtime":
            kwargs["inputs"] = settable_inputs(checked)
            kwargs["alarms_topic"] = s.alarms_topic
            if (checked.time or {}).get("stop") is None and s.max_realtime_s:
                kwargs["max_wall_s"] = s.max_realtime_s  # stopped by its worker then
            return Job(realtime_task, queues.REALTIME, args, kwargs,
                       realtime_limits(checked.time, checked.realtime, s.max_realtime_s))
        kwargs["max_rows"] = limits.chunk_rows(checked, s.max_result_rows, s.max_message_bytes)
        return Job(run_task, queues.SHORT if checked.mode == "static" else queues.LONG,
                   args, kwargs, {})

    def _sweep(self, data: Any, checked: Scenario, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> SweepJob:
        """A ``run`` with a ``sweep``: every case checked, cut into chunks."""
        s = self.settings
        sweep = parse_sweep(data, checked, max_cases=s.max_cases)
        total = len(sweep.cases)
        kwargs = {**kwargs, "summary": f"sweep of {total} case(s), {kwargs['summary']}",
                  "max_rows": limits.sweep_table_rows(len(sweep.columns), s.max_result_rows,
                                                      s.max_message_bytes)}
        return SweepJob(sweep_task, queues.SWEEP, args, kwargs, sweep.to_data(),
                        limits.sweep_chunk_size(checked, total))

    def _enqueue(self, job: Job | SweepJob, command: Command) -> None:
        self.admission.count(command)  # counted until the job ends (JobBoard.end)
        self.durable("queueing the job", job.send)

    # ----- the instance library ------------------------------------------------------------
    def _put_instance(self, command: Command, inst: Instance) -> None:
        try:
            stored, created = self.library.put(inst.describe())
        except OSError as exc:
            log.error("could not store instance %s: %s", inst.id, exc)
            self.replies.final(command, "error", {
                "code": "internal_error",
                "message": f"the instance {inst.id!r} could not be stored: {exc.strerror}"})
            return
        self.replies.final(command, "result", {"status": "ok", "created": created,
                                               "instance": stored.describe()})
        self.on_library_change()

    def _delete_instance(self, command: Command) -> None:
        iid = command.body["instance_id"]
        try:
            if not (command.dup and iid not in self.library):
                self.library.delete(iid)
        except CodedError as exc:  # deleted by an earlier command meanwhile
            self.replies.final(command, "error", exc.as_reply())
            return
        except OSError as exc:
            self.replies.final(command, "error", {
                "code": "internal_error",
                "message": f"the instance {iid!r} could not be deleted: {exc.strerror}"})
            return
        self.replies.final(command, "result", {"status": "ok", "deleted": iid})
        self.on_library_change()


def _id_of(instance: Any) -> str | None:
    iid = instance.get("id") if isinstance(instance, dict) else None
    return iid if isinstance(iid, str) else None


def realtime_limits(time_: dict[str, Any] | None, opts: dict[str, Any] | None,
                    max_realtime_s: int = 0) -> dict[str, Any]:
    """Celery time limits of a real-time run: its length in wall-clock time and a margin.
    An open-ended run lasts at most ``max_realtime_s`` (TWIN_MAX_REALTIME_S: its worker
    stops it then), and has no limit when that is 0 (it runs until stopped)."""
    assert time_ is not None and opts is not None
    if time_.get("stop") is not None:
        length = (float(time_["stop"]) - float(time_["start"])) / float(opts["speed"])
    elif max_realtime_s:
        length = float(max_realtime_s)
    else:
        return {"soft_time_limit": queues.OPEN_ENDED_S,
                "time_limit": queues.OPEN_ENDED_S + queues.HARD_MARGIN_S}
    soft = int(length * 1.1 + 60)
    return {"soft_time_limit": soft, "time_limit": soft + queues.HARD_MARGIN_S}
