"""Pipe: friction factor against published values, Hagen-Poiseuille, head balance, reverse flow.

References:
* Moody chart (L. F. Moody, Trans. ASME 66 (1944) 671-684): Re = 1e5, eps/D = 1e-4
  reads f = 0.0185;
* S. E. Haaland, J. Fluids Eng. 105 (1983) 89-90: explicit approximation of
  Colebrook-White within about 1.5 %;
* Prandtl-von Karman smooth-pipe law 1/sqrt(f) = 2 log10(Re sqrt(f)) - 0.8 and the
  von Karman fully rough law 1/sqrt(f) = -2 log10(eps/(3.7 D)), the two limits that
  Colebrook (J. Inst. Civil Eng. 11 (1939) 133-156) joins;
* Hagen-Poiseuille: Q = pi D^4 rho g h_f / (128 mu L) in laminar flow.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from modellib import CodedError, G, get_model
from modellib.models.pipe import RE_CRITICAL, Pipe, colebrook, friction_factor

WATER = {"density": 998.0, "viscosity": 1.0e-3}
PIPE = {"length": 100.0, "diameter": 0.1, "roughness": 1.0e-5}


def pipe(**extra: float) -> Pipe:
    model = get_model("Pipe")({**PIPE, **extra})
    assert isinstance(model, Pipe)
    return model


def colebrook_fixed_point(re: float, rel: float) -> float:
    """Independent solution: plain fixed-point iteration on x = 1/sqrt(f) from x = 8."""
    x = 8.0
    for _ in range(500):
        x = -2.0 * math.log10(rel / 3.7 + 2.51 * x / re)
    return 1.0 / (x * x)


def haaland(re: float, rel: float) -> float:
    return (-1.8 * math.log10(6.9 / re + (rel / 3.7) ** 1.11)) ** -2


def test_colebrook_against_the_moody_chart() -> None:
    assert colebrook(1.0e5, 1.0e-4) == pytest.approx(0.0185, abs=0.0001)


@pytest.mark.parametrize("re", [2300.0, 4.0e3, 1.0e4, 1.0e5, 1.0e6, 1.0e7, 1.0e8])
@pytest.mark.parametrize("rel", [0.0, 1.0e-6, 1.0e-4, 1.0e-3, 1.0e-2, 0.05])
def test_colebrook_solution(re: float, rel: float) -> None:
    f = colebrook(re, rel)
    # the equation itself holds to rounding
    assert 1.0 / math.sqrt(f) == pytest.approx(
        -2.0 * math.log10(rel / 3.7 + 2.51 / (re * math.sqrt(f))), rel=1e-13)
    assert f == pytest.approx(colebrook_fixed_point(re, rel), rel=1e-12)
    if re >= 4.0e3:
        assert f == pytest.approx(haaland(re, rel), rel=0.02)


def test_colebrook_limits() -> None:
    # smooth pipe: Prandtl-von Karman law (the 2.51 of Colebrook is 10**0.4 = 2.512)
    for re in (1.0e4, 1.0e5, 1.0e6):
        f = colebrook(re, 0.0)
        assert 1.0 / math.sqrt(f) == pytest.approx(2.0 * math.log10(re * math.sqrt(f)) - 0.8,
                                                   rel=1e-3)
    # fully rough: the Reynolds term vanishes
    f = colebrook(1.0e12, 1.0e-3)
    assert f == pytest.approx((-2.0 * math.log10(1.0e-3 / 3.7)) ** -2, rel=1e-6)


def test_friction_factor_switches_at_re_2300() -> None:
    assert friction_factor(2299.0, 1e-4) == pytest.approx(64.0 / 2299.0, rel=1e-15)
    assert friction_factor(2300.0, 1e-4) == colebrook(2300.0, 1e-4)
    assert friction_factor(1000.0, 0.0) == 0.064


def test_hagen_poiseuille_laminar_flow_is_exact() -> None:
    model = pipe(**WATER)
    h_f = 1.0e-4  # m: v = 3e-3 m/s, Re = 306
    y = model.output(0.0, {"head": h_f}, {})
    exact = math.pi * 0.1**4 * 998.0 * G * h_f / (128.0 * 1.0e-3 * 100.0)
    assert y["flow"] == pytest.approx(exact, rel=1e-13)
    assert y["reynolds"] < RE_CRITICAL
    assert y["head_loss"] == h_f


def test_head_balance_closes_in_turbulent_flow() -> None:
    model = pipe(static_head=5.0, minor_loss=2.5)
    area = math.pi * 0.1**2 / 4.0
    for head in (5.003, 5.01, 5.1, 6.0, 10.0, 50.0, 500.0):
        y = model.output(0.0, {"head": head}, {})
        v = y["velocity"]
        assert y["flow"] == pytest.approx(v * area, rel=1e-15)
        re = 998.0 * v * 0.1 / 1.0e-3
        assert y["reynolds"] == pytest.approx(re, rel=1e-14)
        assert re > RE_CRITICAL
        f = colebrook_fixed_point(re, 1.0e-4)  # independent friction factor
        balance = 5.0 + (f * 100.0 / 0.1 + 2.5) * v * v / (2.0 * G)
        assert balance == pytest.approx(head, rel=1e-9)
        assert y["head_loss"] == pytest.approx(head - 5.0, rel=1e-15)


def test_reverse_flow_is_symmetric() -> None:
    model = pipe(static_head=2.0, minor_loss=1.0)
    for dh in (1e-5, 1e-3, 0.5, 20.0):
        fwd = model.output(0.0, {"head": 2.0 + dh}, {})
        rev = model.output(0.0, {"head": 2.0 - dh}, {})
        assert rev["flow"] == -fwd["flow"] < 0.0
        assert rev["velocity"] == -fwd["velocity"]
        assert rev["reynolds"] == fwd["reynolds"] > 0.0
        assert rev["head_loss"] == pytest.approx(-fwd["head_loss"], rel=1e-12)
    assert model.output(0.0, {"head": 2.0}, {}) == {
        "flow": 0.0, "velocity": 0.0, "reynolds": 0.0, "head_loss": 0.0}


def test_flow_is_continuous_and_monotone_through_the_transition() -> None:
    model = pipe()
    v_crit = RE_CRITICAL * 1.0e-3 / (998.0 * 0.1)
    h_lam = model.loss_of(v_crit * (1.0 - 1e-12))  # laminar loss at the critical velocity
    h_turb = model.loss_of(v_crit)  # Colebrook loss at the critical velocity
    assert h_turb > h_lam  # the friction law jumps up at Re = 2300
    heads = np.linspace(0.0, 3.0 * h_turb, 3001)
    flows = np.array([model.output(0.0, {"head": float(h)}, {})["flow"] for h in heads])
    steps = np.diff(flows)
    assert np.all(steps >= 0.0)
    assert np.max(steps) < 1e-3 * flows[-1]  # no jump anywhere
    # inside the jump the flow is held at the critical flow, Re = 2300
    y = model.output(0.0, {"head": 0.5 * (h_lam + h_turb)}, {})
    assert y["reynolds"] == pytest.approx(RE_CRITICAL, rel=1e-12)


def test_outputs_are_floats_for_float_inputs() -> None:
    for head in (0.0, 1e-4, 2.0, -3.0):
        y = pipe().output(0.0, {"head": head}, {})
        assert all(type(v) is float for v in y.values()), y


def test_non_finite_head_is_a_runtime_error() -> None:
    with pytest.raises(CodedError) as info:
        pipe().output(0.0, {"head": float("nan")}, {})
    assert info.value.code == "runtime_error"


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"diameter": 0.1, "roughness": 0.0}, "missing_argument", "length"),
        ({**PIPE, "diameter": 0.0}, "invalid_argument", "diameter"),
        ({**PIPE, "length": -1.0}, "invalid_argument", "length"),
        ({**PIPE, "roughness": -1e-6}, "invalid_argument", "roughness"),
        ({**PIPE, "minor_loss": -0.5}, "invalid_argument", "minor_loss"),
        ({**PIPE, "viscosity": 0.0}, "invalid_argument", "viscosity"),
        ({**PIPE, "density": 0.0}, "invalid_argument", "density"),
    ],
)
def test_parameter_errors(params: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("Pipe")(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")


def test_defaults() -> None:
    p = pipe().p
    assert (p["static_head"], p["minor_loss"], p["density"], p["viscosity"]) == (
        0.0, 0.0, 998.0, 1.0e-3)


def test_describe_is_json_with_units_and_descriptions() -> None:
    meta = get_model("Pipe").describe()
    json.dumps(meta)
    assert meta["name"] == "Pipe" and meta["description"] and meta["reference"]
    assert meta["feedthrough"] is True
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"].isascii() and var["unit"] and var["description"], var
