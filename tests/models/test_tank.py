"""Tank: Torricelli draining and filling against their closed forms, steady state, events.

Reference: Torricelli's law with a discharge coefficient, Q = Cd a sqrt(2 g h)
(F. M. White, Fluid Mechanics, 7th ed., ch. 3). With A dh/dt = Qin - Q:

* draining (Qin = 0): sqrt(h) = sqrt(h0) - (Cd a/A) sqrt(g/2) t, empty after
  T = (A/(Cd a)) sqrt(2 h0/g);
* filling from empty (Qin > 0, s = sqrt(h), k = Cd a sqrt(2g)):
  t(s) = (2A/k^2) (Qin ln(Qin/(Qin - k s)) - k s);
* steady level: Qin = Cd a sqrt(2 g h)  ->  h = (Qin/(Cd a))^2 / (2g).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from modellib import CodedError, G, Model, ModelRuntimeError, get_model

PARAMS = {"area": 2.0, "outlet_area": 0.01}  # Cd defaults to 0.62
CD = 0.62


def tank(**extra: float) -> Model:
    return get_model("Tank")({**PARAMS, **extra})


def rhs(model: Model, inflow: float) -> Callable[[float, np.ndarray], list[float]]:
    def f(t: float, y: np.ndarray) -> list[float]:
        return [float(model.derivatives(t, {"inflow": inflow}, {"level": float(y[0])})["level"])]
    return f


def event(model: Model, name: str, inflow: float = 0.0,
          direction: float = 0.0) -> Callable[[float, np.ndarray], float]:
    def e(t: float, y: np.ndarray) -> float:
        return float(model.event_functions(t, {"inflow": inflow}, {"level": float(y[0])})[name])
    e.terminal = True  # type: ignore[attr-defined]
    e.direction = direction  # type: ignore[attr-defined]
    return e


def test_torricelli_draining_follows_the_closed_form() -> None:
    model = tank()
    h0 = 3.0
    k = CD * PARAMS["outlet_area"] / PARAMS["area"]
    t_empty = (PARAMS["area"] / (CD * PARAMS["outlet_area"])) * math.sqrt(2.0 * h0 / G)
    assert t_empty == pytest.approx(252.32111409632, rel=1e-12)  # hand-computed from the form
    sol = solve_ivp(rhs(model, 0.0), (0.0, t_empty), [h0], rtol=1e-10, atol=1e-13,
                    dense_output=True)
    assert sol.success
    t = np.linspace(0.0, 0.999 * t_empty, 2001)  # up to just before empty (h = 1e-6 h0)
    exact = (math.sqrt(h0) - k * math.sqrt(G / 2.0) * t) ** 2
    assert np.max(np.abs(sol.sol(t)[0] / exact - 1.0)) <= 1e-4


def test_draining_time_from_the_dry_event() -> None:
    model = tank()
    h0 = 3.0
    t_empty = (PARAMS["area"] / (CD * PARAMS["outlet_area"])) * math.sqrt(2.0 * h0 / G)
    sol = solve_ivp(rhs(model, 0.0), (0.0, 2.0 * t_empty), [h0], rtol=1e-10, atol=1e-12,
                    events=event(model, "dry", direction=-1.0))
    assert sol.status == 1  # stopped by the terminal event
    assert sol.t_events[0][0] == pytest.approx(t_empty, rel=1e-5)


def test_filling_reaches_the_full_event_at_the_closed_form_time() -> None:
    height, q_in = 1.5, 0.04
    model = tank(height=height)
    k = CD * PARAMS["outlet_area"] * math.sqrt(2.0 * G)
    s = math.sqrt(height)
    assert k * s < q_in  # the steady level lies above the wall: the tank does fill up
    t_full = 2.0 * PARAMS["area"] / k**2 * (q_in * math.log(q_in / (q_in - k * s)) - k * s)
    sol = solve_ivp(rhs(model, q_in), (0.0, 10.0 * t_full), [0.0], rtol=1e-10, atol=1e-12,
                    events=event(model, "full", q_in, direction=-1.0))
    assert sol.status == 1
    assert sol.t_events[0][0] == pytest.approx(t_full, rel=1e-6)


def test_event_functions() -> None:
    assert tank().event_functions(0.0, {"inflow": 0.0}, {"level": 0.7}) == {"dry": 0.7}
    events = tank(height=2.0).event_functions(0.0, {"inflow": 0.0}, {"level": 0.5})
    assert events == {"dry": 0.5, "full": 1.5}
    assert tank(height=2.0).on_event("full", 0.0, {}, {"level": 2.0}) == {}


def test_level_never_goes_negative() -> None:
    model = tank()
    # at or below empty the tank cannot lose more, even when a pump withdraws
    for level in (0.0, -1e-12, -0.1):
        for inflow in (0.0, -0.01):
            assert model.derivatives(0.0, {"inflow": inflow}, {"level": level}) == {"level": 0.0}
    # but an inflow refills it
    assert model.derivatives(0.0, {"inflow": 0.01}, {"level": 0.0})["level"] == pytest.approx(
        0.005)
    # integrated far past the empty time the state stays at zero (to the solver's atol)
    h0 = 3.0
    t_empty = (PARAMS["area"] / (CD * PARAMS["outlet_area"])) * math.sqrt(2.0 * h0 / G)
    sol = solve_ivp(rhs(model, 0.0), (0.0, 3.0 * t_empty), [h0], rtol=1e-10, atol=1e-12)
    assert sol.y[0].min() >= -1e-10
    assert sol.y[0][-1] == pytest.approx(0.0, abs=1e-10)
    # the outputs never show a negative level, volume or outflow
    y = model.output(0.0, {"inflow": 0.0}, {"level": -1e-12})
    assert y == {"level": 0.0, "outflow": 0.0, "volume": 0.0}


def test_outputs() -> None:
    model = tank()
    y = model.output(0.0, {"inflow": 123.0}, {"level": 2.0})  # outputs ignore the input
    assert y["level"] == 2.0
    assert y["volume"] == pytest.approx(4.0)
    assert y["outflow"] == pytest.approx(CD * 0.01 * math.sqrt(2.0 * G * 2.0), rel=1e-15)
    assert all(type(v) is float for v in y.values())
    assert model.feedthrough is False


def test_steady_state_level_balances_the_outflow() -> None:
    model = tank()
    q_in = 0.02
    x = model.steady_state(0.0, {"inflow": q_in}, {"level": 0.0})
    assert x["level"] == pytest.approx((q_in / (CD * 0.01)) ** 2 / (2.0 * G), rel=1e-14)
    assert model.output(0.0, {"inflow": q_in}, x)["outflow"] == pytest.approx(q_in, rel=1e-14)
    assert model.derivatives(0.0, {"inflow": q_in}, x)["level"] == pytest.approx(0.0, abs=1e-15)
    assert model.steady_state(0.0, {"inflow": 0.0}, {"level": 1.0}) == {"level": 0.0}
    assert model.steady_state(0.0, {}, {"level": 1.0}) == {"level": 0.0}  # unconnected inflow


def test_steady_state_errors() -> None:
    with pytest.raises(ModelRuntimeError, match="negative inflow"):
        tank().steady_state(0.0, {"inflow": -0.001}, {"level": 0.0})
    q_in = 0.02  # steady level 0.5305... m
    level = (q_in / (CD * 0.01)) ** 2 / (2.0 * G)
    with pytest.raises(ModelRuntimeError, match="overflows") as info:
        tank(height=0.5).steady_state(0.0, {"inflow": q_in}, {"level": 0.0})
    assert f"{level:g} m" in info.value.message and "0.5 m" in info.value.message
    assert tank(height=0.6).steady_state(0.0, {"inflow": q_in}, {"level": 0.0})["level"] == (
        pytest.approx(level))


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"outlet_area": 0.01}, "missing_argument", "area"),
        ({"area": 2.0}, "missing_argument", "outlet_area"),
        ({**PARAMS, "area": 0.0}, "invalid_argument", "area"),
        ({**PARAMS, "outlet_area": -1.0}, "invalid_argument", "outlet_area"),
        ({**PARAMS, "discharge_coefficient": 0.0}, "invalid_argument", "discharge_coefficient"),
        ({**PARAMS, "discharge_coefficient": 1.2}, "invalid_argument", "discharge_coefficient"),
        ({**PARAMS, "height": 0.0}, "invalid_argument", "height"),
        ({**PARAMS, "height": "tall"}, "invalid_argument", "height"),
        ({**PARAMS, "hight": 2.0}, "invalid_argument", "hight"),
    ],
)
def test_parameter_errors(params: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("Tank")(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")


def test_defaults() -> None:
    p = get_model("Tank")(PARAMS).p
    assert p["discharge_coefficient"] == 0.62 and p["height"] is None
    assert get_model("Tank")({**PARAMS, "height": None}).p["height"] is None
    assert get_model("Tank")(PARAMS).initial_state() == {"level": 0.0}
    inflow = get_model("Tank").inputs[0]
    assert inflow.name == "inflow" and inflow.default == 0.0


def test_describe_is_json_with_units_and_descriptions() -> None:
    meta = get_model("Tank").describe()
    json.dumps(meta)
    assert meta["name"] == "Tank" and meta["description"] and meta["reference"]
    assert meta["feedthrough"] is False
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"].isascii() and var["unit"] and var["description"], var
