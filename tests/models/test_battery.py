"""Battery (Thevenin model) against the analytic constant-current discharge.

Reference: G. L. Plett, Battery Management Systems, Vol. I (2015), ch. 2, and Hu, Li &
Peng, J. Power Sources 198 (2012) 359-367. For a constant current I from rest:
soc(t) = soc0 - I t / (3600 Q) (Coulomb counting, exactly linear),
v1(t) = I r1 (1 - exp(-t / (r1 c1))) (RC charging), and the terminal voltage drops by
I r0 at t = 0+ (v1 cannot jump).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import integrate

from modellib import CodedError, get_model
from modellib.models.battery import Battery

SOC = [0.0, 0.1, 0.5, 0.9, 1.0]
OCV = [3.0, 3.45, 3.65, 4.0, 4.2]
PARAMS: dict[str, object] = {"capacity": 2.3, "r0": 0.012, "r1": 0.015, "c1": 2000.0,
          "ocv_soc": SOC, "ocv_voltage": OCV}
TAU = 0.015 * 2000.0  # 30 s


def battery(**over: object) -> Battery:
    m = get_model("Battery")({**PARAMS, **over})
    assert isinstance(m, Battery)
    return m


def test_constant_current_discharge_is_analytic() -> None:
    m = battery()
    current, soc0 = 4.6, 0.8  # 2C
    names = m.state_names()

    def rhs(t: float, z: np.ndarray) -> list[float]:
        d = m.derivatives(t, {"current": current}, dict(zip(names, z, strict=True)))
        return [d[k] for k in names]

    t = np.linspace(0.0, 600.0, 121)
    sol = integrate.solve_ivp(rhs, (0.0, 600.0), [soc0, 0.0], t_eval=t, method="DOP853",
                              rtol=1e-10, atol=1e-13)
    assert sol.success
    soc, v1 = sol.y
    np.testing.assert_allclose(soc, soc0 - current * t / (3600 * 2.3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(v1, current * 0.015 * (1 - np.exp(-t / TAU)), rtol=0, atol=1e-10)
    # terminal voltage along the way: OCV(soc) - v1 - r0 I
    k = 60  # t = 300 s
    y = m.output(float(t[k]), {"current": current}, {"soc": soc[k], "v1": v1[k]})
    ocv = np.interp(soc[k], SOC, OCV)
    assert y["voltage"] == pytest.approx(ocv - v1[k] - 0.012 * current, rel=1e-12)
    assert y["power"] == pytest.approx(y["voltage"] * current, rel=1e-12)


def test_terminal_voltage_drops_by_i_r0_at_t0() -> None:
    m = battery()
    x = m.initial_state({"soc": 0.9})
    rest = m.output(0.0, {"current": 0.0}, x)
    assert rest == {"voltage": 4.0, "soc": 0.9, "power": 0.0}  # OCV at a breakpoint
    loaded = m.output(0.0, {"current": 10.0}, x)
    assert rest["voltage"] - loaded["voltage"] == pytest.approx(10.0 * 0.012, rel=1e-12)
    charging = m.output(0.0, {"current": -5.0}, x)
    assert charging["voltage"] == pytest.approx(4.0 + 5.0 * 0.012)
    assert charging["power"] < 0
    assert all(type(v) is float for v in loaded.values())


def test_ocv_interpolates_linearly_and_is_flat_beyond_the_table() -> None:
    m = battery()
    assert m.ocv(0.3) == pytest.approx(3.55)  # halfway between 0.1 (3.45) and 0.5 (3.65)
    assert m.ocv(1.2) == 4.2
    assert m.ocv(-0.1) == 3.0


def test_defaults_and_steady_state_at_rest() -> None:
    m = battery()
    assert m.initial_state() == {"soc": 1.0, "v1": 0.0}
    assert m.steady_state(0.0, {"current": 0.0}, {"soc": 0.5, "v1": 0.03}) == {
        "soc": 0.5, "v1": 0.0}
    with pytest.raises(CodedError) as info:
        m.steady_state(0.0, {"current": 1.0}, {"soc": 0.5, "v1": 0.0})
    assert info.value.code == "runtime_error"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"ocv_voltage": [3.0, 3.5, 4.2]}, "ocv_soc"),
        ({"ocv_soc": [0.0, 0.5, 0.4, 0.9, 1.0]}, "ocv_soc"),
        ({"ocv_soc": [0.0, 0.5, 0.5, 0.9, 1.0]}, "ocv_soc"),
        ({"ocv_soc": [0.0, 0.1, 0.5, 0.9, 1.1]}, "ocv_soc"),
        ({"ocv_voltage": [3.0, 3.45, -3.65, 4.0, 4.2]}, "ocv_voltage"),
        ({"ocv_soc": []}, "ocv_soc"),
        ({"capacity": 0.0}, "capacity"),
        ({"c1": -1.0}, "c1"),
    ],
)
def test_bad_parameters_are_refused_with_a_path(over: dict, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("Battery")({**PARAMS, **over}, path="params")
    assert (info.value.code, info.value.path) == ("invalid_argument", f"params.{field}")


def test_describe_is_json_and_every_variable_has_unit_and_description() -> None:
    meta = get_model("Battery").describe()
    json.dumps(meta)
    assert meta["description"] and meta["reference"] and meta["feedthrough"] is True
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"] and var["description"], var
