"""Unit conversion over a small table of the quantities a hydraulic/energy twin uses."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .. import units
from ..base import G
from ..errors import InvalidArgument
from .base import Function, Numbers, Returns, Text
from .registry import register

__all__ = ["Unit", "UNITS", "QUANTITIES", "convert", "factors", "known_units"]

WATER_DENSITY = 998.0
"""kg/m3, water at about 20 degC: the density of the ``m`` (water head) unit, as the pump
model's default."""


@dataclass(frozen=True)
class Unit:
    """A unit as an affine map to its quantity's base unit: base = (value + offset) * scale.

    Exact factors are kept as fractions so that, for one, 100 degC comes out as
    exactly 212 degF; factors with pi are floats.
    """

    quantity: str
    scale: Fraction | float
    offset: Fraction = Fraction(0)


F = Fraction
LBF = F("4.4482216152605")  # N, exact by definition (avoirdupois pound times standard gravity)
INCH = F("0.0254")  # m, exact
FOOT = 12 * INCH

UNITS: dict[str, Unit] = {
    # volume flow, base m3/s
    "m3/s": Unit("volume flow", F(1)),
    "m3/h": Unit("volume flow", F(1, 3600)),
    "l/s": Unit("volume flow", F(1, 1000)),
    "l/min": Unit("volume flow", F(1, 60_000)),
    "l/h": Unit("volume flow", F(1, 3_600_000)),
    # pressure, base Pa
    "Pa": Unit("pressure", F(1)),
    "kPa": Unit("pressure", F(1000)),
    "MPa": Unit("pressure", F(10**6)),
    "mbar": Unit("pressure", F(100)),
    "bar": Unit("pressure", F(10**5)),
    "psi": Unit("pressure", LBF / INCH**2),  # 6894.757293168... Pa
    "m": Unit("pressure", F(str(WATER_DENSITY)) * F(str(G))),  # metres of water head
    # power, base W
    "W": Unit("power", F(1)),
    "kW": Unit("power", F(1000)),
    "MW": Unit("power", F(10**6)),
    "hp": Unit("power", 550 * FOOT * LBF),  # mechanical horsepower, 745.69987... W
    # temperature (absolute), base K
    "K": Unit("temperature", F(1)),
    "degC": Unit("temperature", F(1), F("273.15")),
    "degF": Unit("temperature", F(5, 9), F("459.67")),
    # rotational speed, base revolutions per second
    "rad/s": Unit("rotational speed", 1.0 / (2.0 * math.pi)),
    "rpm": Unit("rotational speed", F(1, 60)),
    "Hz": Unit("rotational speed", F(1)),  # revolutions per second
    # energy, base J
    "J": Unit("energy", F(1)),
    "kJ": Unit("energy", F(1000)),
    "MJ": Unit("energy", F(10**6)),
    "Wh": Unit("energy", F(3600)),
    "kWh": Unit("energy", F(3_600_000)),
    "MWh": Unit("energy", F(3_600_000_000)),
}

QUANTITIES: dict[str, list[str]] = {}
for _name, _unit in UNITS.items():
    QUANTITIES.setdefault(_unit.quantity, []).append(_name)


def known_units() -> str:
    """The known units grouped by quantity, for messages."""
    return "; ".join(f"{q}: {', '.join(names)}" for q, names in QUANTITIES.items())


_SPELLING = {"m": "mwc"}
"""this function's ``m`` is metres of water head, a pressure (modellib.units: ``mwc``)"""


def factors(from_unit: str, to_unit: str) -> tuple[float, float]:
    """(k, c) such that a value in ``to_unit`` is value_in_from_unit * k + c, from the
    units library the whole controller uses (:mod:`modellib.units`, pint)."""
    a, b = UNITS[from_unit], UNITS[to_unit]
    if a.quantity != b.quantity:
        raise ValueError(f"{from_unit} ({a.quantity}) and {to_unit} ({b.quantity}) measure "
                         "different things")
    return units.conversion(_SPELLING.get(from_unit, from_unit),
                            _SPELLING.get(to_unit, to_unit))


def convert(value: Any, from_unit: str, to_unit: str) -> Any:
    """``value`` (a number or an array) from ``from_unit`` to ``to_unit`` (both known,
    of the same quantity)."""
    k, c = factors(from_unit, to_unit)
    if from_unit == to_unit:
        return value
    result = np.asarray(value, dtype=float) * k
    return result + c if c else result


def _hint(name: str) -> str:
    same = [u for u in UNITS if u.lower() == name.lower()]
    if same:
        return f" (did you mean {same[0]!r}?)"
    close = difflib.get_close_matches(name, list(UNITS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@register
class ConvertUnits(Function):
    name = "convert_units"
    description = (
        "Convert value(s) between units of one quantity: volume flow, pressure (m is "
        f"metres of water head at {WATER_DENSITY:g} kg/m3 and standard gravity), power "
        "(hp: mechanical horsepower), temperature (absolute temperatures, affine: "
        "0 degC = 273.15 K = 32 degF; not temperature differences), rotational speed "
        "(Hz: revolutions per second) and energy."
    )
    reference = (
        "NIST SP 811 (2008), appendix B: 1 psi = 6894.757 Pa, 1 hp = 745.6999 W, "
        "1 kWh = 3.6e6 J; ASHRAE Handbook Fundamentals, ch. 39"
    )
    arguments = (
        Numbers("value", "from_unit", "the values to convert: one number or a list"),
        Text("from_unit", "1", "the unit of value, one of the choices",
             choices=tuple(UNITS)),
        Text("to_unit", "1", "the unit wanted, of the same quantity as from_unit",
             choices=tuple(UNITS)),
    )
    returns = Returns("to_unit", "one number for one value, a list for a list")

    @classmethod
    def check(cls, args: dict[str, Any], path: str) -> None:
        for name in ("from_unit", "to_unit"):
            unit = args[name]
            if unit not in UNITS:
                raise InvalidArgument(
                    f"convert_units does not know the unit {unit!r}{_hint(unit)}; "
                    f"known units: {known_units()}",
                    path=f"{path}.{name}",
                )
        a, b = UNITS[args["from_unit"]], UNITS[args["to_unit"]]
        if a.quantity != b.quantity:
            raise InvalidArgument(
                f"convert_units cannot convert {args['from_unit']} to {args['to_unit']}: "
                f"{args['from_unit']} is a {a.quantity} unit and {args['to_unit']} a "
                f"{b.quantity} unit, so they measure different things; {a.quantity} "
                f"units: {', '.join(QUANTITIES[a.quantity])}",
                path=f"{path}.to_unit",
            )

    def run(self, value: float | np.ndarray, from_unit: str, to_unit: str) -> Any:
        return convert(value, from_unit, to_unit)
