"""The Celery tasks: thin, idempotent, JSON arguments that say which request they run.

``twin.run`` runs a scenario and writes its ``result`` or ``error`` into the
outbox under the logical key ``final``: a re-delivered task (worker killed,
acks_late) may compute again, but its reply is stored once.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from modellib.errors import CodedError
from scenario_builder import run_scenario

from .app import app
from .outbox import Outbox

__all__ = ["run", "outbox"]

log = logging.getLogger("twinctl.worker")

_outbox: Outbox | None = None
_outbox_pid = 0


def outbox() -> Outbox:
    """This process's outbox (one Redis connection pool per worker process)."""
    global _outbox, _outbox_pid
    if _outbox is None or _outbox_pid != os.getpid():
        url = app.conf.broker_url
        ttl = int(os.environ.get("TWIN_DUPLICATE_TTL", "86400"))
        _outbox = Outbox(redis.Redis.from_url(url), ttl=ttl)
        _outbox_pid = os.getpid()
    return _outbox


@app.task(
    name="twin.run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=20,
)
def run(
    self: Any,
    request_id: str,
    controller: str,
    reply_to: str,
    scenario: dict[str, Any],
    correlation: str | None = None,
    summary: str = "",
) -> str:
    """Run ``scenario`` for request ``request_id`` of ``controller``; reply via the outbox.

    ``summary`` only tells people (Flower) what the scenario is.
    """
    started = time.perf_counter()
    try:
        fields: dict[str, Any] = run_scenario(scenario)
        rtype = "result"
    except CodedError as exc:
        fields, rtype = exc.as_reply(), "error"
    except SoftTimeLimitExceeded:
        fields = {"code": "timeout",
                  "message": f"the run took longer than {app.conf.task_soft_time_limit} s"}
        rtype = "error"
    except (ArithmeticError, ValueError) as exc:
        fields = {"code": "runtime_error", "message": f"the model failed: {exc}"}
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
