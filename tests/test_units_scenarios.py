"""Scenarios given in engineering units: values converted to the declared units give
the same result as the SI values (the conversions themselves are in test_units.py)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

from modellib import CodedError
from scenario_builder import run_scenario


def heated(q: Any, t0: Any, **params: Any) -> dict[str, Any]:
    return {"mode": "dynamic",
            "elements": {"body": {"model": "ThermalMass", "params": {
                "heat_capacity": 2.0e5, "thermal_resistance": 0.05, **params},
                "initial": {"temperature": t0}}},
            "inputs": {"body.heat_in": q, "body.ambient_temperature": 293.15},
            "outputs": ["body.temperature"],
            "time": {"start": 0, "stop": 600, "step": 60}}


def temperatures(sc: dict[str, Any]) -> np.ndarray:
    return np.asarray(run_scenario(sc)["values"]["body.temperature"])


def test_params_initial_states_and_inputs_in_other_units_give_the_si_result() -> None:
    si = temperatures(heated(1500.0, 303.15))
    given = temperatures(heated({"value": 1.5, "unit": "kW"}, {"value": 30.0, "unit": "degC"},
                                heat_capacity={"value": 200.0, "unit": "kJ/K"},
                                thermal_resistance={"value": 50.0, "unit": "mK/W"}))
    assert np.allclose(given, si, rtol=1e-12, atol=1e-9)


def test_a_series_with_its_unit_is_converted() -> None:
    si = temperatures(heated({"t": [0, 300, 600], "v": [0.0, 2000.0, 0.0]}, 293.15))
    given = temperatures(heated({"t": [0, 300, 600], "v": [0.0, 2.0, 0.0], "unit": "kW"},
                                293.15))
    assert np.allclose(given, si, rtol=1e-12, atol=1e-9)


def static_line(speed: Any, **line: Any) -> dict[str, Any]:
    return {"mode": "static",
            "elements": {"pump": {"model": "CentrifugalPump", "params": {
                "rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 20000.0,
                "efficiency": 0.72}},
                "line": {"model": "Pipe", "params": {
                    "length": 120.0, "diameter": 0.1023, "roughness": 4.5e-5,
                    "static_head": 12.0, "minor_loss": 6.5, **line}}},
            "connections": [{"from": "pump.head", "to": "line.head"},
                            {"from": "line.flow", "to": "pump.flow"}],
            "inputs": {"pump.speed": speed}, "outputs": ["line.flow", "pump.power"]}


def test_a_pump_speed_in_rad_per_s_and_a_pipe_in_millimetres_give_the_si_result() -> None:
    si = run_scenario(static_line(1450.0))["values"]
    given = run_scenario(static_line({"value": 1450 * 2 * math.pi / 60, "unit": "rad/s"},
                                     diameter={"value": 102.3, "unit": "mm"},
                                     roughness={"value": 0.045, "unit": "mm"}))["values"]
    for name in ("line.flow", "pump.power"):
        assert given[name] == pytest.approx(si[name], rel=1e-10)


@pytest.mark.parametrize(("where", "value", "path"), [
    ("param", {"value": 5, "unit": "K"}, "scenario.elements.body.params.heat_capacity.unit"),
    ("initial", {"value": 5, "unit": "bar"}, "scenario.elements.body.initial.temperature.unit"),
    ("input", {"value": 5, "unit": "m3/s"}, "scenario.inputs.body.heat_in.unit"),
    ("input", {"t": [0, 1], "v": [1, 2], "unit": "rpm"}, "scenario.inputs.body.heat_in.unit"),
])
def test_a_unit_of_another_dimension_is_refused_naming_both_units_and_the_path(
        where: str, value: Any, path: str) -> None:
    sc = heated(1500.0, 293.15)
    if where == "param":
        sc["elements"]["body"]["params"]["heat_capacity"] = value
        declared = "J/K"
    elif where == "initial":
        sc["elements"]["body"]["initial"]["temperature"] = value
        declared = "K"
    else:
        sc["inputs"]["body.heat_in"] = value
        declared = "W"
    with pytest.raises(CodedError) as err:
        run_scenario(sc)
    assert err.value.code == "invalid_argument" and err.value.path == path
    assert repr(value["unit"]) in err.value.message and repr(declared) in err.value.message


@pytest.mark.parametrize("value", [{"value": "5", "unit": "kW"}, {"value": 5, "unit": 3},
                                   {"value": 5, "unit": "blorps"}, {"value": math.inf,
                                                                    "unit": "kW"}])
def test_a_malformed_value_with_a_unit_is_refused_with_its_path(value: Any) -> None:
    sc = copy.deepcopy(heated(value, 293.15))
    with pytest.raises(CodedError) as err:
        run_scenario(sc)
    assert err.value.code == "invalid_argument"
    assert str(err.value.path).startswith("scenario.inputs.body.heat_in")


# ----- connections --------------------------------------------------------------------
def motor_and_pump(speed_port: str) -> dict[str, Any]:
    return {"mode": "dynamic",
            "elements": {
                "motor": {"model": "DCMotor", "params": {
                    "resistance": 1.0, "inductance": 0.01, "torque_constant": 0.5,
                    "inertia": 0.02, "friction": 0.001}},
                "pump": {"model": "CentrifugalPump", "params": {
                    "rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 20000.0,
                    "efficiency": 0.72}}},
            "connections": [{"from": f"motor.{speed_port}", "to": "pump.speed"}],
            "inputs": {"motor.voltage": 80.0, "pump.flow": 0.01},
            "outputs": ["motor.speed", "pump.speed", "pump.head"],
            "time": {"start": 0, "stop": 2.0, "step": 0.1},
            "solver": {"rtol": 1e-10, "atol": 1e-12}}


def test_a_motor_speed_in_rad_per_s_drives_a_pump_in_rpm_converted_on_the_way() -> None:
    """DCMotor.speed (rad/s) into CentrifugalPump.speed (rpm): the pump sees the speed
    times 60/(2 pi). Reference: the pump curve H = H0 (n/n_rated)^2 - k Q^2 with n
    converted by hand from the motor's own speed, and the motor's rpm output wired
    without a conversion."""
    out = run_scenario(motor_and_pump("speed"))
    w = np.asarray(out["values"]["motor.speed"])
    n = w * 60 / (2 * math.pi)
    assert np.allclose(out["values"]["pump.speed"], n, rtol=1e-12)
    assert np.allclose(out["values"]["pump.head"], 40.0 * (n / 1450) ** 2 - 20000.0 * 0.01**2,
                       rtol=1e-12)
    same = run_scenario(motor_and_pump("speed_rpm"))
    assert np.allclose(same["values"]["pump.head"], out["values"]["pump.head"], rtol=1e-9)


def test_a_temperature_into_a_flow_is_refused_naming_both_ports_and_units() -> None:
    sc = {"elements": {"body": {"model": "ThermalMass", "params": {
        "heat_capacity": 1e5, "thermal_resistance": 0.1}},
        "tank": {"model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01}}},
        "connections": [{"from": "body.temperature", "to": "tank.inflow"}],
        "inputs": {"body.heat_in": 0.0}}
    with pytest.raises(CodedError) as err:
        run_scenario(sc)
    e = err.value
    assert (e.code, e.path) == ("invalid_scenario", "scenario.connections[0]")
    for text in ("'body.temperature'", "'K'", "'tank.inflow'", "'m3/s'"):
        assert text in e.message, e.message


def test_a_converted_connection_gives_the_same_rows_in_realtime() -> None:
    from scenario_builder import Poll, check_scenario, run_realtime

    class Steer:
        rows: dict[str, list[float]] = {}

        def poll(self, tick: int, t: float) -> Poll:
            return Poll()

        def publish(self, chunk: int, t: list[float], values: dict[str, list[float]],
                    stats: dict[str, Any]) -> None:
            for k, v in values.items():
                self.rows.setdefault(k, []).extend(v)

    raw = motor_and_pump("speed")
    dynamic = run_scenario(raw)
    raw = {**raw, "mode": "realtime", "realtime": {"speed": 20.0, "publish_every": 5}}
    steer, now = Steer(), [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    run_realtime(check_scenario(raw), steer, clock=lambda: now[0], sleep=sleep)
    for name in ("pump.speed", "pump.head"):
        assert np.allclose(steer.rows[name], dynamic["values"][name], rtol=1e-9)


# ----- outputs in the units asked for -------------------------------------------------
def test_outputs_in_m3_per_h_and_kw_and_every_result_says_its_units() -> None:
    si = run_scenario(static_line(1450.0))
    asked = run_scenario({**static_line(1450.0),
                          "units": {"line.flow": "m3/h", "pump.power": "kW"}})
    assert asked["values"]["line.flow"] == pytest.approx(si["values"]["line.flow"] * 3600,
                                                         rel=1e-12)
    assert asked["values"]["pump.power"] == pytest.approx(si["values"]["pump.power"] / 1000,
                                                          rel=1e-12)
    assert si["units"] == {"line.flow": "m3/s", "pump.power": "W"}
    assert asked["units"] == {"line.flow": "m3/h", "pump.power": "kW"}


def test_dynamic_outputs_and_a_converted_input_port_in_the_units_asked_for() -> None:
    sc = {**motor_and_pump("speed"), "units": {"motor.speed": "rpm", "pump.speed": "Hz"}}
    out, si = run_scenario(sc), run_scenario(motor_and_pump("speed"))
    w = np.asarray(si["values"]["motor.speed"])
    assert np.allclose(out["values"]["motor.speed"], w * 60 / (2 * math.pi), rtol=1e-12)
    assert np.allclose(out["values"]["pump.speed"], w / (2 * math.pi), rtol=1e-12)  # rev/s
    assert out["units"]["pump.head"] == "m" and out["units"]["pump.speed"] == "Hz"


@pytest.mark.parametrize(("units_", "code", "path"), [
    ({"line.flow": "kW"}, "invalid_argument", "scenario.units.line.flow"),
    ({"line.flow": "blorps"}, "invalid_argument", "scenario.units.line.flow"),
    ({"line.velocity": "m/s"}, "invalid_scenario", "scenario.units.line.velocity"),
    ({"nope.flow": "m3/h"}, "invalid_scenario", "scenario.units.nope.flow"),
])
def test_a_unit_asked_for_an_output_is_checked(units_: dict[str, str], code: str,
                                               path: str) -> None:
    with pytest.raises(CodedError) as err:
        run_scenario({**static_line(1450.0), "units": units_})
    assert (err.value.code, err.value.path) == (code, path), err.value.message


def test_a_valve_pressure_drop_in_bar_gives_the_pascal_result() -> None:
    """Valve V-1's flow for a drop of 2 bar equals that for 2e5 Pa, reported in m3/h:
    Q = Kv sqrt((dp / 1 bar) / (rho / 1000 kg/m3)) at full opening (IEC 60534-2-1)."""
    def valve(dp: Any) -> dict[str, Any]:
        return {"elements": {"v": {"model": "Valve", "params": {
            "kv": 63.0, "characteristic": "equal_percentage", "rangeability": 50.0}}},
            "inputs": {"v.opening": 1.0, "v.dp": dp}, "outputs": ["v.flow"],
            "units": {"v.flow": "m3/h"}}
    pa = run_scenario(valve(2.0e5))["values"]["v.flow"]
    bar = run_scenario(valve({"value": 2.0, "unit": "bar"}))["values"]["v.flow"]
    assert bar == pytest.approx(pa, rel=1e-12)
    assert pa == pytest.approx(63.0 * math.sqrt(2.0 / (998.0 / 1000.0)), rel=1e-3)
