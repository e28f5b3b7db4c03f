"""Valve: the Kv definition and the inherent characteristics.

Reference: IEC 60534-2-1:2011 (ANSI/ISA-75.01.01-2012), non-choked turbulent liquid flow
Q = Kv sqrt((dp/1 bar)/(rho/rho_0)) with Q in m3/h and rho_0 = 1000 kg/m3: Kv is by
definition the flow in m3/h of water at a pressure drop of 1 bar. Inherent
characteristics (IEC 60534-2-4): linear Kv/Kvs = h, equal percentage Kv/Kvs = R^(h-1).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from modellib import CodedError, Model, get_model

M3H = 1.0 / 3600.0  # m3/s per m3/h


def valve(**params: object) -> Model:
    return get_model("Valve")({"kv": 10.0, **params})


def flow(model: Model, opening: float, dp: float) -> float:
    return float(model.output(0.0, {"opening": opening, "dp": dp}, {})["flow"])


def test_kv_definition() -> None:
    # Kv = 10, fully open, 1 bar, water at 1000 kg/m3 -> 10 m3/h
    assert flow(valve(density=1000.0), 1.0, 1.0e5) == pytest.approx(10.0 * M3H, rel=1e-15)
    # the square-root law: 4 bar gives twice the flow, a denser liquid less
    assert flow(valve(density=1000.0), 1.0, 4.0e5) == pytest.approx(20.0 * M3H, rel=1e-15)
    assert flow(valve(density=1210.0), 1.0, 1.0e5) == pytest.approx(10.0 / 1.1 * M3H,
                                                                   rel=1e-15)
    # default density 998 kg/m3
    assert flow(valve(), 1.0, 1.0e5) == pytest.approx(10.0 * math.sqrt(1000.0 / 998.0) * M3H,
                                                      rel=1e-15)


def test_equal_percentage_characteristic() -> None:
    model = valve(characteristic="equal_percentage", density=1000.0)  # R = 50 by default
    assert flow(model, 0.5, 1.0e5) == pytest.approx(10.0 * 50.0**-0.5 * M3H, rel=1e-14)
    assert flow(model, 1.0, 1.0e5) == pytest.approx(10.0 * M3H, rel=1e-15)
    # the ideal curve does not shut: Kvs/R at zero opening
    assert flow(model, 0.0, 1.0e5) == pytest.approx(10.0 / 50.0 * M3H, rel=1e-14)
    # equal percentage: each 0.1 of travel multiplies the flow by the same factor R^0.1
    ratio = flow(model, 0.7, 1.0e5) / flow(model, 0.6, 1.0e5)
    assert ratio == pytest.approx(50.0**0.1, rel=1e-13)
    wide = valve(characteristic="equal_percentage", rangeability=100.0, density=1000.0)
    assert flow(wide, 0.5, 1.0e5) == pytest.approx(1.0 * M3H, rel=1e-14)


def test_linear_characteristic() -> None:
    model = valve(density=1000.0)
    assert flow(model, 0.3, 1.0e5) == pytest.approx(3.0 * M3H, rel=1e-14)
    assert flow(model, 0.0, 1.0e5) == 0.0


def test_flow_follows_the_sign_of_dp() -> None:
    model = valve()
    assert flow(model, 0.6, -2.0e5) == -flow(model, 0.6, 2.0e5) < 0.0
    assert flow(model, 0.6, 0.0) == 0.0


def test_opening_is_clamped_to_the_stops() -> None:
    model = valve()
    assert flow(model, 1.2, 1.0e5) == flow(model, 1.0, 1.0e5)
    assert flow(model, -0.1, 1.0e5) == 0.0


def test_output_is_a_float() -> None:
    y = valve(characteristic="equal_percentage").output(0.0, {"opening": 0.5, "dp": 1.0e5}, {})
    assert type(y["flow"]) is float


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({}, "missing_argument", "kv"),
        ({"kv": 0.0}, "invalid_argument", "kv"),
        ({"kv": 1.0, "characteristic": "quick_opening"}, "invalid_argument", "characteristic"),
        ({"kv": 1.0, "rangeability": 1.0}, "invalid_argument", "rangeability"),
        ({"kv": 1.0, "density": -1.0}, "invalid_argument", "density"),
    ],
)
def test_parameter_errors(params: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("Valve")(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")


def test_defaults() -> None:
    p = valve().p
    assert (p["characteristic"], p["rangeability"], p["density"]) == ("linear", 50.0, 998.0)


def test_describe_is_json_with_units_and_descriptions() -> None:
    meta = get_model("Valve").describe()
    json.dumps(meta)
    assert meta["name"] == "Valve" and meta["description"] and "IEC 60534" in meta["reference"]
    for kind in ("parameters", "inputs", "outputs", "states"):
        for var in meta[kind]:
            assert var["unit"].isascii() and var["unit"] and var["description"], var
