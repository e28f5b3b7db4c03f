"""The units module: every unit the libraries declare is read; dimensions and
conversions against values defined exactly (SI brochure, 9th ed., 2019; NIST SP 811,
2008, appendix B)."""

from __future__ import annotations

import math

import pytest

from modellib import describe_models, units
from modellib.errors import InvalidArgument

KINDS = ("parameters", "inputs", "outputs", "states", "discrete_states")


def declared() -> set[str]:
    return {v["unit"] for meta in describe_models().values() for kind in KINDS
            for v in meta[kind]}


@pytest.mark.parametrize("unit", sorted(declared()))
def test_every_unit_a_model_declares_is_read(unit: str) -> None:
    if units.is_free(unit):
        assert units.dimension(unit) == "any"
        return
    units.parse(unit)
    assert units.dimension(unit)


def test_every_declared_unit_is_in_describe_with_its_dimension() -> None:
    for meta in describe_models().values():
        for kind in KINDS:
            for v in meta[kind]:
                assert v["dimension"] == units.dimension(v["unit"])


@pytest.mark.parametrize(("source", "target", "value", "expected"), [
    ("rad/s", "rpm", 2 * math.pi, 60.0),     # one revolution per second
    ("Hz", "rpm", 50.0, 3000.0),             # Hz as revolutions (cycles) per second
    ("Hz", "rad/s", 1.0, 2 * math.pi),
    ("mwc", "Pa", 1.0, 998.0 * 9.80665),     # water column: rho g h
    ("m3/h", "m3/s", 3600.0, 1.0),
    ("bar", "Pa", 1.0, 1.0e5),               # 1 bar = 10^5 Pa exactly
    ("kW", "W", 2.5, 2500.0),
    ("degC", "K", 20.0, 293.15),             # offset units: absolute temperatures
    ("degF", "degC", 212.0, 100.0),
    ("l/min", "m3/s", 60_000.0, 1.0),
    ("kWh", "J", 1.0, 3.6e6),
    ("psi", "Pa", 1.0, 6894.757293168361),   # lbf/in^2 (NIST SP 811, B.8)
    ("J/kg.K", "J/kg.K", 4186.0, 4186.0),
    ("N.m.s", "kg.m2/s", 1.0, 1.0),
])
def test_conversions_between_units_of_one_dimension(source: str, target: str, value: float,
                                                    expected: float) -> None:
    scale, offset = units.conversion(source, target)
    assert value * scale + offset == pytest.approx(expected, rel=1e-12)


def test_the_protocol_spelling_reads_products_powers_and_one_denominator() -> None:
    assert units.dimension("J/kg.K") == "[length]**2/[temperature].[time]**2"  # J/(kg K)
    assert units.dimension("s2/m5") == "[time]**2/[length]**5"
    assert units.dimension("1") == "1" and units.dimension("rad") == "1"


@pytest.mark.parametrize(("source", "target"), [("K", "m3/s"), ("rpm", "m"), ("bar", "kW")])
def test_units_of_different_dimensions_are_refused_naming_both(source: str,
                                                               target: str) -> None:
    with pytest.raises(units.UnitMismatch) as err:
        units.conversion(source, target)
    assert source in err.value.message and target in err.value.message
    assert isinstance(err.value, InvalidArgument)


@pytest.mark.parametrize("text", ["blorps", "m/s/s", "", "m^2", "m..s", "1/", "x" * 80,
                                  "__import__"])
def test_a_spelling_that_is_not_a_unit_is_refused(text: str) -> None:
    with pytest.raises(units.UnknownUnit):
        units.parse(text)


def test_ports_of_any_unit_take_any_unit_unconverted() -> None:
    assert units.conversion("any", "rpm") == (1.0, 0.0)
    assert units.conversion("K", "any/s") == (1.0, 0.0)
