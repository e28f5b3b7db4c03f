"""HysteresisController driven by hand like the engine: scipy solve_ivp locates the
zero crossings of event_functions, on_event gives the new state, the run restarts.

Plant: a tank level h with dh/dt = q_in*output - q_out (an integrator), so between
switchings h is linear in t and the switching times follow by hand:
off, h falls from h0 at q_out to `low`; on, it rises at q_in - q_out to `high`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from scipy.integrate import solve_ivp

from modellib import CodedError, get_model

LOW, HIGH = 0.2, 0.8


def controller(**params: Any) -> Any:
    return get_model("HysteresisController")({"low": LOW, "high": HIGH, **params})


def simulate(ctrl: Any, rate: Callable[[float], float], h0: float, t_end: float,
             on0: float = 0.0) -> list[tuple[float, float, float]]:
    """Run until t_end; return (t, h, new on) at every event."""
    x = ctrl.initial_state({"on": on0})
    t, h = 0.0, h0
    events: list[tuple[float, float, float]] = []
    while t < t_end:
        out = ctrl.output(t, {}, x)["output"]
        names = list(ctrl.event_functions(t, {"measurement": h}, x))

        def make(name: str, xs: dict = x) -> Any:
            def g(tt: float, yy: Any) -> float:
                return float(ctrl.event_functions(tt, {"measurement": yy[0]}, xs)[name])

            g.terminal = True  # type: ignore[attr-defined]
            return g

        sol = solve_ivp(lambda tt, yy, o=out: [rate(o)], (t, t_end), [h],
                        events=[make(n) for n in names], rtol=1e-12, atol=1e-14)
        hit = [(sol.t_events[i][0], n) for i, n in enumerate(names) if len(sol.t_events[i])]
        if not hit:
            break
        t, name = min(hit)
        h = float(sol.y[0, -1])
        x = {**x, **ctrl.on_event(name, t, {"measurement": h}, x)}
        events.append((t, h, x["on"]))
    return events


def test_filling_pump_switches_on_at_low_and_off_at_high() -> None:
    # q_in = 0.3, q_out = 0.1: off, h falls at 0.1/s; on, it rises at 0.2/s.
    # From h0 = 0.5 off: on at t = 3 (h = 0.2), off at t = 6 (0.8), on at 12, off at 15, ...
    ctrl = controller()
    events = simulate(ctrl, lambda o: 0.3 * o - 0.1, 0.5, 20.0)
    expected = [(3.0, LOW, 1.0), (6.0, HIGH, 0.0), (12.0, LOW, 1.0), (15.0, HIGH, 0.0)]
    assert len(events) == len(expected)
    for (t, h, on), (te, he, one) in zip(events, expected, strict=True):
        assert abs(h - he) < 1e-9 and on == one
        assert t == pytest.approx(te, abs=1e-9)
    on = ctrl.initial_state({"on": 1.0})
    assert ctrl.output(0.0, {"measurement": 0.5}, on) == {"output": 1.0}
    assert ctrl.output(0.0, {"measurement": 0.5}, ctrl.initial_state()) == {"output": 0.0}


def test_cooler_switches_on_above_high_and_off_below_low() -> None:
    # on_when = above: temperature rises at 0.2/s while off, falls at 0.3/s while on
    # (output on_value = 2: rate = 0.2 - 0.25*2). From 0.5 off: on at t = 1.5 (0.8),
    # off at t = 3.5 (0.2), on at 6.5, off at 8.5.
    ctrl = controller(on_when="above", on_value=2.0, off_value=0.0)
    events = simulate(ctrl, lambda o: 0.2 - 0.25 * o, 0.5, 10.0)
    expected = [(1.5, HIGH, 1.0), (3.5, LOW, 0.0), (6.5, HIGH, 1.0), (8.5, LOW, 0.0)]
    assert len(events) == len(expected)
    for (t, h, on), (te, he, one) in zip(events, expected, strict=True):
        assert abs(h - he) < 1e-9 and on == one
        assert t == pytest.approx(te, abs=1e-9)


def test_event_function_is_the_distance_to_the_threshold_that_ends_the_state() -> None:
    below, above = controller(), controller(on_when="above")
    u = {"measurement": 0.5}
    off, on = {"on": 0.0}, {"on": 1.0}
    assert below.event_functions(0.0, u, off) == {"switch": pytest.approx(0.5 - LOW)}
    assert below.event_functions(0.0, u, on) == {"switch": pytest.approx(0.5 - HIGH)}
    assert above.event_functions(0.0, u, off) == {"switch": pytest.approx(0.5 - HIGH)}
    assert above.event_functions(0.0, u, on) == {"switch": pytest.approx(0.5 - LOW)}
    assert below.on_event("switch", 0.0, u, off) == {"on": 1.0}
    assert below.on_event("switch", 0.0, u, on) == {"on": 0.0}
    assert below.sample_time() is None and below.update(0.0, u, off) == {}


def test_consistent_state_and_static_mode() -> None:
    below, above = controller(), controller(on_when="above")
    off, on = {"on": 0.0}, {"on": 1.0}
    assert below.steady_state(0.0, {"measurement": 0.1}, off) == on   # below low: on
    assert below.steady_state(0.0, {"measurement": 0.9}, on) == off   # above high: off
    assert below.steady_state(0.0, {"measurement": 0.5}, on) == on    # in the band: kept
    assert below.steady_state(0.0, {"measurement": 0.5}, off) == off
    assert above.consistent_state(0.0, {"measurement": 0.9}, off) == on
    assert above.consistent_state(0.0, {"measurement": 0.1}, on) == off


def test_describe_is_json_and_feedthrough_false() -> None:
    meta = get_model("HysteresisController").describe()
    json.dumps(meta)
    assert meta["feedthrough"] is False
    for kind in ("parameters", "inputs", "outputs", "discrete_states"):
        for var in meta[kind]:
            assert var["unit"] and var["description"], var


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"low": 1.0, "high": 1.0}, "invalid_argument", "high"),
        ({"low": 2.0, "high": 1.0}, "invalid_argument", "high"),
        ({"high": 1.0}, "missing_argument", "low"),
        ({"low": 0.0, "high": 1.0, "on_when": "between"}, "invalid_argument", "on_when"),
        ({"low": 0.0, "high": "1"}, "invalid_argument", "high"),
    ],
)
def test_parameter_errors_have_code_and_path(params: dict, code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("HysteresisController")(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")
