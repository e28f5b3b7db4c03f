"""DCMotor against the analytic solution of the armature/rotor equations.

Reference: Franklin, Powell & Emami-Naeini, Feedback Control of Dynamic Systems, 7th ed.
(2015), sec. 2.3: speed/voltage transfer function k / ((J s + b)(L s + R) + k^2). The numbers
are those of the DC motor speed example of Messner & Tilbury, Control Tutorials for MATLAB
and Simulink (J = 0.01, b = 0.1, k = 0.01, R = 1, L = 0.5), whose steady speed for 1 V is
0.1 rad/s to two digits.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, signal

from modellib import CodedError, Model, get_model

PARAMS = {"resistance": 1.0, "inductance": 0.5, "torque_constant": 0.01, "inertia": 0.01,
          "friction": 0.1}
R, L, K, J, B = 1.0, 0.5, 0.01, 0.01, 0.1


def motor(**over: float) -> Model:
    return get_model("DCMotor")({**PARAMS, **over})


def simulate(
    m: Model, volts: float, load: float, t_end: float, n: int = 201
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    names = m.state_names()

    def rhs(t: float, z: np.ndarray) -> list[float]:
        u = {"voltage": volts, "load_torque": load}
        d = m.derivatives(t, u, dict(zip(names, z, strict=True)))
        return [d[k] for k in names]

    t = np.linspace(0.0, t_end, n)
    sol = integrate.solve_ivp(rhs, (0.0, t_end), [0.0, 0.0], t_eval=t, method="DOP853",
                              rtol=1e-10, atol=1e-13)
    assert sol.success
    return t, dict(zip(names, sol.y, strict=True))


def test_speed_step_response_matches_the_transfer_function() -> None:
    m = motor()
    t, x = simulate(m, 1.0, 0.0, 10.0)
    # scipy.signal.step of k / ((Js + b)(Ls + R) + k^2)
    den = np.polyadd(np.polymul([J, B], [L, R]), [K * K])
    _, w_tf = signal.step(signal.TransferFunction([K], den), T=t)
    np.testing.assert_allclose(x["speed"], w_tf, rtol=0, atol=1e-9)
    # closed form from the two (real, distinct) poles p1, p2:
    # w(t) = w_ss (1 + (p2 e^{p1 t} - p1 e^{p2 t}) / (p1 - p2))
    p1, p2 = np.roots(den).real
    w_ss = K / (R * B + K * K)
    closed = w_ss * (1 + (p2 * np.exp(p1 * t) - p1 * np.exp(p2 * t)) / (p1 - p2))
    np.testing.assert_allclose(x["speed"], closed, rtol=0, atol=1e-9)
    assert x["speed"][-1] == pytest.approx(w_ss, rel=1e-7)
    assert w_ss == pytest.approx(0.1, abs=5e-4)  # Control Tutorials: 0.1 rad/s for 1 V


def test_current_starts_at_slope_v_over_l() -> None:
    m = motor()
    d = m.derivatives(0.0, {"voltage": 12.0, "load_torque": 0.0}, {"current": 0.0, "speed": 0.0})
    assert d == {"current": pytest.approx(12.0 / L), "speed": 0.0}


def test_steady_state_closed_form() -> None:
    m = motor()
    volts, load = 24.0, 0.05
    x = m.steady_state(0.0, {"voltage": volts, "load_torque": load},
                       m.initial_state())
    det = R * B + K * K
    assert x["current"] == pytest.approx((B * volts + K * load) / det, rel=1e-12)
    assert x["speed"] == pytest.approx((K * volts - R * load) / det, rel=1e-12)
    d = m.derivatives(0.0, {"voltage": volts, "load_torque": load}, x)
    assert d["current"] == pytest.approx(0.0, abs=1e-9)
    assert d["speed"] == pytest.approx(0.0, abs=1e-9)
    # the dynamic response settles there too
    _, xs = simulate(m, volts, load, 12.0)
    assert xs["speed"][-1] == pytest.approx(x["speed"], rel=1e-6)
    assert xs["current"][-1] == pytest.approx(x["current"], rel=1e-6)


def test_stall_current_is_v_over_r() -> None:
    # locked rotor: the load torque that holds the rotor still is k V / R, and i = V / R
    m = motor(friction=0.0)
    volts = 12.0
    x = m.steady_state(0.0, {"voltage": volts, "load_torque": K * volts / R},
                       m.initial_state())
    assert x["speed"] == pytest.approx(0.0, abs=1e-12)
    assert x["current"] == pytest.approx(volts / R, rel=1e-12)
    y = m.output(0.0, {"voltage": volts}, x)
    assert y["torque"] == pytest.approx(K * volts / R)
    assert y["power"] == pytest.approx(0.0, abs=1e-12)


def test_no_load_speed_without_friction_is_v_over_k() -> None:
    m = motor(friction=0.0)
    x = m.steady_state(0.0, {"voltage": 12.0, "load_torque": 0.0}, m.initial_state())
    assert x == {"current": 0.0, "speed": pytest.approx(12.0 / K)}


def test_outputs_are_floats_and_consistent() -> None:
    m = motor()
    y = m.output(0.0, {"voltage": 1.0}, {"current": 2.0, "speed": 10.0})
    assert all(type(v) is float for v in y.values())
    assert y["speed_rpm"] == pytest.approx(10.0 * 60 / (2 * math.pi))
    assert y["torque"] == pytest.approx(K * 2.0)
    assert y["power"] == pytest.approx(K * 2.0 * 10.0)
    assert all(type(v) is float for v in m.derivatives(0.0, {"voltage": 1.0},
                                                      {"current": 2.0, "speed": 10.0}).values())
    assert m.feedthrough is False


def test_friction_defaults_to_zero_and_bounds_apply() -> None:
    p = {k: v for k, v in PARAMS.items() if k != "friction"}
    assert get_model("DCMotor")(p).p["friction"] == 0.0
    with pytest.raises(CodedError) as info:
        get_model("DCMotor")({**PARAMS, "inductance": 0.0}, path="p")
    assert (info.value.code, info.value.path) == ("invalid_argument", "p.inductance")


def test_describe_is_json_and_every_variable_has_unit_and_description() -> None:
    meta = get_model("DCMotor").describe()
    json.dumps(meta)
    assert meta["description"] and meta["reference"]
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"] and var["description"], var
