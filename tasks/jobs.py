"""The Celery tasks: thin, idempotent, JSON arguments that say which request they run.

``twin.run`` runs a static or dynamic scenario, ``twin.call`` one function of
the function library, ``twin.realtime`` a real-time scenario; each writes its
``result`` or ``error`` into the outbox under the logical key ``final``: a
re-delivered task (worker killed, acks_late) may compute again, but its reply is
stored once.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from common.retry import retry
from common.settings import load_settings
from modellib.errors import CodedError, Expired
from modellib.functions import call_function
from modellib.plugins import model_set_digest
from scenario_builder import (
    RunStopped,
    check_scenario,
    run_realtime,
    run_scenario,
    settable_inputs,
)

from .alarmboard import AlarmBoard
from .app import app
from .jobboard import LEASE_RENEW_S, JobBoard
from .outbox import Outbox
from .queues import CALL, HARD_MARGIN_S, REALTIME_RUN, RUN, SHORT
from .rtprio import realtime_priority
from .serializer import NAME as SERIALIZER
from .steering import RedisSteering

__all__ = ["run", "call", "realtime", "outbox"]

log = logging.getLogger("twinctl.worker")

REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError)
"""Redis errors that pass (a restart, a network blip): retried, never the others."""

_outbox: Outbox | None = None
_outbox_pid = 0


def outbox() -> Outbox:
    """This process's outbox (one Redis connection pool per worker process)."""
    global _outbox, _outbox_pid
    if _outbox is None or _outbox_pid != os.getpid():
        s = load_settings()
        _outbox = Outbox(redis.Redis.from_url(s.redis_url, **s.redis_options),
                         ttl=s.duplicate_ttl, max_entries=s.outbox_max)
        _outbox_pid = os.getpid()
    return _outbox


_RETRY = {
    "bind": True,
    "serializer": SERIALIZER,
    "acks_late": True,
    "reject_on_worker_lost": True,
    # No autoretry on Redis errors: a retry is queued in Redis, so while Redis is away it
    # cannot be, and Celery then rejected the job without requeue (acked, never
    # answered). A job waits for Redis instead where it needs it (_persist).
    "max_retries": 0,
}


def _board(controller: str) -> JobBoard:
    return JobBoard(outbox().redis, controller)


def _answer(
    compute: Callable[[], dict[str, Any]], *, request_id: str, controller: str, reply_to: str,
    correlation: str | None, info: dict[str, Any], expires_at: float | None = None,
    models_digest: str | None = None,
) -> str:
    """Register the job, run ``compute`` and store its result, or the error it raised,
    as the final reply. A job stopped before it started is not run.

    A job of the short queue (a static run, a function call: milliseconds) is not
    marked running: the ingress's ``queued`` entry stands for it until its final
    reply, and a stop requested before that reply is stored turns it into
    ``stopped`` (checked in the same Lua call): a round trip less on the hot path."""
    board = _board(controller)
    short = info.get("queue") == SHORT
    late = _late(expires_at) or other_models(models_digest)
    held = not short and late is None  # marked running (and leased, unless real-time)
    stopped_early = _persist(lambda: board.begin(request_id, info)) if held else False
    started = time.perf_counter()
    lease = _Lease(board, request_id) if held and not stopped_early \
        and info["task"] != REALTIME_RUN else None
    try:
        if late is not None:
            raise late
        if stopped_early:
            fields: dict[str, Any] = {"status": "stopped", "stats": {}}
        else:
            fields = compute()
        rtype = "result"
    except RunStopped as stop:  # `stop`, seen by a long dynamic run while it ran
        fields, rtype = {"status": "stopped", "t": stop.t, "stats": {}}, "result"
    except CodedError as exc:
        fields, rtype = exc.as_reply(), "error"
    except SoftTimeLimitExceeded:
        fields = {"code": "timeout", "message": timeout_message(
            info.get("task", ""), _soft_limit())}
        rtype = "error"
    except (ArithmeticError, ValueError) as exc:
        fields = {"code": "runtime_error", "message": f"the computation failed: {exc}"}
        rtype = "error"
    except Exception:  # an unexpected bug must still answer the request
        log.exception("request %s: internal error", request_id)
        fields = {"code": "internal_error",
                  "message": "the controller failed while running this request; see its log"}
        rtype = "error"
    if lease is not None:
        lease.close()
    if rtype == "result":
        fields.setdefault("stats", {})["run_ms"] = round(
            (time.perf_counter() - started) * 1000, 3)
    stored = _persist(lambda: outbox().put_final(
        controller=controller, request_id=request_id, rtype=rtype, fields=fields,
        topic=reply_to, correlation=correlation, job=board.keys_of(request_id),
        if_stopped={"status": "stopped", "stats": {}} if short else None,
    ))
    return f"{rtype} seq={stored.seq}{'' if stored.new else ' (already sent)'}"


class _Lease:
    """While a batch job runs, its worker renews its lease on the job board every
    :data:`~tasks.jobboard.LEASE_RENEW_S` (a thread of the pool process): a worker host
    that dies (SIGKILL, power) stops renewing, and the ingress gives the job back to its
    queue within a minute instead of Redis's visibility timeout (~22 minutes)."""

    def __init__(self, board: JobBoard, request_id: str) -> None:
        self._board, self._rid = board, request_id
        self._done = threading.Event()
        self._renew()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{request_id}",
                                        daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        try:
            self._board.lease(self._rid)
        except REDIS_AWAY:
            pass  # renewed at the next beat; the ingress also asks the worker first

    def _loop(self) -> None:
        while not self._done.wait(LEASE_RENEW_S):
            self._renew()

    def close(self) -> None:
        self._done.set()


def other_models(models_digest: str | None) -> CodedError | None:
    """The error of a job checked by an ingress whose model set differs from this
    worker's (other plugins, or another version): it is not run on other models."""
    if models_digest is None or models_digest == model_set_digest():
        return None
    return CodedError(
        f"this worker's model library (model set {model_set_digest()}) differs from the one "
        f"the ingress checked the job against ({models_digest}): the two were started with "
        "different TWIN_MODEL_PATH, TWIN_PLUGINS or versions, so the job was not run on "
        "other models; the controller's operator must start them alike")


def _late(expires_at: float | None) -> Expired | None:
    """The ``expired`` error of a job taken after its command's ``ttl`` ran out."""
    if expires_at is None:
        return None
    over = time.time() - expires_at
    if over <= 0:
        return None
    return Expired(
        f"the command's ttl ran out {over:.1f} s before a worker could start its job "
        "(it waited in the queue behind others): it was not run; send it again (with a "
        "new id) if it still applies, or with a longer ttl", path="ttl")


def _soft_limit() -> float:
    """The soft time limit of the task running in this process: its own (a real-time
    run's), else the worker's (TWIN_SOFT_TIME_LIMIT)."""
    task = app.current_task
    limits = getattr(getattr(task, "request", None), "timelimit", None) or (None, None)
    return float(limits[1] or app.conf.task_soft_time_limit)


def timeout_message(task: str, limit: float, *, killed: float | None = None) -> str:
    """What a ``timeout`` error says: which limit stopped the job, and what to do.
    ``killed``: the hard limit at which its process was killed (it ignored ``limit``)."""
    if task == REALTIME_RUN:
        what = (f"the real-time run was still going {limit:g} s after it started, its time "
                "limit (its length in wall-clock time, (time.stop - time.start) / "
                "realtime.speed or TWIN_MAX_REALTIME_S for an open-ended run, plus 10 % "
                "and 60 s)")
        fix = ("Its ticks took longer than their period: make time.step larger or "
               "realtime.speed smaller (or leave time.stop out and end the run with `stop`)")
    else:
        job = "function call" if task == CALL else "run"
        what = (f"the {job} took longer than {limit:g} s, the time limit of one job on this "
                "controller (TWIN_SOFT_TIME_LIMIT)")
        fix = "To make it fit, " + (
            "call it on less data" if task == CALL else
            "make it cheaper (a shorter time span, a larger time.step, a larger "
            "solver.max_step or looser solver.rtol/atol, fewer elements) or split it "
            "into several shorter runs")
        fix += "; the controller's operator may raise TWIN_SOFT_TIME_LIMIT"
    stopped = (f"it did not stop at that limit, so its worker process was killed at "
               f"{killed:g} s" if killed is not None else "it was stopped")
    return f"{what}: {stopped}. {fix}."


def capped_message(cap: float) -> str:
    """What the final reply of an open-ended real-time run stopped at the cap says."""
    return (f"the open-ended real-time run reached TWIN_MAX_REALTIME_S = {cap:g} s of "
            "wall-clock time, the longest real-time run this controller allows, and was "
            "stopped there (its last tick before that time): start a new run to go on, or "
            "ask the controller's operator to raise TWIN_MAX_REALTIME_S")


@signals.task_failure.connect(weak=False)
def _killed_at_time_limit(sender: Any = None, exception: BaseException | None = None,
                          args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """A job that ignored its soft time limit was killed at the hard one (in the worker's
    main process): answer it ``timeout`` and end it, so it is not left unanswered."""
    if not isinstance(exception, TimeLimitExceeded) or \
            getattr(sender, "name", "") not in (RUN, CALL, REALTIME_RUN):  # (sweeps: their own)
        return
    try:
        request_id, controller, reply_to = (str(a) for a in list(args)[:3])
        correlation = (kwargs or {}).get("correlation")
        hard = float(exception.args[0]) if exception.args else app.conf.task_time_limit
        outbox().put_final(
            controller=controller, request_id=request_id, rtype="error", topic=reply_to,
            correlation=correlation, job=_board(controller).keys_of(request_id), fields={
                "code": "timeout",
                "message": timeout_message(sender.name, max(hard - HARD_MARGIN_S, 1),
                                           killed=hard)})
        log.error("request %s: killed at its hard time limit (%g s)", request_id, hard)
    except Exception:  # noqa: BLE001  (a signal handler must not break the worker)
        log.exception("a job killed at its hard time limit could not be answered")


T = TypeVar("T")


def _persist(store: Callable[[], T], timeout: float = 600.0) -> T:
    """``store()``, retried while Redis is away (at most ``timeout`` s): a job's replies
    and its entry on the job board must not be lost to a Redis restart, and the job
    must not be run again for it (its work is done)."""
    def once() -> T:
        while True:
            try:
                return store()
            except SoftTimeLimitExceeded:
                continue  # the time limit fired while storing: the answer is ready, store it

    return retry(once, retry_on=REDIS_AWAY, deadline=time.monotonic() + timeout)


def _stop_flag(controller: str, request_id: str) -> Callable[[], bool]:
    """``should_stop`` of a dynamic run: the job board's stop flag; while Redis is away
    it reads as "not stopped" (the run goes on; the next read, 0.2 s later, tries
    again), never as an error that would end the run."""
    board = _board(controller)
    said = [False]

    def should_stop() -> bool:
        try:
            return board.get_stop(request_id)
        except REDIS_AWAY as exc:
            if not said[0]:
                log.warning("request %s: its stop flag cannot be read (%s); going on",
                            request_id, exc)
                said[0] = True
            return False

    return should_stop


def stream_rows(
    result: dict[str, Any], *, max_rows: int, request_id: str, controller: str,
    reply_to: str, correlation: str | None,
) -> dict[str, Any]:
    """A series longer than ``max_rows`` goes out as ``data`` chunks (logical keys
    ``data:0``, ``data:1``…, so a re-run stores none twice); the result then says
    ``streamed: true`` instead of repeating them."""
    t = result.get("t")
    if t is None or len(t) <= max_rows:
        return result
    values = result.pop("values")
    result.pop("t")
    chunks = 0
    for chunks, start in enumerate(range(0, len(t), max_rows), start=1):
        end = start + max_rows
        fields = {"chunk": chunks - 1, "t": t[start:end],
                  "values": {k: v[start:end] for k, v in values.items()}}
        _persist(functools.partial(
            outbox().put, controller=controller, request_id=request_id,
            key=f"data:{chunks - 1}", rtype="data", topic=reply_to, correlation=correlation,
            fields=fields))
    result.update(streamed=True, chunks=chunks, rows=len(t))
    return result


@app.task(name=RUN, **_RETRY)
def run(
    self: Any,
    request_id: str,
    controller: str,
    reply_to: str,
    scenario: dict[str, Any],
    correlation: str | None = None,
    summary: str = "",
    max_rows: int = 10_000,
    client: str = "",
    expires_at: float | None = None,
    models_digest: str | None = None,
) -> str:
    """Run ``scenario`` for request ``request_id`` of ``controller``; reply via the outbox.

    ``summary`` only tells people (Flower) what the scenario is; ``max_rows`` is the
    deployment's ``TWIN_MAX_RESULT_ROWS``; ``client`` the orchestrator that sent it
    (who may steer it).
    """
    def compute() -> dict[str, Any]:
        result = run_scenario(scenario, should_stop=_stop_flag(controller, request_id))
        return stream_rows(result, max_rows=max_rows, request_id=request_id,
                           controller=controller, reply_to=reply_to, correlation=correlation)

    return _answer(compute, request_id=request_id, controller=controller, reply_to=reply_to,
                   correlation=correlation, expires_at=expires_at, models_digest=models_digest,
                   info=_info(self, RUN, summary, reply_to, correlation, client))


@app.task(name=CALL, **_RETRY)
def call(
    self: Any,
    request_id: str,
    controller: str,
    reply_to: str,
    function: str,
    args: dict[str, Any],
    correlation: str | None = None,
    summary: str = "",
    client: str = "",
    expires_at: float | None = None,
    models_digest: str | None = None,
) -> str:
    """Run one function of the function library on ``args``; reply via the outbox.

    ``summary`` only tells people (Flower, ``jobs``) what the call is."""
    return _answer(lambda: {"status": "ok", "function": function,
                            "value": call_function(function, args)},
                   request_id=request_id, controller=controller, reply_to=reply_to,
                   correlation=correlation, expires_at=expires_at, models_digest=models_digest,
                   info=_info(self, CALL, summary or f"call: {function}", reply_to,
                              correlation, client))


def _info(task: Any, name: str, summary: str, reply_to: str,
          correlation: str | None, client: str) -> dict[str, Any]:
    """What ``jobs`` shows of a running job, and where the ingress answers it if its
    worker is lost."""
    return {"task": name, "queue": task.request.delivery_info.get("routing_key") or "",
            "summary": summary, "celery_id": task.request.id,
            "worker": task.request.hostname or "", "worker_pid": os.getpid(),
            "reply_to": reply_to, "correlation": correlation,
            **({"client": client} if client else {})}


@app.task(name=REALTIME_RUN, bind=True, acks_late=False, reject_on_worker_lost=False,
          max_retries=0, serializer=SERIALIZER)
def realtime(
    self: Any,
    request_id: str,
    controller: str,
    reply_to: str,
    scenario: dict[str, Any],
    correlation: str | None = None,
    summary: str = "",
    inputs: list[str] | None = None,
    client: str = "",
    max_wall_s: float | None = None,
    expires_at: float | None = None,
    alarms_topic: str | None = None,
    models_digest: str | None = None,
) -> str:
    """Run a real-time ``scenario`` until its ``time.stop`` or a ``stop`` command.

    ``inputs``: its settable inputs, as the ingress found them (``set`` of the job while
    it waits checks against them); the worker lists them again from its own check.
    ``expires_at``: when its command's ``ttl`` runs out (not started by then: ``expired``);
    ``max_wall_s``: the deployment's ``TWIN_MAX_REALTIME_S`` for an open-ended run, which
    ends ``stopped`` then (the ingress set the task's time limits from it).
    ``alarms_topic``: the controller's ``{prefix}/{cid}/alarms``, where the run's live
    alarms go (its rules, and ``realtime_overrun``).

    Acknowledged when it starts, and never run again by Celery: re-running would
    replay simulated time the plant has already lived through. If its worker
    dies, the ingress notices the missing heartbeat and answers ``runtime_error``.
    """
    info = _info(self, REALTIME_RUN, summary, reply_to, correlation, client)
    try:
        sc = check_scenario(scenario)  # (checked by the ingress too: this cannot fail there)
    except CodedError as exc:
        error = exc

        def refuse() -> dict[str, Any]:
            raise error

        return _answer(refuse, request_id=request_id, controller=controller,
                       reply_to=reply_to, correlation=correlation, info=info)
    assert sc.time is not None and sc.realtime is not None
    info["inputs"] = settable_inputs(sc)

    def compute() -> dict[str, Any]:
        alarms = None if alarms_topic is None else AlarmBoard(
            outbox().redis, controller, alarms_topic, max_entries=outbox().max_entries)
        steering = RedisSteering(board=_board(controller), outbox=outbox(),
                                 request_id=request_id, reply_to=reply_to,
                                 correlation=correlation, info=info, alarms=alarms)
        try:
            with realtime_priority() as priority:
                result = run_realtime(sc, steering, max_wall_s=max_wall_s)
            result["stats"]["priority"] = priority
            if result.pop("capped", False):
                result.update(stopped_by="TWIN_MAX_REALTIME_S", limit=max_wall_s,
                              message=capped_message(max_wall_s or 0))
            return result
        finally:
            steering.close()

    return _answer(compute, request_id=request_id, controller=controller, reply_to=reply_to,
                   correlation=correlation, info=info, expires_at=expires_at,
                   models_digest=models_digest)
