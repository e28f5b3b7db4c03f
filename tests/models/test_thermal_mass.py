"""ThermalMass: the exponential step response of the lumped capacitance model.

Reference: lumped capacitance method (F. P. Incropera, D. P. DeWitt et al.,
Fundamentals of Heat and Mass Transfer, 6th ed., Wiley 2007, sec. 5.1-5.3). For
C dT/dt = q - (T - T_amb)/R with constant q and T_amb the solution is

    T(t) = T_amb + R q (1 - exp(-t/(R C))) + (T0 - T_amb) exp(-t/(R C)).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from modellib import CodedError, Model, ModelRuntimeError, get_model

C, R = 5.0e4, 0.02  # J/K, K/W: time constant 1000 s


def mass() -> Model:
    return get_model("ThermalMass")({"heat_capacity": C, "thermal_resistance": R})


@pytest.mark.parametrize(("q", "t_amb", "t0"), [(500.0, 293.15, 293.15),
                                                (-200.0, 280.0, 330.0),
                                                (0.0, 300.0, 350.0)])
def test_step_response_matches_the_exponential(q: float, t_amb: float, t0: float) -> None:
    model = mass()
    u = {"heat_in": q, "ambient_temperature": t_amb}

    def f(t: float, y: np.ndarray) -> list[float]:
        return [model.derivatives(t, u, {"temperature": float(y[0])})["temperature"]]

    tau = R * C
    sol = solve_ivp(f, (0.0, 5.0 * tau), [t0], rtol=1e-10, atol=1e-10, dense_output=True)
    assert sol.success
    t = np.linspace(0.0, 5.0 * tau, 501)
    exact = t_amb + R * q * (1.0 - np.exp(-t / tau)) + (t0 - t_amb) * np.exp(-t / tau)
    assert np.max(np.abs(sol.sol(t)[0] - exact)) <= 1e-7 * np.max(np.abs(exact))


def test_time_constant() -> None:
    # from ambient, after one time constant the rise is 1 - 1/e of the final R q
    model = mass()
    u = {"heat_in": 1000.0, "ambient_temperature": 293.15}
    sol = solve_ivp(lambda t, y: [model.derivatives(t, u, {"temperature": y[0]})["temperature"]],
                    (0.0, R * C), [293.15], rtol=1e-11, atol=1e-11)
    assert sol.y[0][-1] - 293.15 == pytest.approx(R * 1000.0 * (1.0 - math.exp(-1.0)), rel=1e-8)


def test_steady_state_and_heat_loss() -> None:
    model = mass()
    u = {"heat_in": 750.0, "ambient_temperature": 283.15}
    x = model.steady_state(0.0, u, {"temperature": 293.15})
    assert x == {"temperature": pytest.approx(283.15 + R * 750.0, rel=1e-15)}
    assert model.derivatives(0.0, u, x)["temperature"] == pytest.approx(0.0, abs=1e-12)
    y = model.output(0.0, u, x)
    assert y["temperature"] == x["temperature"]
    assert y["heat_loss"] == pytest.approx(750.0, rel=1e-12)  # all the heat goes out
    assert all(type(v) is float for v in y.values())
    # unconnected inputs take their declared defaults (0 W, 293.15 K)
    assert model.steady_state(0.0, {}, {"temperature": 350.0}) == {"temperature": 293.15}


def test_steady_state_below_absolute_zero_is_refused() -> None:
    with pytest.raises(ModelRuntimeError, match="absolute zero"):
        mass().steady_state(0.0, {"heat_in": -20000.0, "ambient_temperature": 293.15},
                            {"temperature": 293.15})


def test_initial_state_default() -> None:
    assert mass().initial_state() == {"temperature": 293.15}
    assert mass().initial_state({"temperature": 310.0}) == {"temperature": 310.0}


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"thermal_resistance": R}, "missing_argument", "heat_capacity"),
        ({"heat_capacity": C}, "missing_argument", "thermal_resistance"),
        ({"heat_capacity": 0.0, "thermal_resistance": R}, "invalid_argument", "heat_capacity"),
        ({"heat_capacity": C, "thermal_resistance": -1.0}, "invalid_argument",
         "thermal_resistance"),
        ({"heat_capacity": C, "thermal_resistance": R, "initial_temperature": 300.0},
         "invalid_argument", "initial_temperature"),
    ],
)
def test_parameter_errors(params: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("ThermalMass")(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")


def test_describe_is_json_with_units_and_descriptions() -> None:
    cls = get_model("ThermalMass")
    meta = cls.describe()
    json.dumps(meta)
    assert meta["name"] == "ThermalMass" and meta["description"] and meta["reference"]
    assert {v.name: v.default for v in cls.inputs} == {"heat_in": 0.0,
                                                       "ambient_temperature": 293.15}
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"].isascii() and var["unit"] and var["description"], var
