"""The real-time loop on a simulated clock (no broker, no Redis): pacing, steering,
policies, and agreement with dynamic mode."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

from instances import SHIPPED_INSTANCES, InstanceLibrary
from scenario_builder import Poll, check_scenario, expand_template, run_realtime, simulate
from scenario_builder.errors import ScenarioRuntimeError
from scenario_builder.realtime import LatenessStats

TAU, GAIN = 0.5, 2.0


class Clock:
    """A wall clock that moves only when the loop sleeps or a tick is made slow."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


class Recorder:
    """Steering that records what is published and does what a test scripts."""

    def __init__(self, clock: Clock, script: dict[int, Any] | None = None) -> None:
        self.clock = clock
        self.script = script or {}
        self.chunks: list[tuple[int, list[float], dict[str, list[float]], dict[str, Any]]] = []
        self.inputs: dict[str, float] = {}
        self.polled: list[tuple[int, float]] = []

    def poll(self, tick: int, t: float) -> Poll:
        self.polled.append((tick, t))
        action = self.script.get(tick)
        if action == "stop":
            return Poll(stop=True, inputs=dict(self.inputs))
        if isinstance(action, dict):
            self.inputs.update(action)
        elif isinstance(action, float):  # this tick's work takes that long
            self.clock.now += action
        return Poll(inputs=dict(self.inputs))

    def publish(self, chunk: int, t: list[float], values: dict[str, list[float]],
                stats: dict[str, Any]) -> None:
        self.chunks.append((chunk, t, values, stats))

    def rows(self, name: str = "lag.y") -> tuple[np.ndarray, np.ndarray]:
        t = [x for _, ts, _, _ in self.chunks for x in ts]
        y = [x for _, _, v, _ in self.chunks for x in v[name]]
        return np.asarray(t), np.asarray(y)


def lag(stop: float | None = 2.0, step: float = 0.1, **realtime: Any) -> Any:
    time_: dict[str, Any] = {"start": 0, "step": step}
    if stop is not None:
        time_["stop"] = stop
    return check_scenario({
        "mode": "realtime",
        "elements": {"lag": {"model": "FirstOrderLag",
                             "params": {"gain": GAIN, "time_constant": TAU}}},
        "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"], "time": time_,
        "realtime": {"publish_every": 5, **realtime}})


def step_response(t: np.ndarray, u: float = 1.0) -> np.ndarray:
    return GAIN * u * (1 - np.exp(-t / TAU))


def run(sc: Any, script: dict[int, Any] | None = None) -> tuple[dict[str, Any], Recorder, Clock]:
    clock = Clock()
    rec = Recorder(clock, script)
    result = run_realtime(sc, rec, clock=clock, sleep=clock.sleep)
    return result, rec, clock


def test_ticks_are_paced_by_absolute_deadlines_and_rows_match_the_analytic_response() -> None:
    result, rec, clock = run(lag(stop=2.0, step=0.1, speed=2.0))
    t, y = rec.rows()
    assert np.allclose(t, np.arange(21) * 0.1)
    assert np.allclose(y, step_response(t), atol=1e-6)
    assert [c[0] for c in rec.chunks] == [0, 1, 2, 3, 4]
    assert [len(c[1]) for c in rec.chunks] == [5, 5, 5, 5, 1]
    # 20 ticks of 0.1 s of simulated time at speed 2: 1 s of wall-clock time
    assert clock.now - 100.0 == pytest.approx(1.0)
    assert result["status"] == "completed" and result["rows"] == 21
    stats = result["stats"]
    assert stats["ticks"] == 21 and stats["overruns"] == 0 and stats["late"] == 0
    assert stats["period_ms"] == 50.0 and stats["lateness_ms"]["max"] == 0


def test_a_set_input_holds_from_its_tick_on() -> None:
    _, rec, _ = run(lag(stop=2.0), {10: {"lag.u": 3.0}})
    t, y = rec.rows()
    before = t <= 1.0 + 1e-12
    assert np.allclose(y[before], step_response(t[before]), atol=1e-6)
    y1 = step_response(np.array([1.0]))[0]
    after = ~before
    exact = GAIN * 3.0 + (y1 - GAIN * 3.0) * np.exp(-(t[after] - 1.0) / TAU)
    assert np.allclose(y[after], exact, atol=1e-6)


def test_stop_ends_at_once_and_flushes_the_last_rows() -> None:
    result, rec, _ = run(lag(stop=None), {7: "stop"})  # open-ended
    assert result["status"] == "stopped" and result["rows"] == 7
    assert [len(c[1]) for c in rec.chunks] == [5, 2]
    assert rec.chunks[-1][1][-1] == pytest.approx(0.6)


def test_catch_up_runs_late_ticks_back_to_back_and_loses_none() -> None:
    # tick 5's work takes 3.5 periods: ticks 6-8 start late, then the loop is on time
    result, rec, clock = run(lag(stop=2.0), {5: 0.35})
    t, y = rec.rows()
    assert np.allclose(t, np.arange(21) * 0.1) and np.allclose(y, step_response(t), atol=1e-6)
    stats = result["stats"]
    # ticks 5, 6 and 7 finish after their deadlines (the next tick's release)
    assert stats["overruns"] == 3 and stats["skipped"] == 0
    assert stats["late"] == 2  # ticks 6 and 7 start more than one period late
    assert stats["lateness_ms"]["max"] == pytest.approx(250.0, abs=0.2)
    assert stats["drift_ms"] == 0  # absolute deadlines: the delay does not stay
    assert clock.now - 100.0 == pytest.approx(2.0)


def test_skip_jumps_over_the_missed_ticks() -> None:
    result, rec, clock = run(lag(stop=2.0, policy="skip"), {5: 0.35})
    t, y = rec.rows()
    assert np.allclose(t, [*np.arange(6) * 0.1, *np.arange(8, 21) * 0.1])
    assert np.allclose(y, step_response(t), atol=1e-6)  # still integrated over the gap
    stats = result["stats"]
    assert stats["skipped"] == 2 and stats["ticks"] == 19 and stats["rows"] == 19
    assert stats["lateness_ms"]["max"] < 100.0
    assert clock.now - 100.0 == pytest.approx(2.0)


def test_fail_ends_the_run_when_a_tick_is_later_than_the_tolerance() -> None:
    with pytest.raises(ScenarioRuntimeError) as info:
        run(lag(stop=2.0, policy="fail", tolerance=0.2), {5: 0.35})
    assert info.value.path == "scenario.realtime.tolerance"
    assert "tick 6" in info.value.message and "250.0 ms late" in info.value.message


def test_fail_flushes_the_rows_made_before_it() -> None:
    clock = Clock()
    rec = Recorder(clock, {6: 0.35})
    with pytest.raises(ScenarioRuntimeError):
        run_realtime(lag(stop=2.0, policy="fail", tolerance=0.2), rec, clock=clock,
                     sleep=clock.sleep)
    t, _ = rec.rows()
    assert np.allclose(t, np.arange(7) * 0.1)


def level_control(mode: str) -> Any:
    raw = expand_template("level_control", {"stop": 300, "step": 1.0})
    raw = InstanceLibrary(SHIPPED_INSTANCES).resolve(raw)
    raw = copy.deepcopy(raw)
    raw["mode"] = mode
    if mode == "realtime":
        raw["realtime"] = {"speed": 100.0, "publish_every": 50}
    return check_scenario(raw)


def test_real_time_agrees_with_dynamic_mode_through_switching_events() -> None:
    """The on/off level loop (hysteresis events located inside ticks) gives the
    same rows in real time as in dynamic mode."""
    dynamic = simulate(level_control("dynamic"))
    result, rec, _ = run(level_control("realtime"))
    t, level = rec.rows("tank.level")
    _, feed = rec.rows("controller.output")
    assert np.allclose(t, dynamic["t"])
    assert np.allclose(level, dynamic["values"]["tank.level"], atol=1e-6)
    assert np.array_equal(feed, dynamic["values"]["controller.output"])
    assert 0 < result["stats"]["events"] == dynamic["stats"]["events"]
    assert len(set(feed)) == 2  # it did switch


def test_a_set_of_a_port_it_does_not_have_is_ignored() -> None:
    _, rec, _ = run(lag(stop=1.0), {2: {"nope.u": 5.0}})
    t, y = rec.rows()
    assert np.allclose(y, step_response(t), atol=1e-6)


def test_lateness_percentiles_from_the_histogram() -> None:
    stats = LatenessStats(bin_s=1e-4)
    for ms in [0.05] * 98 + [1.0, 30.0]:
        stats.add(ms / 1000)
    assert stats.percentile(50) == pytest.approx(1e-4)
    assert stats.percentile(99) == pytest.approx(1.1e-3)
    assert stats.percentile(100) == pytest.approx(0.030)
    assert stats.max == pytest.approx(0.030)
    hist = stats.histogram()
    assert hist["counts"] == {"0": 98, "10": 1, "300": 1}


class AlarmRecorder(Recorder):
    """A steering that also takes the loop's alarm events."""

    def __init__(self, clock: Clock, script: dict[int, Any] | None = None) -> None:
        super().__init__(clock, script)
        self.events: list[dict[str, Any]] = []

    def alarm(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


def test_a_rule_on_a_realtime_output_raises_at_the_crossing_between_ticks() -> None:
    sc = check_scenario({
        "mode": "realtime",
        "elements": {"lag": {"model": "FirstOrderLag",
                             "params": {"gain": GAIN, "time_constant": TAU}}},
        "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"],
        "time": {"start": 0, "stop": 2.0, "step": 0.1}, "realtime": {"publish_every": 5},
        "alarms": [{"name": "y-high", "on": "lag.y", "high": GAIN * 0.5}]})
    clock = Clock()
    rec = AlarmRecorder(clock, {12: {"lag.u": 0.0}})  # the input drops at t = 1.2 s
    run_realtime(sc, rec, clock=clock, sleep=clock.sleep)
    assert [e["event"] for e in rec.events] == ["raised", "cleared"]
    crossing = -TAU * math.log(0.5)  # y = GAIN (1 - exp(-t / TAU)) reaches GAIN / 2
    assert rec.events[0]["t"] == pytest.approx(crossing, abs=0.01)  # between ticks
    assert rec.events[0]["message"].startswith("lag.y")


def test_a_tick_later_than_the_tolerance_raises_realtime_overrun_and_time_on_time_clears_it(
) -> None:
    clock = Clock()
    rec = AlarmRecorder(clock, {5: 0.35})  # tick 5 takes 0.35 s: ticks 6-8 start late
    run_realtime(lag(stop=3.0, tolerance=0.05), rec, clock=clock, sleep=clock.sleep)
    overrun = [e for e in rec.events if e["alarm"] == "realtime_overrun"]
    assert [e["event"] for e in overrun] == ["raised", "cleared"]
    assert overrun[0]["t"] == pytest.approx(0.6) and overrun[0]["value"] > 50
    assert overrun[0]["limit"] == 50 and "realtime.tolerance" in overrun[0]["message"]
    assert overrun[1]["t"] - overrun[0]["t"] >= 1.0  # a second of ticks on time
