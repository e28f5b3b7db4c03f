"""`twinctl up` restarts a part that dies (Stack.supervise), with backoff, instead of
stopping the whole controller; a real stack: its batch worker SIGKILLed whole, then
restarted, and a dynamic run answered by the new one."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
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
    assert stack.failed() is None
    with orchestrator_of(stack) as orch:  # the new worker takes the long queue's jobs
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
