"""The engine on every path an event can take: driven by a state, by an input series,
by a source, with no state at all, at the last output time; consistent initial states;
the same instant whatever the time grid around it (each reference named in its test)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from scenario_builder import Poll, check_scenario, run_realtime, run_scenario


def dyn(elements: dict[str, Any], stop: float, step: float, **more: Any) -> dict[str, Any]:
    return {"mode": "dynamic", "elements": elements,
            "time": {"start": 0.0, "stop": stop, "step": step}, **more}


def hysteresis(low: float, high: float, **more: Any) -> dict[str, Any]:
    return {"model": "HysteresisController", "params": {"low": low, "high": high, **more}}


# ----- state events without states -------------------------------------------------
def test_a_hysteresis_controller_fed_by_a_sine_switches_at_the_crossings() -> None:
    """No continuous state at all: the event function is located on the signal itself.
    Reference, closed form: sin(2 pi f t) reaches high = 0.5 at t = 1/12 s and falls to
    low = -0.5 at t = 7/12 s (f = 1 Hz), so with on_when 'above' the controller is on
    from 1/12 + k to 7/12 + k."""
    out = run_scenario(dyn({"wave": {"model": "Sine", "params": {"frequency": 1.0}},
                            "ctl": hysteresis(-0.5, 0.5, on_when="above")},
                           3.0, 0.01, connections=[{"from": "wave.y", "to": "ctl.measurement"}]))
    t, on = np.asarray(out["t"]), np.asarray(out["values"]["ctl.output"])
    frac = np.mod(t, 1.0)
    expected = ((frac >= 1 / 12) & (frac < 7 / 12)).astype(float)
    near = np.min(np.abs(frac[:, None] - np.array([1 / 12, 7 / 12, 13 / 12])), axis=1) < 1e-6
    assert np.array_equal(on[~near], expected[~near])
    assert out["stats"]["events"] == 6


def test_a_hysteresis_controller_fed_by_an_input_series_switches_where_it_crosses() -> None:
    """A ramp 0 -> 10 over 10 s and back: the measurement, linear in each piece, is
    m(t) = t rising, 20 - t falling; with low 2, high 8 (on_when 'below', starting on
    below low) it goes off at t = 8 and on again at t = 18 (closed form)."""
    out = run_scenario(dyn({"ctl": hysteresis(2.0, 8.0)}, 20.0, 0.5,
                           inputs={"ctl.measurement": {"t": [0, 10, 20], "v": [0, 10, 0]}}))
    t, on = np.asarray(out["t"]), np.asarray(out["values"]["ctl.output"])
    assert np.array_equal(on, ((t < 8.0) | (t >= 18.0)).astype(float))
    assert out["stats"]["events"] == 2


# ----- time events: breakpoints of input series and of sources ------------------------
def thermal(q: Any, stop: float = 400.0, step: float = 50.0, **more: Any) -> dict[str, Any]:
    return dyn({"body": {"model": "ThermalMass", "params": {
        "heat_capacity": 1.0e6, "thermal_resistance": 1.0e-2},
        "initial": {"temperature": 293.15}}}, stop, step,
        inputs={"body.heat_in": q, "body.ambient_temperature": 293.15}, **more)


def pulse_rise(t: np.ndarray, q: float, t_on: float, t_off: float,
               tau: float, r: float) -> np.ndarray:
    """Closed form of a first-order body C dT/dt = q - (T - Ta)/R under a rectangular
    heat pulse q on [t_on, t_off] (superposition of two step responses)."""
    def step_resp(t0: float) -> np.ndarray:
        return np.where(t > t0, q * r * (1 - np.exp(-(t - t0) / tau)), 0.0)
    return step_resp(t_on) - step_resp(t_off)


def test_a_short_pulse_in_an_input_series_is_not_stepped_over() -> None:
    """20 kW for 10 s (ramps of 1 ms each side) into a body with a time constant of
    10 000 s, sampled every 50 s: the solver's step is long where the state barely
    moves, but every breakpoint is a point it stops at. Reference: the closed form
    (:func:`pulse_rise`): 0.2 K gained, then decaying."""
    q, tau, r = 20_000.0, 1.0e4, 1.0e-2
    series = {"t": [0, 100, 100.001, 110, 110.001, 400], "v": [0, 0, q, q, 0, 0]}
    out = run_scenario(thermal(series))
    t, temp = np.asarray(out["t"]), np.asarray(out["values"]["body.temperature"])
    exact = 293.15 + pulse_rise(t, q, 100.0005, 110.0005, tau, r)
    assert temp[-1] - 293.15 == pytest.approx(exact[-1] - 293.15, rel=1e-3)
    assert np.max(np.abs(temp - exact)) < 1e-4


def test_a_step_source_mid_step_is_a_time_event() -> None:
    """A Step of 20 kW at t = 123.4 s into the slow body: the integrator restarts at
    the step. Reference: the step response q R (1 - exp(-(t - 123.4)/tau))."""
    q, tau, r = 20_000.0, 1.0e4, 1.0e-2
    sc = thermal(0.0, stop=1000.0, step=100.0)
    sc["elements"]["heat"] = {"model": "Step", "params": {
        "initial": 0.0, "final": q, "step_time": 123.4}}
    del sc["inputs"]["body.heat_in"]
    sc["connections"] = [{"from": "heat.y", "to": "body.heat_in"}]
    out = run_scenario(sc)
    t, temp = np.asarray(out["t"]), np.asarray(out["values"]["body.temperature"])
    exact = 293.15 + np.where(t > 123.4, q * r * (1 - np.exp(-(t - 123.4) / tau)), 0.0)
    assert np.max(np.abs(temp - exact)) < 1e-6


def test_a_table_source_pulse_is_not_stepped_over_and_its_jumps_show_right_limits() -> None:
    """A TableSource with 'previous' interpolation: 0, 20 kW from 100 s, 0 from 110 s.
    The rows at the jumps (t = 100, 110: output times) show the value from that instant
    on (the right limit), as a Step does; the body gains the pulse's 0.2 K."""
    q, tau, r = 20_000.0, 1.0e4, 1.0e-2
    sc = thermal(0.0, stop=400.0, step=10.0)
    sc["elements"]["heat"] = {"model": "TableSource", "params": {
        "t": [0.0, 100.0, 110.0], "v": [0.0, q, 0.0], "interpolation": "previous"}}
    del sc["inputs"]["body.heat_in"]
    sc["connections"] = [{"from": "heat.y", "to": "body.heat_in"}]
    sc["outputs"] = ["heat.y", "body.temperature"]
    out = run_scenario(sc)
    t = np.asarray(out["t"])
    y, temp = np.asarray(out["values"]["heat.y"]), np.asarray(out["values"]["body.temperature"])
    assert y[t == 90.0][0] == 0.0 and y[t == 100.0][0] == q and y[t == 110.0][0] == 0.0
    exact = 293.15 + pulse_rise(t, q, 100.0, 110.0, tau, r)
    assert np.max(np.abs(temp - exact)) < 1e-6


# ----- the last sampled row ---------------------------------------------------------
def pi_loop(stop: float, step: float) -> dict[str, Any]:
    return dyn({
        "pid": {"model": "PIDController", "params": {"kp": 2.0, "ki": 0.5, "sample_time": 1.0}},
        "plant": {"model": "FirstOrderLag", "params": {"time_constant": 5.0, "gain": 2.0}}},
        stop, step, connections=[{"from": "pid.output", "to": "plant.u"},
                                 {"from": "plant.y", "to": "pid.measurement"}],
        inputs={"pid.setpoint": 1.0}, outputs=["pid.output", "plant.y"])


def test_the_last_row_applies_the_sample_due_at_time_stop() -> None:
    """A discrete PI sampled every second: the row at t = 10 s is the same whether the
    run stops at 10 s or at 11 s (the update due at 10 s applied in both)."""
    short, long = run_scenario(pi_loop(10.0, 1.0)), run_scenario(pi_loop(11.0, 1.0))
    assert short["t"][-1] == 10.0 and long["t"][10] == 10.0
    for name in ("pid.output", "plant.y"):
        assert short["values"][name][-1] == pytest.approx(long["values"][name][10], abs=1e-9)
    assert short["values"]["pid.output"][-1] != short["values"]["pid.output"][-2]


@pytest.mark.parametrize(("stop", "step"), [(7.0, 0.5), (8.0, 1.0), (7.3, 0.1), (9.0, 0.25)])
def test_an_instant_gives_the_same_values_whatever_the_grid_around_it(
        stop: float, step: float) -> None:
    """Property: the values at t = 7 s do not depend on time.stop and time.step (within
    the solver's tolerance), through sample instants, a step event and a breakpoint."""
    def scenario(stop_: float, step_: float) -> dict[str, Any]:
        sc = pi_loop(stop_, step_)
        sc["elements"]["ref"] = {"model": "Step", "params": {"initial": 1.0, "final": 2.0,
                                                             "step_time": 3.3}}
        del sc["inputs"]["pid.setpoint"]
        sc["connections"].append({"from": "ref.y", "to": "pid.setpoint"})
        sc["solver"] = {"rtol": 1e-9, "atol": 1e-12}
        return sc

    ref = run_scenario(scenario(7.0, 7.0))
    out = run_scenario(scenario(stop, step))
    t = np.asarray(out["t"])
    k = int(np.argmin(np.abs(t - 7.0)))
    assert t[k] == pytest.approx(7.0, abs=1e-12)
    for name in ("pid.output", "plant.y"):
        assert out["values"][name][k] == pytest.approx(ref["values"][name][-1], abs=1e-7)


# ----- consistent initial states ------------------------------------------------------
def filling(mode: str, stop: float = 5.0) -> dict[str, Any]:
    """An on/off controller (low 1, high 2, on_when 'below', on_value 10) filling a
    first-order store y' = (K u - y)/tau with K = 1, tau = 100 s, from y = 0.5."""
    return {
        "mode": mode,
        "elements": {"ctl": hysteresis(1.0, 2.0, on_value=10.0),
                     "store": {"model": "FirstOrderLag",
                               "params": {"time_constant": 100.0, "gain": 1.0},
                               "initial": {"y": 0.5}}},
        "connections": [{"from": "store.y", "to": "ctl.measurement"},
                        {"from": "ctl.output", "to": "store.u"}],
        "outputs": ["ctl.output", "store.y"],
        "time": {"start": 0.0, "stop": stop, "step": 1.0}}


def test_an_inconsistent_initial_state_is_corrected_at_t0_in_dynamic_mode() -> None:
    """The controller starts 'off' (the default) with the measurement, 0.5, below low
    (1): consistent_state() turns it on at t0, and the store rises as the closed form
    y = 10 + (0.5 - 10) exp(-t / 100) says."""
    out = run_scenario(filling("dynamic"))
    t = np.asarray(out["t"])
    assert np.array_equal(out["values"]["ctl.output"], np.full(len(t), 10.0))
    assert np.allclose(out["values"]["store.y"], 10 + (0.5 - 10) * np.exp(-t / 100), atol=1e-7)


class Steer:
    """A steering that steers nothing and keeps the rows of one output."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: list[float] = []

    def poll(self, tick: int, t: float) -> Poll:
        return Poll(stop=False, inputs={})

    def publish(self, chunk: int, t: list[float], values: dict[str, list[float]],
                stats: dict[str, Any]) -> None:
        self.rows.extend(values[self.name])


def realtime_rows(raw: dict[str, Any], name: str) -> tuple[list[float], dict[str, Any]]:
    """The rows of output ``name`` of a real-time run of ``raw`` (a simulated clock)."""
    raw = {**raw, "mode": "realtime", "realtime": {"speed": 10.0, "publish_every": 10}}
    steer = Steer(name)
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    result = run_realtime(check_scenario(raw), steer, clock=lambda: now[0], sleep=sleep)
    return steer.rows, result


def test_an_inconsistent_initial_state_is_corrected_at_t0_in_realtime_mode() -> None:
    rows, _ = realtime_rows(filling("realtime", stop=2.0), "ctl.output")
    assert rows == [10.0, 10.0, 10.0]


def test_a_sine_fed_controller_switches_in_realtime_as_in_dynamic_mode() -> None:
    """No state: the crossings located inside each tick, the same rows as dynamic mode."""
    raw = dyn({"wave": {"model": "Sine", "params": {"frequency": 0.5}},
               "ctl": hysteresis(-0.5, 0.5, on_when="above")},
              4.0, 0.05, connections=[{"from": "wave.y", "to": "ctl.measurement"}])
    dynamic = run_scenario(raw)
    rows, result = realtime_rows(raw, "ctl.output")
    assert rows == list(dynamic["values"]["ctl.output"])
    assert result["stats"]["events"] == dynamic["stats"]["events"] == 4


def test_a_consistent_initial_state_is_kept_inside_the_band() -> None:
    """Inside [low, high] the given state stands: off at 1.5 stays off, and the store
    decays as y = 1.5 exp(-t / 100)."""
    sc = filling("dynamic")
    sc["elements"]["store"]["initial"] = {"y": 1.5}
    out = run_scenario(sc)
    assert out["values"]["ctl.output"][0] == 0.0
    assert math.isclose(out["values"]["store.y"][-1], 1.5 * math.exp(-5 / 100), rel_tol=1e-6)


# ----- events at the last output time --------------------------------------------------
def test_a_step_at_time_stop_shows_in_the_last_row() -> None:
    """A Step whose step_time is time.stop: the last row shows its final value (the
    value from that instant on), the one before its initial one."""
    out = run_scenario(dyn({"s": {"model": "Step", "params": {
        "initial": 1.0, "final": 5.0, "step_time": 10.0}},
        "lag": {"model": "FirstOrderLag", "params": {"time_constant": 2.0}}},
        10.0, 1.0, connections=[{"from": "s.y", "to": "lag.u"}], outputs=["s.y", "lag.y"]))
    assert list(out["values"]["s.y"][-2:]) == [1.0, 5.0]
    # the lag, continuous, has not moved yet at the jump: y = 1 - exp(-t/2) (closed form)
    assert out["values"]["lag.y"][-1] == pytest.approx(1 - math.exp(-5.0), abs=1e-5)


def test_a_crossing_at_time_stop_without_states_switches_the_last_row() -> None:
    """A measurement rising linearly to exactly high at time.stop: the controller
    (on_when 'above', no state anywhere) is off in every row but the last."""
    out = run_scenario(dyn({"ctl": hysteresis(2.0, 8.0, on_when="above")}, 8.0, 1.0,
                           inputs={"ctl.measurement": {"t": [0, 8], "v": [0, 8]}}))
    assert list(out["values"]["ctl.output"]) == [0.0] * 8 + [1.0]
    assert out["stats"]["events"] == 1


@pytest.mark.parametrize("at", [3.5, 4.0])
def test_a_source_jumping_across_a_threshold_fires_at_the_jump(at: float) -> None:
    """A Step from 0 to 10 (between output times, or on one) straight into an on/off
    controller (high 8, on_when 'above'; no state anywhere): it switches on at the jump,
    and the row at the jump itself shows it on (the value from that instant on)."""
    out = run_scenario(dyn({"s": {"model": "Step", "params": {
        "initial": 0.0, "final": 10.0, "step_time": at}},
        "ctl": hysteresis(2.0, 8.0, on_when="above")},
        8.0, 0.5, connections=[{"from": "s.y", "to": "ctl.measurement"}]))
    t = np.asarray(out["t"])
    assert np.array_equal(out["values"]["ctl.output"], (t >= at).astype(float))
    assert out["stats"]["events"] == 1


def test_a_source_jumping_across_a_threshold_fires_with_states_too() -> None:
    """The same jump with a state elsewhere in the scenario (the integrator runs):
    the controller switches at the jump, where the segment ends."""
    out = run_scenario(dyn({"s": {"model": "Step", "params": {
        "initial": 0.0, "final": 10.0, "step_time": 3.3}},
        "ctl": hysteresis(2.0, 8.0, on_when="above"),
        "lag": {"model": "FirstOrderLag", "params": {"time_constant": 1.0}}},
        8.0, 0.5, connections=[{"from": "s.y", "to": "ctl.measurement"},
                               {"from": "ctl.output", "to": "lag.u"}],
        solver={"rtol": 1e-10, "atol": 1e-12}))
    t = np.asarray(out["t"])
    assert np.array_equal(out["values"]["ctl.output"], (t >= 3.3).astype(float))
    # the lag answers the controller from t = 3.3 on: y = 1 - exp(-(t - 3.3)) (closed form)
    assert np.allclose(out["values"]["lag.y"], np.where(t > 3.3, 1 - np.exp(-(t - 3.3)), 0.0),
                       atol=1e-8)
