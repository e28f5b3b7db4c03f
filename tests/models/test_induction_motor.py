"""InductionMotor against Chapman's worked example and the Thevenin torque formulas.

Reference: S. J. Chapman, Electric Machinery Fundamentals, 5th ed., McGraw-Hill 2012,
Example 6-5 (Example 7-5 in the 4th ed., 2005): a 460 V, 25 hp, 60 Hz, four-pole,
Y-connected motor with R1 = 0.641, R2 = 0.332, X1 = 1.106, X2 = 0.464, XM = 26.3 Ohm per
phase and 1100 W rotational losses (core losses lumped in), at 2.2 % slip. The book's
answers, from intermediate values rounded to 3-4 digits: n = 1760 rpm, I = 18.88 A at
-33.6 deg, PF = 0.833 lagging, P_in = 12 530 W, P_AG = 11 845 W, P_conv = 11 585 W,
P_out = 10 485 W (14.1 hp), tau_ind = 62.8 N.m, tau_load = 56.9 N.m, efficiency 83.7 %.
The exact circuit gives I = 18.89 A, PF = 0.8321, P_AG = 11 839 W, tau_ind = 62.81 N.m.

Breakdown and starting torque: Chapman (5th ed.) eqs. 6-50 to 6-54, the Thevenin
equivalent V_TH = V Xm / |R1 + j(X1 + Xm)|, Z_TH = jXm (R1 + jX1) / (R1 + j(X1 + Xm)).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize

from modellib import CodedError, Model, get_model

CHAPMAN = {"stator_resistance": 0.641, "rotor_resistance": 0.332, "stator_reactance": 1.106,
           "rotor_reactance": 0.464, "magnetizing_reactance": 26.3, "poles": 4,
           "frequency": 60.0, "line_voltage": 460.0, "mechanical_losses": 1100.0}
N_SYNC = 1800.0
W_SYNC = N_SYNC * math.pi / 30


def motor(**over: float) -> Model:
    return get_model("InductionMotor")({**CHAPMAN, **over})


def at_slip(m: Model, s: float) -> dict[str, float]:
    return m.output(0.0, {"speed": N_SYNC * (1 - s)}, {})


def thevenin() -> tuple[float, float, float]:
    r1, x1, xm = 0.641, 1.106, 26.3
    v = 460.0 / math.sqrt(3)
    v_th = v * xm / abs(complex(r1, x1 + xm))
    z_th = 1j * xm * complex(r1, x1) / complex(r1, x1 + xm)
    return v_th, z_th.real, z_th.imag


def test_chapman_example_at_2_2_percent_slip() -> None:
    y = motor().output(0.0, {"speed": 1760.4}, {})  # 1800 rpm * (1 - 0.022)
    assert y["slip"] == pytest.approx(0.022, rel=1e-9)
    assert y["current"] == pytest.approx(18.88, rel=2e-3)
    assert y["power_factor"] == pytest.approx(0.833, abs=2e-3)
    assert y["torque"] == pytest.approx(62.8, rel=2e-3)  # tau_ind = P_AG / w_sync
    assert y["power"] == pytest.approx(10_485, rel=2e-3)  # P_out
    assert y["power"] / (W_SYNC * 0.978) == pytest.approx(56.9, rel=2e-3)  # tau_load
    assert y["efficiency"] == pytest.approx(0.837, abs=2e-3)
    p_in = math.sqrt(3) * 460.0 * y["current"] * y["power_factor"]
    assert p_in == pytest.approx(12_530, rel=2e-3)
    assert y["power"] / p_in == pytest.approx(y["efficiency"], rel=1e-12)


def test_torque_is_zero_at_synchronous_speed() -> None:
    m = motor()
    y = at_slip(m, 0.0)
    assert y["slip"] == 0.0
    assert y["torque"] == 0.0
    assert y["power"] == pytest.approx(-1100.0)  # the losses alone
    assert y["efficiency"] == 0.0
    # no-load current: only the magnetising branch is left, V / |R1 + j(X1 + Xm)|
    v = 460.0 / math.sqrt(3)
    assert y["current"] == pytest.approx(v / abs(complex(0.641, 1.106 + 26.3)), rel=1e-12)
    assert all(type(value) is float for value in y.values())


def test_torque_follows_the_thevenin_formula() -> None:
    v_th, r_th, x_th = thevenin()
    m = motor()
    for s in (1.0, 0.5, 0.1, 0.022, 0.001, -0.05):
        r2s = 0.332 / s
        expected = 3 * v_th**2 * r2s / (W_SYNC * ((r_th + r2s) ** 2 + (x_th + 0.464) ** 2))
        assert at_slip(m, s)["torque"] == pytest.approx(expected, rel=1e-10), s


def test_breakdown_torque_and_slip() -> None:
    v_th, r_th, x_th = thevenin()
    root = math.sqrt(r_th**2 + (x_th + 0.464) ** 2)
    s_max = 0.332 / root
    t_max = 3 * v_th**2 / (2 * W_SYNC * (r_th + root))
    m = motor()
    found = optimize.minimize_scalar(lambda s: -at_slip(m, s)["torque"], bounds=(0.01, 0.9),
                                     method="bounded", options={"xatol": 1e-10})
    assert found.x == pytest.approx(s_max, rel=1e-4)
    assert -found.fun == pytest.approx(t_max, rel=1e-10)
    assert s_max == pytest.approx(0.2014, abs=1e-4)
    assert t_max == pytest.approx(230.8, abs=0.1)


def test_generating_above_synchronous_speed() -> None:
    y = motor().output(0.0, {"speed": 1890.0}, {})
    assert y["slip"] < 0 and y["torque"] < 0 and y["power"] < 0
    assert y["power_factor"] < 0  # power flows back to the supply
    assert 0.0 < y["efficiency"] < 1.0


def test_defaults_and_odd_poles_are_refused() -> None:
    m = get_model("InductionMotor")({k: v for k, v in CHAPMAN.items()
                                     if k not in ("poles", "frequency", "line_voltage",
                                                  "mechanical_losses")})
    assert (m.p["poles"], m.p["frequency"], m.p["line_voltage"],
            m.p["mechanical_losses"]) == (4, 50.0, 400.0, 0.0)
    assert m.output(0.0, {"speed": 1500.0}, {})["power"] == 0.0
    with pytest.raises(CodedError) as info:
        get_model("InductionMotor")({**CHAPMAN, "poles": 3}, path="p")
    assert (info.value.code, info.value.path) == ("invalid_argument", "p.poles")
    with pytest.raises(CodedError) as info:
        get_model("InductionMotor")({**CHAPMAN, "poles": 4.5}, path="p")
    assert (info.value.code, info.value.path) == ("invalid_argument", "p.poles")


def test_describe_is_json_and_every_variable_has_unit_and_description() -> None:
    meta = get_model("InductionMotor").describe()
    json.dumps(meta)
    assert meta["description"] and meta["reference"]
    assert meta["states"] == []
    for kind in ("parameters", "inputs", "outputs"):
        for var in meta[kind]:
            assert var["unit"] and var["description"], var
    assert np.isfinite([v for v in at_slip(motor(), 1.0).values()]).all()
