"""Unit conversion against the NIST SP 811 / ASHRAE conversion factors."""

from __future__ import annotations

import math

import pytest

from modellib.functions import call_function


def convert(value: object, a: str, b: str) -> object:
    return call_function("convert_units", {"value": value, "from_unit": a, "to_unit": b})


@pytest.mark.parametrize(
    ("value", "a", "b", "expected"),
    [
        # NIST SP 811 appendix B / ASHRAE Fundamentals ch. 39
        (1, "psi", "Pa", 6894.757),
        (1, "hp", "W", 745.69987),  # mechanical horsepower
        (1, "kWh", "J", 3.6e6),
        (1, "bar", "psi", 1e5 / 6894.757293168),
        (1, "kW", "hp", 1000 / 745.69987158227022),
        (2.5, "kPa", "Pa", 2500.0),
        (1, "m3/s", "m3/h", 3600.0),
        (1, "m3/h", "l/s", 1 / 3.6),
        (60, "l/min", "l/s", 1.0),
        (1, "l/s", "l/min", 60.0),
        (1450, "rpm", "rad/s", 1450 * 2 * math.pi / 60),
        (50, "Hz", "rpm", 3000.0),
        (1, "rad/s", "Hz", 1 / (2 * math.pi)),
        (1, "m", "Pa", 998 * 9.80665),  # water head at 998 kg/m3, standard gravity
        (1, "MWh", "kWh", 1000.0),
        (3.6, "MJ", "kWh", 1.0),
    ],
)
def test_conversion_factors(value: float, a: str, b: str, expected: float) -> None:
    assert convert(value, a, b) == pytest.approx(expected, rel=1e-7)


def test_temperatures_are_affine() -> None:
    assert convert(100, "degC", "degF") == 212.0  # exact, not 211.99999999999997
    assert convert([0, -40, 37], "degC", "degF") == pytest.approx([32.0, -40.0, 98.6])
    assert convert(32, "degF", "degC") == pytest.approx(0.0, abs=1e-12)
    assert convert(0, "K", "degC") == -273.15
    assert convert(0, "degF", "K") == pytest.approx(255.3722222, rel=1e-9)
    assert convert(300, "K", "K") == 300.0


def test_one_value_gives_a_number_and_a_list_a_list() -> None:
    assert isinstance(convert(1, "kW", "W"), float)
    assert convert([1, 2.5], "kW", "W") == [1000.0, 2500.0]
