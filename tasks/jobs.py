"""The Celery tasks: thin, idempotent, JSON arguments that say which request they run.

``twin.run`` runs a scenario, ``twin.call`` one function of the function
library; each writes its ``result`` or ``error`` into the outbox under the
logical key ``final``: a re-delivered task (worker killed, acks_late) may
compute again, but its reply is stored once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from modellib.errors import CodedError
from modellib.functions import call_function
from scenario_builder import run_scenario

from .app import app
from .outbox import Outbox

__all__ = ["run", "call", "outbox"]

log = logging.getLogger("twinctl.worker")

_outbox: Outbox | None = None
_outbox_pid = 0


def outbox() -> Outbox:
    """This process's outbox (one Redis connection pool per worker process)."""
    global _outbox, _outbox_pid
    if _outbox is None or _outbox_pid != os.getpid():
        url = app.conf.broker_url
        ttl = int(os.environ.get("TWIN_DUPLICATE_TTL", "86400"))
        bound = int(os.environ.get("TWIN_OUTBOX_MAX", "100000"))
        _outbox = Outbox(redis.Redis.from_url(url), ttl=ttl, max_entries=bound)
        _outbox_pid = os.getpid()
    return _outbox


_RETRY = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (redis.ConnectionError, redis.TimeoutError),
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 20,
}


def _answer(
    compute: Callable[[], dict[str, Any]], *, request_id: str, controller: str, reply_to: str,
    correlation: str | None,
) -> str:
    """Run ``compute`` and store its result, or the error it raised, as the final reply."""
    started = time.perf_counter()
    try:
        fields: dict[str, Any] = compute()
        rtype = "result"
    except CodedError as exc:
        fields, rtype = exc.as_reply(), "error"
    except SoftTimeLimitExceeded:
        fields = {"code": "timeout",
                  "message": f"the run took longer than {app.conf.task_soft_time_limit} s"}
        rtype = "error"
    except (ArithmeticError, ValueError) as exc:
        fields = {"code": "runtime_error", "message": f"the computation failed: {exc}"}
        rtype = "error"
    except Exception:  # an unexpected bug must still answer the request
        log.exception("request %s: internal error", request_id)
        fields = {"code": "internal_error",
                  "message": "the controller failed while running this request; see its log"}
        rtype = "error"
    if rtype == "result":
        fields.setdefault("stats", {})["run_ms"] = round(
            (time.perf_counter() - started) * 1000, 3)
    stored = outbox().put(
        controller=controller, request_id=request_id, key="final", rtype=rtype,
        fields=fields, topic=reply_to, correlation=correlation,
    )
    return f"{rtype} seq={stored.seq}{'' if stored.new else ' (already sent)'}"


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
        outbox().put(
            controller=controller, request_id=request_id, key=f"data:{chunks - 1}",
            rtype="data", topic=reply_to, correlation=correlation,
            fields={"chunk": chunks - 1, "t": t[start:end],
                    "values": {k: v[start:end] for k, v in values.items()}},
        )
    result.update(streamed=True, chunks=chunks, rows=len(t))
    return result


@app.task(name="twin.run", **_RETRY)
def run(
    self: Any,
    request_id: str,
    controller: str,
    reply_to: str,
    scenario: dict[str, Any],
    correlation: str | None = None,
    summary: str = "",
    max_rows: int = 10_000,
) -> str:
    """Run ``scenario`` for request ``request_id`` of ``controller``; reply via the outbox.

    ``summary`` only tells people (Flower) what the scenario is; ``max_rows`` is the
    deployment's ``TWIN_MAX_RESULT_ROWS``.
    """
    def compute() -> dict[str, Any]:
        return stream_rows(run_scenario(scenario), max_rows=max_rows, request_id=request_id,
                           controller=controller, reply_to=reply_to, correlation=correlation)

    return _answer(compute, request_id=request_id, controller=controller, reply_to=reply_to,
                   correlation=correlation)


@app.task(name="twin.call", **_RETRY)
def call(
    self: Any,
    request_id: str,
    controller: str,
    reply_to: str,
    function: str,
    args: dict[str, Any],
    correlation: str | None = None,
) -> str:
    """Run one function of the function library on ``args``; reply via the outbox."""
    return _answer(lambda: {"status": "ok", "function": function,
                            "value": call_function(function, args)},
                   request_id=request_id, controller=controller, reply_to=reply_to,
                   correlation=correlation)
