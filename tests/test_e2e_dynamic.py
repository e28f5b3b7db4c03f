"""Dynamic runs over MQTT with real workers: results, templates, and long series
streamed as `data` chunks (a stack with TWIN_MAX_RESULT_ROWS=100)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator
from tests.test_units_scenarios import motor_and_pump

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_rows(redis_server: Any, mqtt_server: Any,
               tmp_path_factory: Any) -> Iterator[Orchestrator]:
    env = stack_env(redis_server, mqtt_server, TWIN_MAX_RESULT_ROWS="100")
    with running_stack(env, tmp_path_factory.mktemp("logs"), workers=2) as stack:
        s = stack.settings
        orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        yield orch
        orch.close()


def draining(rid: str, stop: float, step: float) -> dict[str, Any]:
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"tank": {"model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01},
                              "initial": {"level": 2.0}}},
        "outputs": ["tank.level"], "time": {"start": 0, "stop": stop, "step": step}}}


def test_a_short_dynamic_run_returns_its_columns(small_rows: Orchestrator) -> None:
    rid = new_id("dyn")
    replies = small_rows.request(draining(rid, 50, 1.0), timeout=30)
    assert [r["type"] for r in replies] == ["ack", "result"]
    assert replies[0]["queue"] == "twin.long"
    result = replies[1]
    assert result["t"][0] == 0 and result["t"][-1] == 50 and len(result["t"]) == 51
    t = np.asarray(result["t"])
    exact = (np.sqrt(2.0) - 0.62 * 0.01 * np.sqrt(9.80665 / 2) * t) ** 2
    assert np.allclose(result["values"]["tank.level"], exact, rtol=1e-4)


def test_a_long_series_is_streamed_in_chunks_then_one_result(small_rows: Orchestrator) -> None:
    rid = new_id("stream")
    replies = small_rows.request(draining(rid, 100, 0.1), timeout=60)  # 1001 rows
    kinds = [r["type"] for r in replies]
    assert kinds == ["ack", *["data"] * 11, "result"]
    assert [r["seq"] for r in replies] == list(range(13))
    data = [r for r in replies if r["type"] == "data"]
    t = [x for r in data for x in r["t"]]
    assert t == pytest.approx([round(0.1 * k, 10) for k in range(1001)])
    assert sum(len(r["values"]["tank.level"]) for r in data) == 1001
    result = replies[-1]
    assert result["streamed"] is True and result["chunks"] == 11 and result["rows"] == 1001
    assert "values" not in result


def test_a_template_runs_with_its_arguments(small_rows: Orchestrator) -> None:
    rid = new_id("tpl")
    replies = small_rows.request({"id": rid, "cmd": "run", "template": "pump_to_tank",
                                  "args": {"speed": 1300, "stop": 60, "step": 1}}, timeout=60)
    result = replies[-1]
    assert result["type"] == "result", result
    assert len(result["t"]) == 61
    assert result["post"]["mean_power"] > 0
    (bad,) = small_rows.request({"id": new_id("tpl"), "cmd": "run", "template": "pump_to_tnak",
                                 "args": {}})
    assert (bad["code"], bad["path"]) == ("unknown_template", "template")
    assert "pump_to_tank" in bad["message"]


def test_describe_lists_the_templates(small_rows: Orchestrator) -> None:
    (reply,) = small_rows.request({"id": new_id("describe"), "cmd": "describe"})
    assert {"pump_to_tank", "tank_draining", "pump_operating_point", "level_control"} <= set(
        reply["templates"])
    assert reply["templates"]["pump_to_tank"]["args"]["speed"]["unit"] == "rpm"


# ----- units, end to end ----------------------------------------------------------------
def motor_pump(rid: str, speed_port: str, **more: Any) -> dict[str, Any]:
    """The motor-pump scenario of the units tests as a command, its inputs in ``more``."""
    scenario = {**motor_and_pump(speed_port),
                "outputs": ["motor.speed", "pump.head", "pump.power"], **more}
    return {"id": rid, "cmd": "run", "scenario": scenario}


def test_units_end_to_end_converted_connections_inputs_and_outputs(
        small_rows: Orchestrator) -> None:
    """Over MQTT with real workers: a motor's speed (rad/s) drives a pump (rpm),
    converted on the way; inputs in other units (an armature voltage in mV, a pump
    flow in m3/h) give the SI result; outputs come in rpm and kW, and the
    result says the unit of each. Reference: the same scenario in SI with the pump
    curve H = H0 (n/n_rated)^2 - k Q^2 and n converted by hand."""
    si = small_rows.request(motor_pump(new_id("u-si"), "speed", inputs={
        "motor.voltage": 80.0, "pump.flow": 0.01}), timeout=30)[-1]
    given = small_rows.request(motor_pump(new_id("u-eng"), "speed", inputs={
        "motor.voltage": {"value": 80_000.0, "unit": "mV"},
        "pump.flow": {"value": 36.0, "unit": "m3/h"}},
        units={"motor.speed": "rpm", "pump.power": "kW"}), timeout=30)[-1]
    assert si["type"] == given["type"] == "result", (si, given)
    w = np.asarray(si["values"]["motor.speed"])
    n = w * 60 / (2 * np.pi)
    assert np.allclose(si["values"]["pump.head"], 40.0 * (n / 1450) ** 2 - 2.0, rtol=1e-9)
    assert np.allclose(given["values"]["pump.head"], si["values"]["pump.head"], rtol=1e-9)
    assert np.allclose(given["values"]["motor.speed"], n, rtol=1e-9)
    assert np.allclose(np.asarray(given["values"]["pump.power"]) * 1000,
                       si["values"]["pump.power"], rtol=1e-9)
    assert si["units"] == {"motor.speed": "rad/s", "pump.head": "m", "pump.power": "W"}
    assert given["units"] == {"motor.speed": "rpm", "pump.head": "m", "pump.power": "kW"}


def test_a_temperature_wired_into_a_flow_is_refused_end_to_end(
        small_rows: Orchestrator) -> None:
    rid = new_id("u-bad")
    replies = small_rows.request({"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"body": {"model": "ThermalMass", "params": {
            "heat_capacity": 1e5, "thermal_resistance": 0.1}},
            "tank": {"model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01}}},
        "connections": [{"from": "body.temperature", "to": "tank.inflow"}],
        "inputs": {"body.heat_in": 0.0}, "time": {"start": 0, "stop": 10, "step": 1}}},
        timeout=30)
    (error,) = replies
    assert error["type"] == "error" and error["code"] == "invalid_scenario"
    assert error["path"] == "scenario.connections[0]"
    assert "'K'" in error["message"] and "'m3/s'" in error["message"]
