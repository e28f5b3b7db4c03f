"""Dynamic mode against analytic solutions (each reference named in its test)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from modellib import CodedError
from scenario_builder import expand_template, run_scenario

G = 9.80665


def dyn(elements: dict, stop: float, step: float, **more: Any) -> dict[str, Any]:
    return {"mode": "dynamic", "elements": elements,
            "time": {"start": 0.0, "stop": stop, "step": step}, **more}


def test_tank_draining_follows_torricelli_to_empty_and_stays_dry() -> None:
    # Torricelli: sqrt(h) = sqrt(h0) - (Cd a / A) sqrt(g/2) t until the tank is empty at
    # T = (A / (Cd a)) sqrt(2 h0 / g); then h = 0 (the 'dry' event is located).
    area, outlet, cd, h0 = 1.5, 0.008, 0.62, 2.5
    out = run_scenario(dyn({"tank": {"model": "Tank", "params": {
        "area": area, "outlet_area": outlet}, "initial": {"level": h0}}}, 250.0, 0.1,
        solver={"rtol": 1e-10, "atol": 1e-12}))
    t = np.asarray(out["t"])
    h = np.asarray(out["values"]["tank.level"])
    c = cd * outlet / area * math.sqrt(G / 2)
    empty = math.sqrt(h0) / c
    exact = np.where(t < empty, (math.sqrt(h0) - c * np.minimum(t, empty)) ** 2, 0.0)
    assert empty < 250.0
    wet = t < empty
    assert np.max(np.abs(h[wet] - exact[wet]) / exact[wet]) <= 1e-4
    assert np.all(h[~wet] == 0.0)
    assert out["stats"]["events"] >= 1
    assert len(t) == 2501 and t[0] == 0.0 and t[-1] == 250.0


def test_default_tolerances_are_good_to_1e_4_on_the_draining_curve() -> None:
    area, outlet, h0 = 1.0, 0.01, 2.0
    out = run_scenario(dyn({"tank": {"model": "Tank", "params": {
        "area": area, "outlet_area": outlet}, "initial": {"level": h0}}}, 100.0, 0.5))
    t, h = np.asarray(out["t"]), np.asarray(out["values"]["tank.level"])
    c = 0.62 * outlet / area * math.sqrt(G / 2)
    exact = (math.sqrt(h0) - c * t) ** 2
    assert np.max(np.abs(h - exact) / exact) <= 1e-4


def test_discrete_pi_loop_on_a_first_order_plant_matches_the_exact_recursion() -> None:
    # Plant tau dy/dt = K u - y under zero-order hold is exactly
    #   y[k+1] = a y[k] + K (1 - a) u[k],  a = exp(-T/tau)   (Franklin, Powell & Workman,
    #   Digital Control of Dynamic Systems, 3rd ed., sec. 4.3.3, ZOH equivalent)
    # with the PI law u[k] = kp e[k] + I[k], I[k] = I[k-1] + ki T e[k] (backward Euler).
    kp, ki, ts, tau, gain = 2.0, 0.5, 0.1, 5.0, 2.0
    out = run_scenario(dyn({
        "pid": {"model": "PIDController", "params": {"kp": kp, "ki": ki, "sample_time": ts}},
        "plant": {"model": "FirstOrderLag", "params": {"time_constant": tau, "gain": gain}}},
        60.0, ts,
        connections=[{"from": "pid.output", "to": "plant.u"},
                     {"from": "plant.y", "to": "pid.measurement"}],
        inputs={"pid.setpoint": 1.0}, outputs=["plant.y", "pid.output"],
        solver={"rtol": 1e-12, "atol": 1e-14}))
    a = math.exp(-ts / tau)
    y, integral, expected_y, expected_u = 0.0, 0.0, [], []
    for _ in range(len(out["t"])):
        e = 1.0 - y
        integral += ki * ts * e
        u = kp * e + integral
        expected_y.append(y)
        expected_u.append(u)
        y = a * y + gain * (1 - a) * u
    assert np.allclose(out["values"]["plant.y"], expected_y, rtol=0, atol=1e-9)
    assert np.allclose(out["values"]["pid.output"], expected_u, rtol=0, atol=1e-9)
    assert out["values"]["plant.y"][-1] == pytest.approx(1.0, abs=1e-6)  # settles
    # one update per instant, the last at t = stop too (its row shows it)
    assert out["stats"]["samples"] == len(out["t"])


def test_hysteresis_switches_exactly_at_its_levels() -> None:
    # An integrator x' = u_on - d (a state-space block A=0, B=[1 -1]) under on/off control:
    # off, x falls at d = 0.5 from 1.5 to low = 1 (t = 1), on it rises at 2 - 0.5 = 1.5 to
    # high = 2 (t = 1 + 2/3), off again ... a piecewise-linear saw tooth known exactly.
    out = run_scenario(dyn({
        "ctl": {"model": "HysteresisController",
                "params": {"low": 1.0, "high": 2.0, "on_value": 2.0, "off_value": 0.0}},
        "x": {"model": "LinearStateSpace", "params": {"A": [[0.0]], "B": [[1.0, -1.0]],
                                                       "C": [[1.0]]},
              "initial": {"x1": 1.5}}}, 10.0, 0.01,
        connections=[{"from": "ctl.output", "to": "x.u1"},
                     {"from": "x.y1", "to": "ctl.measurement"}],
        inputs={"x.u2": 0.5}, outputs=["x.y1", "ctl.output"]))

    def exact(t: float) -> float:
        level, now, on = 1.5, 0.0, False
        while True:
            rate = 1.5 if on else -0.5
            target = 2.0 if on else 1.0
            hit = now + (target - level) / rate
            if hit >= t:
                return level + rate * (t - now)
            level, now, on = target, hit, not on

    expected = [exact(float(t)) for t in out["t"]]
    assert np.allclose(out["values"]["x.y1"], expected, rtol=0, atol=1e-9)
    assert min(out["values"]["x.y1"]) >= 1.0 - 1e-9
    assert max(out["values"]["x.y1"]) <= 2.0 + 1e-9
    assert out["stats"]["events"] >= 8


def test_a_step_between_output_times_is_located() -> None:
    # first-order lag of a unit step at t = 2.345: y = K (1 - exp(-(t - ts)/tau)) after it
    out = run_scenario(dyn({
        "step": {"model": "Step", "params": {"initial": 0.0, "final": 1.0, "step_time": 2.345}},
        "lag": {"model": "FirstOrderLag", "params": {"time_constant": 1.5, "gain": 3.0}}},
        10.0, 0.1, connections=[{"from": "step.y", "to": "lag.u"}],
        solver={"rtol": 1e-10, "atol": 1e-12}))
    t = np.asarray(out["t"])
    expected = np.where(t < 2.345, 0.0, 3.0 * (1 - np.exp(-(t - 2.345) / 1.5)))
    assert np.allclose(out["values"]["lag.y"], expected, rtol=0, atol=1e-8)


def test_a_ramp_input_series_is_interpolated_linearly() -> None:
    # tau y' = K u - y with u = s t: y = K s (t - tau (1 - exp(-t/tau)))
    s, tau, k = 0.3, 2.0, 1.5
    out = run_scenario(dyn({"lag": {"model": "FirstOrderLag",
                                    "params": {"time_constant": tau, "gain": k}}}, 20.0, 0.5,
                           inputs={"lag.u": {"t": [0, 20], "v": [0, 20 * s]}},
                           solver={"rtol": 1e-10, "atol": 1e-12}))
    t = np.asarray(out["t"])
    assert np.allclose(out["values"]["lag.y"], k * s * (t - tau * (1 - np.exp(-t / tau))),
                       rtol=0, atol=1e-8)


def test_the_algebraic_loop_is_solved_at_every_output_time() -> None:
    # pump -> line -> tank with the speed ramped: at every instant the flow is the static
    # operating point of pump and line at that speed (independent static solves)
    pump = {"model": "CentrifugalPump", "params": {
        "rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 2.0e4,
        "efficiency": 0.72}}
    line = {"model": "Pipe", "params": {"length": 120.0, "diameter": 0.1023,
                                        "roughness": 4.5e-5, "static_head": 12.0,
                                        "minor_loss": 6.5}}
    out = run_scenario(dyn({"pump": pump, "line": line, "tank": {
        "model": "Tank", "params": {"area": 4.9, "outlet_area": 0.0078},
        "initial": {"level": 1.0}}}, 100.0, 10.0,
        connections=[{"from": "pump.head", "to": "line.head"},
                     {"from": "line.flow", "to": "pump.flow"},
                     {"from": "line.flow", "to": "tank.inflow"}],
        inputs={"pump.speed": {"t": [0, 100], "v": [1450, 1300]}},
        outputs=["line.flow", "tank.level"]))
    for t, flow in zip(out["t"], out["values"]["line.flow"], strict=True):
        speed = 1450 - 1.5 * t
        static = run_scenario({"elements": {"pump": pump, "line": line},
                               "connections": [{"from": "pump.head", "to": "line.head"},
                                               {"from": "line.flow", "to": "pump.flow"}],
                               "inputs": {"pump.speed": speed}})
        assert flow == pytest.approx(static["values"]["line.flow"], rel=1e-8)


def test_post_runs_on_the_series() -> None:
    out = run_scenario(dyn({"s": {"model": "Sine", "params": {"amplitude": 2.0,
                                                             "frequency": 0.5}}}, 4.0, 0.001,
                           post=[{"function": "rms", "args": {"x": "s.y"}, "as": "rms"},
                                 {"function": "integrate", "args": {"t": "t", "x": "s.y"},
                                  "as": "area"}]))
    assert out["post"]["rms"] == pytest.approx(2.0 / math.sqrt(2), rel=1e-3)
    assert out["post"]["area"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"time": {"start": 0, "step": 1}}, ("invalid_scenario", "scenario.time.stop")),
        ({"time": {"start": 0, "stop": 10}}, ("invalid_scenario", "scenario.time.step")),
        ({"time": {"start": 0, "stop": 1e9, "step": 1e-3}},
         ("limit_exceeded", "scenario.time.step")),
        ({"solver": {"method": "Euler"}}, ("invalid_argument", "scenario.solver.method")),
        ({"solver": {"rtol": 0}}, ("invalid_argument", "scenario.solver.rtol")),
    ],
)
def test_dynamic_mistakes(change: dict, expected: tuple[str, str]) -> None:
    data = dyn({"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1.0}}},
               10.0, 1.0, inputs={"lag.u": 1.0})
    data.update(change)
    with pytest.raises(CodedError) as info:
        run_scenario(data)
    assert (info.value.code, info.value.path) == expected


def test_templates_expand_with_checked_arguments() -> None:
    scenario = expand_template("tank_draining", {"initial_level": 2.0, "stop": 30})
    assert scenario["elements"]["tank"]["initial"]["level"] == 2.0
    assert scenario["time"]["stop"] == 30
    for name, args, code, path in [
        ("tank_drainin", {}, "unknown_template", "template"),
        ("tank_draining", {"initial_levle": 1}, "invalid_argument", "args.initial_levle"),
        ("tank_draining", {"stop": "long"}, "invalid_argument", "args.stop"),
        ("tank_draining", {"initial_level": -1}, "invalid_argument", "args.initial_level"),
    ]:
        with pytest.raises(CodedError) as info:
            expand_template(name, args)
        assert (info.value.code, info.value.path) == (code, path)
        assert len(info.value.message) > 20


@pytest.mark.parametrize("time", [
    {"start": 0, "stop": 1, "step": 5e-324},       # (stop - start) / step overflows
    {"start": -1e308, "stop": 1e308, "step": 1.0},  # stop - start overflows
])
def test_a_grid_beyond_counting_is_limit_exceeded(time: dict[str, float]) -> None:
    with pytest.raises(CodedError) as info:
        run_scenario(dyn({"lag": {"model": "FirstOrderLag",
                                  "params": {"time_constant": 1.0}}},
                         0, 1, inputs={"lag.u": 1.0}) | {"time": time})
    assert (info.value.code, info.value.path) == ("limit_exceeded", "scenario.time.step")


def test_a_long_run_stops_when_asked() -> None:
    from scenario_builder import RunStopped

    asked: list[float] = []

    def should_stop() -> bool:
        asked.append(0.0)
        return len(asked) >= 2

    scenario = dyn({"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1.0}}},
                   1e5, 1000, inputs={"lag.u": 1.0}, solver={"max_step": 1e-3})
    with pytest.raises(RunStopped) as info:
        run_scenario(scenario, should_stop=should_stop)  # would take hours
    assert len(asked) == 2 and 0 < info.value.t < 1e5
