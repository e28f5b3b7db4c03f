"""PIDController driven by hand like the engine: update at t0 + k*T, output held.

Plant: first-order lag tau*dy/dt = K*u - y, integrated exactly over a sample with
the controller output held (zero-order hold): y(t+T) = a*y + b*u with
a = exp(-T/tau), b = K*(1 - a) (Astrom & Wittenmark, Computer-Controlled Systems,
3rd ed. 1997, ch. 2, sampling of a first-order system).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import signal

from modellib import CodedError, Model, get_model
from modellib.errors import ModelRuntimeError

K, TAU, T = 2.0, 5.0, 0.1
A = math.exp(-T / TAU)
B = K * (1.0 - A)


def pid(**params: object) -> Model:
    return get_model("PIDController")({"sample_time": T, **params})


def run_loop(ctrl: Model, setpoints: list[float], *, y0: float = 0.0, a: float = A,
             b: float = B) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drive the loop for len(setpoints) samples; return (y_k, u_k, e_k) at each sample."""
    x = ctrl.initial_state()
    assert ctrl.output(0.0, {}, x) == {"output": 0.0}  # held initial output before t0
    y = y0
    ys, us, es = [], [], []
    for k, r in enumerate(setpoints):
        t = k * T
        u_in = {"setpoint": r, "measurement": y}
        x = ctrl.update(t, u_in, x)
        out = ctrl.output(t, u_in, x)["output"]
        assert out == x["output"]  # zero-order hold of the discrete state
        ys.append(y)
        us.append(out)
        es.append(r - y)
        y = a * y + b * out  # exact plant over [t, t+T) with the output held
    return np.array(ys), np.array(us), np.array(es)


def test_pi_loop_settles_to_the_set_point() -> None:
    ys, us, _ = run_loop(pid(kp=0.8, ki=0.4), [1.0] * 1500)
    assert ys[-1] == pytest.approx(1.0, abs=1e-9)
    # zero steady-state error needs the plant input K*u = y, i.e. u = 1/K
    assert us[-1] == pytest.approx(1.0 / K, abs=1e-9)


def test_proportional_offset_is_one_over_one_plus_loop_gain() -> None:
    # Analytic: y_ss = K*kp/(1 + K*kp)*r, so e_ss = r/(1 + K*kp) (type-0 loop).
    kp = 1.5
    _, _, es = run_loop(pid(kp=kp), [1.0] * 1500)
    assert es[-1] == pytest.approx(1.0 / (1.0 + K * kp), abs=1e-12)
    # the same offset is the controller's steady state at that measurement
    ctrl = pid(kp=kp)
    y_ss = K * kp / (1.0 + K * kp)
    x = ctrl.steady_state(0.0, {"setpoint": 1.0, "measurement": y_ss}, ctrl.initial_state())
    assert x["output"] == pytest.approx(y_ss / K, abs=1e-15)


def test_pi_loop_matches_the_z_domain_closed_loop() -> None:
    # Independent derivation: C(z) = kp + ki*T*z/(z-1) (backward-Euler integral),
    # P(z) = b/(z - a) (ZOH plant). Y/R = C P / (1 + C P)
    #   = (b*(kp+ki*T) z^-1 - b*kp z^-2) / (1 + (b*(kp+ki*T) - 1 - a) z^-1 + (a - b*kp) z^-2)
    kp, ki = 0.8, 0.4
    n = 400
    r = np.ones(n)
    r[200:] = 0.25  # a second set-point step, the loop is linear without limits
    g = kp + ki * T
    y_ref = signal.lfilter([0.0, B * g, -B * kp], [1.0, B * g - 1.0 - A, A - B * kp], r)
    ys, _, _ = run_loop(pid(kp=kp, ki=ki), list(r))
    assert np.max(np.abs(ys - y_ref)) < 1e-12
    # and explicitly by the recursion, for the first samples
    y = [0.0, 0.0]  # y_-1, y_0
    rr = [0.0, *r]  # r_-1, r_0, ...
    for k in range(1, 50):
        y.append((1 + A - B * g) * y[-1] - (A - B * kp) * y[-2]
                 + B * g * rr[k] - B * kp * rr[k - 1])
    assert np.max(np.abs(ys[:50] - np.array(y[1:51]))) < 1e-12


def test_clamping_leaves_saturation_at_the_sign_change_of_the_error() -> None:
    # Set point 3 is out of reach with u <= 1 (y -> K*1 = 2): the output saturates for
    # 20 s; then the set point drops to 1 and the error changes sign.
    params = {"kp": 0.5, "ki": 0.5, "output_min": 0.0, "output_max": 1.0}
    r = [3.0] * 200 + [1.0] * 1000
    first_negative = 200
    ys, us, es = run_loop(pid(**params), r)
    assert np.all(us[:first_negative] == 1.0)
    assert es[first_negative] < 0 and np.all(es[:first_negative] > 0)
    assert us[first_negative] < 1.0  # left saturation at the first sample of e < 0
    assert ys[-1] == pytest.approx(1.0, abs=1e-6)  # and still settles

    # without anti-windup the integral has wound up to ~ki*sum(e*T) and the output stays
    # at the limit long after the error changed sign
    ys_w, us_w, es_w = run_loop(pid(**params, anti_windup=False), r)
    assert np.all(us_w[:first_negative] == 1.0)  # same outputs while saturated
    stuck = int(np.argmax(us_w[first_negative:] < 1.0))
    assert stuck > 200  # > 20 s at the limit after the sign change, vs. 0 samples
    # and it reaches the new set point (within 2 %) much later
    def settled(y: np.ndarray) -> int:
        return int(np.nonzero(np.abs(y - 1.0) > 0.02)[0][-1]) + 1

    assert settled(ys) < 400 < 600 < settled(ys_w)


def test_derivative_on_measurement_has_no_kick_and_no_first_sample_kick() -> None:
    ctrl = pid(kp=0.0, kd=2.0)
    x = ctrl.initial_state()
    # first sample: measurement 5 with previous 0 would kick by -kd*5/T; it does not
    x = ctrl.update(0.0, {"setpoint": 0.0, "measurement": 5.0}, x)
    assert x["output"] == 0.0 and x["started"] == 1.0
    # a set-point step does not move the derivative on measurement
    x = ctrl.update(T, {"setpoint": 10.0, "measurement": 5.0}, x)
    assert x["output"] == 0.0
    # the measurement rising by 1 in T gives -kd*1/T
    x = ctrl.update(2 * T, {"setpoint": 10.0, "measurement": 6.0}, x)
    assert x["output"] == pytest.approx(-2.0 / T, rel=1e-12)
    # on the error, the set-point step kicks by kd*de/T
    ce = pid(kp=0.0, kd=2.0, derivative_on="error")
    xe = ce.update(0.0, {"setpoint": 0.0, "measurement": 5.0}, ce.initial_state())
    xe = ce.update(T, {"setpoint": 10.0, "measurement": 5.0}, xe)
    assert xe["output"] == pytest.approx(2.0 * 10.0 / T, rel=1e-12)


def test_steady_state_with_integral_action() -> None:
    ctrl = pid(kp=1.0, ki=1.0, output_max=4.0)
    x0 = ctrl.initial_state({"integral": 0.3})
    # zero error: the integral stays, output = I0
    x = ctrl.steady_state(0.0, {"setpoint": 2.0, "measurement": 2.0}, x0)
    assert (x["integral"], x["output"]) == (0.3, 0.3)
    assert ctrl.update(0.0, {"setpoint": 2.0, "measurement": 2.0}, x) == x  # a fixed point
    # positive error: the integral runs to the upper limit and rests there
    u = {"setpoint": 2.0, "measurement": 1.0}
    x = ctrl.steady_state(0.0, u, x0)
    assert x["output"] == 4.0 and x["integral"] == 3.0
    assert ctrl.update(0.0, u, x) == x
    # negative error and no lower limit: no steady state
    with pytest.raises(ModelRuntimeError) as info:
        ctrl.steady_state(0.0, {"setpoint": 0.0, "measurement": 1.0}, x0)
    assert info.value.code == "runtime_error" and "ki" in info.value.message


def test_describe_is_json_and_feedthrough_false() -> None:
    meta = get_model("PIDController").describe()
    json.dumps(meta)
    assert meta["feedthrough"] is False
    assert [v["name"] for v in meta["outputs"]] == ["output"]
    assert [v["name"] for v in meta["discrete_states"]] == [
        "integral", "previous", "output", "started"]
    for kind in ("parameters", "inputs", "outputs", "discrete_states"):
        for var in meta[kind]:
            assert var["unit"] and var["description"], var


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({}, "missing_argument", "sample_time"),
        ({"sample_time": 0.0}, "invalid_argument", "sample_time"),
        ({"sample_time": 0.1, "output_min": 1.0, "output_max": 1.0}, "invalid_argument",
         "output_max"),
        ({"sample_time": 0.1, "derivative_on": "setpoint"}, "invalid_argument",
         "derivative_on"),
        ({"sample_time": 0.1, "anti_windup": 1}, "invalid_argument", "anti_windup"),
        ({"sample_time": 0.1, "kp": "2"}, "invalid_argument", "kp"),
        ({"sample_time": 0.1, "Kp": 2}, "invalid_argument", "Kp"),
    ],
)
def test_parameter_errors_have_code_and_path(params: dict, code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("PIDController")(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")
