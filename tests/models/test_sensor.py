"""FirstOrderLag against the analytic step response y = K u (1 - exp(-t / tau)).

Reference: K. Ogata, Modern Control Engineering, 5th ed. (2010), sec. 5-3: the unit-step
response of 1 / (T s + 1) reaches 63.2 % of its final value at t = T.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate

from modellib import CodedError, get_model


def test_step_response_is_exponential_and_63_percent_at_tau() -> None:
    tau, gain, step = 2.5, 3.0, 4.0
    m = get_model("FirstOrderLag")({"time_constant": tau, "gain": gain})

    def rhs(t: float, z: np.ndarray) -> list[float]:
        return [m.derivatives(t, {"u": step}, {"y": z[0]})["y"]]

    t = np.linspace(0.0, 5 * tau, 101)
    sol = integrate.solve_ivp(rhs, (0.0, t[-1]), [0.0], t_eval=t, method="DOP853",
                              rtol=1e-10, atol=1e-13)
    assert sol.success
    np.testing.assert_allclose(sol.y[0], gain * step * (1 - np.exp(-t / tau)), atol=1e-10)
    at_tau = sol.y[0][20] / (gain * step)  # t[20] = tau
    assert t[20] == pytest.approx(tau)
    assert at_tau == pytest.approx(1 - math.exp(-1), rel=1e-9)
    assert at_tau == pytest.approx(0.632, abs=5e-4)


def test_steady_state_output_and_defaults() -> None:
    m = get_model("FirstOrderLag")({"time_constant": 1.0})
    assert m.p["gain"] == 1.0
    assert m.initial_state() == {"y": 0.0}
    x = m.steady_state(0.0, {"u": 7.5}, m.initial_state())
    assert x == {"y": 7.5}
    assert m.derivatives(0.0, {"u": 7.5}, x) == {"y": 0.0}
    y = m.output(0.0, {"u": 100.0}, {"y": 2.0})
    assert y == {"y": 2.0} and type(y["y"]) is float  # no feedthrough
    assert m.feedthrough is False


def test_time_constant_must_be_positive() -> None:
    with pytest.raises(CodedError) as info:
        get_model("FirstOrderLag")({"time_constant": 0.0}, path="p")
    assert (info.value.code, info.value.path) == ("invalid_argument", "p.time_constant")


def test_describe_is_json_and_every_variable_has_unit_and_description() -> None:
    meta = get_model("FirstOrderLag").describe()
    json.dumps(meta)
    assert meta["description"] and meta["reference"]
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"] and var["description"], var
