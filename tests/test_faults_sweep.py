"""Fault injection: a worker killed whole in the middle of a sweep.

Its own Redis, Mosquitto, ingress and two single-process workers
(:mod:`tests.faults`); one worker is SIGKILLed with its pool (its process group, as a
container OOM kill or a power cut would) while it runs a chunk of the sweep.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import new_id
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import servers as servers
from tests.faults.harness import (
    BugSymptom,
    Servers,
    assert_gapless,
    busy_child,
    controller,
    wait_worker,
)
from tests.orchestrator import Orchestrator
from tests.test_e2e_sweep import draining, torricelli

pytestmark = [pytest.mark.integration, pytest.mark.fault]

CASES = 48


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_sweep_loses_no_row_and_doubles_none(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """48 cases of ~0.2 s in chunks of a few, on two workers; once rows arrive, the first
    worker is killed whole, its chunk's message left unacknowledged. The ingress's sweep
    of messages no live worker holds puts it back, the other worker runs it, and the
    table has every case once, each right (Torricelli's closed form), in one result
    after gapless data replies (none doubled)."""
    ctl = controller(servers, orchestrators, tmp_path)
    redis, orch, parts = ctl.redis, ctl.orch, ctl.parts
    try:
        ctl.online()
        workers = [parts.worker(name=name) for name in ("w1", "w2")]
        wait_worker(redis.url, 30, count=2)  # both up: each takes chunks
        rid = new_id("sweep")
        scenario = draining(stop=600, step=60)
        scenario["elements"]["tank"]["params"]["outlet_area"] = 0.001
        scenario["solver"] = {"max_step": 0.5}  # 1200 solver steps a case
        orch.send({"id": rid, "cmd": "run", "scenario": scenario, "sweep": {
            "grid": {"tank.area": [1.0 + k / 10 for k in range(CASES)]},
            "collect": ["tank.level"]}})
        orch.wait(lambda: orch.has(rid, "data"), 60, f"the first rows of {rid}")
        chunks = orch.replies(rid)[0]["chunks"]
        assert chunks >= 8
        busy_child(workers[0].pid)  # w1 is running a chunk (it holds its message)
        os.killpg(workers[0].pid, signal.SIGKILL)  # w1 and its pool, at once
        killed = time.monotonic()
        try:
            orch.wait(lambda: orch.finals(rid) > 0, 120, "the sweep's result after the kill")
        except AssertionError as exc:
            raise BugSymptom(str(exc)) from None
        took = time.monotonic() - killed
        time.sleep(1.0)
        replies = assert_gapless(orch, rid)
        assert not orch.conflicts
        result = replies[-1]
        assert result["type"] == "result" and result["status"] == "ok", result
        rows = result["rows"]
        assert [r[0] for r in rows] == list(range(CASES)), "a case lost or doubled"
        assert result["failed"] == {} and result["stats"]["done"] == CASES
        for row in rows:
            assert row[2] == pytest.approx(torricelli(600, row[1], 0.001, 2.0), rel=1e-4)
        data = [r for r in replies if r["type"] == "data"]
        assert sorted(r["chunk"] for r in data) == list(range(chunks)), "a chunk's data doubled"
        assert sorted(row[0] for r in data for row in r["rows"]) == list(range(CASES))
        print(f"the sweep answered {took:.1f} s after its worker was killed")
        assert "queued again" in parts.log("ingress")
    finally:
        parts.stop()
