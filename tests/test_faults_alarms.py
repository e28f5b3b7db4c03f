"""Fault injection for the live alarms: no worker for a queue with jobs, and the broker
away while a real-time run raises and clears alarms. Own Redis and Mosquitto
(:mod:`tests.faults`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_id, running_stack
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import servers as servers
from tests.faults.harness import Servers, controller, controller_env, wait_persisted
from tests.orchestrator import Orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def alarms_of(orch: Orchestrator, alarm: str | None = None) -> list[dict[str, Any]]:
    """The controller's alarm messages, once each by seq, in seq order."""
    topic = f"{orch.prefix}/{orch.cid}/alarms"
    found = {m["seq"]: m for t, m, _ in list(orch.messages) if t == topic}
    return [found[k] for k in sorted(found) if alarm is None or found[k]["alarm"] == alarm]


@pytest.mark.timeout(120)
def test_jobs_with_no_worker_raise_no_worker_and_a_worker_clears_it(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    ctl = controller(servers, lambda *a, **k: orchestrators(*a, **k, alarms=True), tmp_path)
    orch, parts = ctl.orch, ctl.parts
    try:
        ctl.online()  # the ingress, and no worker at all
        rid = new_id("waits")
        orch.send({"id": rid, "cmd": "run", "scenario": {
            "mode": "dynamic",
            "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
            "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 10, "step": 1}}})
        orch.wait(lambda: orch.has(rid, "ack"), 20, "the ack")
        queued = time.monotonic()
        orch.wait(lambda: bool(alarms_of(orch, "no_worker")), 30, "no_worker raised")
        took = time.monotonic() - queued
        raised = alarms_of(orch, "no_worker")[0]
        assert (raised["source"], raised["event"], raised["state"]) == (
            "controller", "raised", "unack_active")
        assert "twin.long (1 waiting)" in raised["message"]
        assert took < 20, f"no_worker raised {took:.0f} s after the job was queued"
        parts.worker(name="w1")
        started = time.monotonic()
        orch.wait(lambda: len(alarms_of(orch, "no_worker")) >= 2, 30, "no_worker cleared")
        cleared = alarms_of(orch, "no_worker")[1]
        assert (cleared["event"], cleared["state"]) == ("cleared", "unack_rtn")
        assert orch.wait_final(rid, timeout=30)[-1]["status"] == "ok"
        print(f"no_worker raised {took:.1f} s after the job was queued, cleared "
              f"{time.monotonic() - started:.1f} s after a worker was started")
    finally:
        parts.stop()


@pytest.mark.timeout(120)
def test_alarms_raised_while_the_broker_is_down_arrive_when_it_is_back_in_seq_order(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """A real-time sine (0.5 Hz) watched by a high limit raises and clears an alarm every
    2 s; the broker is killed for ~6 s. The alarm messages stored meanwhile arrive
    when it is back: every seq once, none missing, in order."""
    redis, broker = servers.redis(), servers.mosquitto()
    env = controller_env(redis, broker, tmp_path)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid, status=False, alarms=True)
    with running_stack(env, tmp_path / "logs", workers=1, realtime=1):
        wait_persisted(orch)
        rid = new_id("sine")
        orch.send({"id": rid, "cmd": "run", "scenario": {
            "mode": "realtime",
            "elements": {"wave": {"model": "Sine", "params": {"frequency": 0.5}}},
            "outputs": ["wave.y"], "time": {"start": 0, "step": 0.05},
            "realtime": {"publish_every": 20},
            "alarms": [{"name": "wave-high", "on": "wave.y", "high": 0.5}]}},
            f"{prefix}/{cid}/cmd")
        orch.wait(lambda: len(alarms_of(orch)) >= 2, 30, "the first alarms")
        before = len(alarms_of(orch))
        broker.kill()
        time.sleep(6.0)
        broker.start()
        orch.wait(lambda: len(alarms_of(orch)) >= before + 5, 60,
                  "the alarms of the outage after the broker came back")
        orch.send({"id": new_id("stop"), "cmd": "stop", "target": rid}, f"{prefix}/{cid}/cmd")
        orch.wait_final(rid, timeout=30)
        time.sleep(1.0)
        sent = alarms_of(orch)
        seqs = [m["seq"] for m in sent]
        assert seqs == list(range(len(seqs))), f"alarm seq {seqs} has a gap"
        events = [m["event"] for m in sent if m["alarm"] == "wave-high"]
        assert events[:6] == ["raised", "cleared"] * 3  # alternating, none lost
        topic = f"{prefix}/{cid}/alarms"
        arrival = [m["seq"] for t, m, _ in list(orch.messages) if t == topic]
        first_copies = list(dict.fromkeys(arrival))
        assert first_copies == sorted(first_copies), "alarm messages out of seq order"
