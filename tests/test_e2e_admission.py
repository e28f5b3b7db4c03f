"""Admission and status: with no worker taking jobs, the queue fills; above
TWIN_MAX_QUEUED a run is refused at once with limit_exceeded and the depth."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import new_id, stack_env
from tests.orchestrator import Orchestrator

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def ingress_alone(redis_server: Any, mqtt_server: Any, tmp_path: Any,
                  **settings: str) -> Iterator[Orchestrator]:
    """An ingress with no worker (every job waits), online, and an orchestrator."""
    env = stack_env(redis_server, mqtt_server, **settings)
    ingress = subprocess.Popen([sys.executable, "-m", "twinctl", "ingress"],
                               env={**os.environ, **env}, start_new_session=True,
                               stdout=open(tmp_path / "ingress.log", "wb"),
                               stderr=subprocess.STDOUT)
    orch = Orchestrator(mqtt_server.url.split("//")[1].split(":")[0],
                        int(mqtt_server.url.rsplit(":", 1)[1]), env["TWIN_MQTT_PREFIX"],
                        env["TWIN_CONTROLLER_ID"])
    try:
        deadline = time.monotonic() + 30
        while not any(t.endswith("/status") and b.get("state") == "online"
                      for t, b, _ in list(orch.messages)):
            assert time.monotonic() < deadline, "the ingress did not come online"
            time.sleep(0.05)
        yield orch
    finally:
        orch.close()
        os.killpg(ingress.pid, signal.SIGTERM)
        ingress.wait(20)


def acked(orch: Orchestrator, commands: list[dict[str, Any]]) -> None:
    for command in commands:  # no worker: acked and left waiting in the queue
        orch.send(command)
    deadline = time.monotonic() + 20
    while len([r for c in commands for r in orch.replies(c["id"]) if r["type"] == "ack"]) \
            < len(commands):
        assert time.monotonic() < deadline, "runs were not acked"
        time.sleep(0.05)
    time.sleep(1.2)  # the ingress reads the queue depths twice a second


def test_runs_beyond_the_queue_limit_are_refused_with_the_depth(
    redis_server: Any, mqtt_server: Any, tmp_path: Any
) -> None:
    with ingress_alone(redis_server, mqtt_server, tmp_path, TWIN_MAX_QUEUED="3") as orch:
        run = {"cmd": "run", "scenario": {
            "elements": {"p": {"model": "CentrifugalPump", "instance": "P-101"}},
            "inputs": {"p.speed": 1450, "p.flow": 0.0}}}
        acked(orch, [{"id": new_id("q"), **run} for _ in range(3)])
        refused = new_id("q")
        (reply,) = orch.request({"id": refused, **run})
        assert (reply["type"], reply["code"]) == ("error", "limit_exceeded")
        assert reply["queued"] == 3 and "3 jobs waiting" in reply["message"]
        # a ping still works, and the retained status shows the depth
        assert orch.request({"id": new_id("ping"), "cmd": "ping"})[0]["type"] == "pong"
        deadline = time.monotonic() + 15
        while True:
            status = [b for t, b, _ in orch.messages if t.endswith("/status")]
            if status and status[-1].get("queues", {}).get("twin.short") == 3:
                break
            assert time.monotonic() < deadline, f"status without the depth: {status[-1:]}"
            time.sleep(0.1)


def test_real_time_runs_count_in_admission_too(
    redis_server: Any, mqtt_server: Any, tmp_path: Any
) -> None:
    """Open-ended real-time runs never end: they must not escape the queue limit."""
    with ingress_alone(redis_server, mqtt_server, tmp_path, TWIN_MAX_QUEUED="2") as orch:
        def realtime(rid: str) -> dict[str, Any]:
            return {"id": rid, "cmd": "run", "scenario": {
                "mode": "realtime",
                "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
                "inputs": {"lag.u": 1.0}, "time": {"start": 0, "step": 0.1}}}

        acked(orch, [realtime(new_id("rt")) for _ in range(2)])
        (reply,) = orch.request(realtime(new_id("rt")))
        assert (reply["type"], reply["code"]) == ("error", "limit_exceeded"), reply
        assert reply["queued"] == 2
