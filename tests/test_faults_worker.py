"""Fault injection: a worker's pool process dies while it runs a job.

Its own Redis, Mosquitto and stack (:mod:`tests.faults`); the pool child running the
job is found under /proc and SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import new_id, running_stack
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import servers as servers
from tests.faults.harness import (
    Servers,
    assert_gapless,
    busy_child,
    controller_env,
    log_text,
    pool_children,
)
from tests.faults.scenarios import pid_loop
from tests.orchestrator import Orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.mark.timeout(120)
def test_a_job_whose_worker_process_is_killed_is_run_again_and_answered_once(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """A ~4 s dynamic run on a 2-process prefork worker: the pool child running it
    (the one burning CPU, found under /proc) is SIGKILLed. acks_late and
    reject_on_worker_lost put the job back; it runs again and the orchestrator sees one
    ack and one result (seq 0, 1), the result right."""
    redis, broker = servers.redis(), servers.mosquitto()
    env = controller_env(redis, broker, tmp_path)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid, status=False)
    with running_stack(env, tmp_path / "logs", workers=2) as stack:
        rid = new_id("pid")
        orch.send(pid_loop(rid, 800), f"{prefix}/{cid}/cmd")
        orch.wait(lambda: orch.has(rid, "ack"), 20, f"the ack of {rid}")
        worker = stack.procs["worker"]
        victim = busy_child(worker.pid)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        orch.wait(lambda: orch.finals(rid) >= 1, 90, f"the result of {rid} after the kill")
        took = time.monotonic() - killed
        time.sleep(1.0)
        replies = assert_gapless(orch, rid, ["ack", "result"])
        result = replies[-1]
        assert result["values"]["plant.y"][-1] == pytest.approx(1.0, abs=1e-6)
        assert len(result["t"]) == 801
        assert not orch.conflicts
        assert worker.poll() is None, "the worker's main process died with its child"
        assert victim not in pool_children(worker.pid)
        assert stack.log_dir is not None
        log = log_text(stack.log_dir / "worker.log")
        assert "WorkerLostError" in log or "exited prematurely" in log, log[-3000:]
        print(f"result {took:.1f} s after the pool child {victim} was killed")
