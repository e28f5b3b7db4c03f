"""The commands the fault tests send: runs that take a known time or stream a known
number of chunks, and the static runs that are sent by the batch."""

from __future__ import annotations

from typing import Any

from tests.conftest import new_id
from tests.orchestrator import Orchestrator
from tests.test_e2e import pump_run


def draining(rid: str, stop: float, step: float, max_step: float) -> dict[str, Any]:
    """A tank draining through its outlet (Torricelli), with a small solver step so
    that it takes a second or two of CPU before its rows are stored."""
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"tank": {"model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01},
                              "initial": {"level": 2.0}}},
        "outputs": ["tank.level"], "time": {"start": 0, "stop": stop, "step": step},
        "solver": {"max_step": max_step}}}


def pid_loop(rid: str, stop: float) -> dict[str, Any]:
    """A sampled PI loop on a first-order plant: 10 samples per simulated second, each a
    solver segment — about 3-5 s of CPU for stop=800."""
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {
            "pid": {"model": "PIDController", "params": {"kp": 2.0, "ki": 0.5,
                                                         "sample_time": 0.1}},
            "plant": {"model": "FirstOrderLag", "params": {"time_constant": 5.0, "gain": 2.0}}},
        "connections": [{"from": "pid.output", "to": "plant.u"},
                        {"from": "plant.y", "to": "pid.measurement"}],
        "inputs": {"pid.setpoint": 1.0}, "outputs": ["plant.y"],
        "time": {"start": 0, "stop": stop, "step": 1.0}}}


def static_run(rid: str, speed: float = 1300) -> dict[str, Any]:
    """The pump P-101 at ``speed`` (and 0.025 m³/s): answered at once by a worker."""
    return pump_run(rid, speed)


def acked_static_runs(orch: Orchestrator, cmd_topic: str, n: int, tag: str) -> list[str]:
    """Send ``n`` static runs (each its own speed) and wait until all are acked."""
    ids = [new_id(tag) for _ in range(n)]
    for k, rid in enumerate(ids):
        orch.send(static_run(rid, 1000 + 50 * k), cmd_topic)
    orch.wait(lambda: all(orch.has(r, "ack") for r in ids), 30, "the acks")
    return ids
