"""Model library: declarations with units, parameter checks, and the pump's equations."""

from __future__ import annotations

import json

import pytest

from modellib import CodedError, G, describe_models, get_model

PUMP = {"rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 2.0e4,
        "efficiency": 0.72}


def test_every_variable_has_a_unit_and_a_description() -> None:
    for name, meta in describe_models().items():
        json.dumps(meta)  # JSON-able
        assert meta["description"] and meta["reference"], name
        for kind in ("parameters", "inputs", "outputs", "states", "discrete_states"):
            for var in meta[kind]:
                assert var["unit"] and var["description"], (name, kind, var)


def test_pump_affinity_law_and_hydraulic_power() -> None:
    # Reference: affinity laws H ~ n^2 at zero flow; P = rho g Q H / eta (Karassik, Pump
    # Handbook, ch. 2). Hand-computed: n = 1015 rpm = 0.7 n_rated, Q = 0.02 m3/s.
    pump = get_model("CentrifugalPump")(PUMP)
    y = pump.output(0.0, {"speed": 1015.0, "flow": 0.02}, {})
    head = 40.0 * 0.7**2 - 2.0e4 * 0.02**2  # 19.6 - 8.0 = 11.6 m
    assert y["head"] == pytest.approx(11.6, rel=1e-12)
    assert y["power"] == pytest.approx(998.0 * G * 0.02 * head / 0.72, rel=1e-12)
    # shut-off: zero flow, zero power, head scales with the square of the speed
    y0 = pump.output(0.0, {"speed": 725.0, "flow": 0.0}, {})
    assert y0 == {"head": pytest.approx(10.0), "power": 0.0}


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({k: v for k, v in PUMP.items() if k != "efficiency"}, "missing_argument", "efficiency"),
        ({**PUMP, "efficiency": 0.0}, "invalid_argument", "efficiency"),
        ({**PUMP, "efficiency": 1.01}, "invalid_argument", "efficiency"),
        ({**PUMP, "rated_speed": "1450"}, "invalid_argument", "rated_speed"),
        ({**PUMP, "rated_speed": True}, "invalid_argument", "rated_speed"),
        ({**PUMP, "rated_speed": float("nan")}, "invalid_argument", "rated_speed"),
        ({**PUMP, "curve_coefficient": -1}, "invalid_argument", "curve_coefficient"),
        ({**PUMP, "colour": "red"}, "invalid_argument", "colour"),
    ],
)
def test_parameters_are_refused_before_the_run(params: dict, code: str, field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model("CentrifugalPump")(params, path="p")
    assert (info.value.code, info.value.path) == (code, f"p.{field}")


def test_density_has_a_default() -> None:
    assert get_model("CentrifugalPump")(PUMP).p["density"] == 998.0


def test_unknown_model_suggests_the_closest() -> None:
    with pytest.raises(CodedError) as info:
        get_model("centrifugalpump", path="x")
    assert info.value.code == "unknown_model"
    assert "CentrifugalPump" in info.value.message
