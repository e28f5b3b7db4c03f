"""`twinctl up` restarts a part that dies (Stack.supervise), with backoff, instead of
stopping the whole controller; a real stack: its batch worker SIGKILLed whole, then
restarted, and a dynamic run answered by the new one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_id, orchestrator_of, running_stack, stack_env
from twinctl.stack import RESTART_FIRST_S, Stack

pytestmark = pytest.mark.integration


@pytest.fixture()
def supervised(redis_server: Any, mqtt_server: Any, tmp_path: Any) -> Iterator[Stack]:
    with running_stack(stack_env(redis_server, mqtt_server), tmp_path / "logs",
                       workers=1) as stack:
        yield stack


def test_a_part_that_dies_is_restarted_with_backoff(supervised: Stack) -> None:
    stack = supervised
    old = stack.procs["worker"]
    os.killpg(old.pid, signal.SIGKILL)  # the worker and its pool, at once
    old.wait(10)
    said: list[str] = []
    deadline = time.monotonic() + 30
    while not any("restarted" in line for line in said):
        assert time.monotonic() < deadline, said
        said += stack.supervise()
        time.sleep(0.1)
    assert said[0].startswith("twinctl: the worker stopped (exit code -9)"), said
    assert f"restarting it in {RESTART_FIRST_S:g} s" in said[0]
    assert stack.restarts["worker"] == 1 and stack.procs["worker"].pid != old.pid
    assert stack.restarted == {"worker": 1}
    assert stack.failed() is None
    with orchestrator_of(stack) as orch:  # the new worker takes the long queue's jobs
        cid = stack.settings.controller_id
        # the retained status counts the restart (within the monitor's 5 s)
        orch.wait(lambda: (orch.last_status(cid) or {}).get("restarts") == {"worker": 1}, 15,
                  "the restart in the status")
        rid = new_id("after-restart")
        replies = orch.request({"id": rid, "cmd": "run", "scenario": {
            "mode": "dynamic",
            "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
            "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 2, "step": 1}}}, 60)
        assert [r["type"] for r in replies] == ["ack", "result"], replies


def test_the_backoff_doubles_and_resets_after_a_long_run() -> None:
    class Dead:
        returncode = 1

        @staticmethod
        def poll() -> int:
            return 1

    stack = Stack(env={})
    stack.procs["worker"] = Dead()  # type: ignore[assignment]
    stack._argv["worker"] = ["true"]
    stack._started["worker"] = 0.0
    stack.restarts["worker"] = 3  # died quickly three times already
    (line,) = stack.supervise(now=10.0)
    assert "restarting it in 8 s" in line
    stack._due.clear()
    stack._started["worker"] = 0.0
    (line,) = stack.supervise(now=1000.0)  # it ran 1000 s before dying: from 1 s again
    assert "restarting it in 1 s" in line


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
            todo += [k for k in kids if k not in found]
            found.update(kids)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(120)
def test_nothing_outlives_twinctl_up_killed_while_a_real_time_job_runs(
        redis_server: Any, mqtt_server: Any, tmp_path: Path) -> None:
    """`twinctl up` SIGKILLed (it cannot stop its parts) while an open-ended real-time
    job runs: once the real-time worker and its pool child ran on with parent 1 for
    ~21 minutes. Now every part is gone within ~15 s (the workers watch their
    supervisor: SIGTERM with its death, killed 10 s later if still there)."""
    env = {**os.environ, **stack_env(redis_server, mqtt_server)}
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "twinctl", "up", "--workers", "1",
                               "--realtime", "1"], env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while b"twinctl: ready" not in log.read_bytes():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        settings = Stack(env=env).settings
        from tests.orchestrator import Orchestrator

        orch = Orchestrator(settings.mqtt.host, settings.mqtt.port, settings.mqtt_prefix,
                            settings.controller_id)
        try:
            rid = new_id("rt")
            orch.send({"id": rid, "cmd": "run", "scenario": {
                "mode": "realtime", "time": {"step": 0.1},
                "elements": {"lag": {"model": "FirstOrderLag",
                                     "params": {"time_constant": 1}}},
                "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"],
                "realtime": {"publish_every": 5}}})
            orch.wait(lambda: orch.has(rid, "data"), 30, "the real-time job's rows")
        finally:
            orch.close()
        parts = _descendants(up.pid)
        assert len(parts) >= 4, parts  # ingress, workers and their pools
        up.kill()  # SIGKILL: no chance to stop its parts
        up.wait(10)
        killed = time.monotonic()
        while any(_alive(p) for p in parts):
            left = [p for p in parts if _alive(p)]
            assert time.monotonic() - killed < 25, f"still running: {left}"
            time.sleep(0.5)
    finally:
        if up.poll() is None:
            up.kill()
        for pid in _descendants(up.pid) if up.poll() is None else ():
            os.kill(pid, signal.SIGKILL)
