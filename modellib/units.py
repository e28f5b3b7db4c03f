"""Engineering units: the one module that reads unit strings (pint behind it).

The protocol spells units in ASCII: a product of symbols joined by ``.``, each
with an optional integer power written after it, then optionally ``/`` and the
denominator spelled the same way — ``m3/s``, ``m3/h``, ``Pa.s``, ``s2/m5``,
``J/kg.K`` (J per kg and K), ``N.m/A``, ``kg.m2``. ``1`` is a pure number, and a
port declared ``any`` (or ``any/s``) carries whatever unit its signal has: no
check, no conversion. Symbols are pint's (``bar``, ``rpm``, ``degC``, ``kWh``,
``l``…), plus ``Ohm``, ``Hz`` as revolutions (cycles) per second (so 50 Hz is
3000 rpm and 2 pi rad/s is 1 Hz; pint's own Hz is 1/s) and ``mwc``, metres of water
column at 998 kg/m3.

- :func:`parse` reads a spelling (``UnknownUnit`` when it cannot).
- :func:`dimension` names its dimension (``[length]**3/[time]``).
- :func:`conversion` gives the affine map ``(scale, offset)`` from one unit to
  another of the same dimension, ``to = from * scale + offset``, computed once
  (what a connection or a value applies, never a pint call per evaluation);
  another dimension raises :class:`UnitMismatch`.

Temperatures are handled as pint handles offset units: ``K``, ``degC`` and
``degF`` are absolute temperatures (20 degC is 293.15 K); a temperature
*difference* has its own units (``delta_degC``, or ``K``, whose differences are
the same). Pressures carry no gauge/absolute flag: a port's description says
which it is, and a value converts between pressure units only.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import cache, lru_cache
from typing import Any

from .errors import InvalidArgument

__all__ = ["parse", "dimension", "conversion", "apply", "is_free", "UnknownUnit",
           "UnitMismatch", "FREE", "IDENTITY"]

FREE = ("any", "any/s")
"""The spellings of a port that takes any unit."""
IDENTITY = (1.0, 0.0)
"""The ``(scale, offset)`` of no conversion."""

_TOKEN = re.compile(r"^([A-Za-z_%]+?)(-?\d+)?\Z")
_ALIASES = {"Ohm": "ohm", "%": "percent"}


class UnknownUnit(InvalidArgument):
    """A unit spelling that cannot be read."""


class UnitMismatch(InvalidArgument):
    """Two units of different dimensions."""


@cache
def _registry() -> Any:
    import pint  # (imported once, when a unit is first read: ~0.3 s)

    registry: Any = pint.UnitRegistry(autoconvert_offset_to_baseunit=False,
                                 on_redefinition="ignore", non_int_type=Fraction)
    # Hz as cycles (revolutions) per second: 50 Hz is 3000 rpm and 1 Hz is 2 pi rad/s
    # (pint's own Hz is 1/s, which would make it 1 rad/s)
    registry.define("hertz = turn / second = Hz")
    # metres of water column at 998 kg/m3 and standard gravity: a pump's head as a pressure
    registry.define("metre_water_column = 998.0 * kilogram / meter ** 3 * 9.80665 * "
                    "meter / second ** 2 * meter = mwc")
    return registry


def _pint_spelling(text: str) -> str:
    """The protocol's spelling as pint's expression syntax."""
    if text == "1":
        return "dimensionless"
    numerator, slash, denominator = text.partition("/")
    if "/" in denominator or not numerator or (slash and not denominator):
        raise ValueError(text)

    def product(part: str) -> str:
        factors = []
        for token in part.split("."):
            if token == "1":
                continue
            found = _TOKEN.match(token)
            if found is None:
                raise ValueError(token)
            symbol, power = found.groups()
            symbol = _ALIASES.get(symbol, symbol)
            factors.append(f"{symbol}**{power}" if power else symbol)
        return " * ".join(factors) or "dimensionless"

    top = product(numerator)
    return f"({top}) / ({product(denominator)})" if slash else top


def is_free(text: str) -> bool:
    """Whether ``text`` is the unit of a port that takes any unit."""
    return text in FREE


@lru_cache(maxsize=4096)  # (bounded: the spellings come from commands too)
def parse(text: str) -> Any:
    """pint's unit for the protocol's spelling ``text`` (cached); :class:`UnknownUnit`
    if it is not a unit."""
    if not isinstance(text, str) or not text or len(text) > 64 or is_free(text):
        raise UnknownUnit(f"{text!r} is not a unit")
    try:
        return _registry().parse_units(_pint_spelling(text))
    except (ValueError, AttributeError, TypeError, SyntaxError, KeyError) as exc:
        raise UnknownUnit(f"{text!r} is not a unit this controller knows ({exc})") from None
    except Exception as exc:  # noqa: BLE001  (pint's own errors: UndefinedUnitError…)
        raise UnknownUnit(f"{text!r} is not a unit this controller knows: "
                          f"{exc}".rstrip()) from None


@lru_cache(maxsize=4096)
def dimension(text: str) -> str:
    """The dimension of ``text``, as ``[length]**3/[time]`` (``1`` for a pure number,
    ``any`` for a port of any unit)."""
    if is_free(text):
        return "any"
    dims = parse(text).dimensionality
    if not dims:
        return "1"
    top = [f"{k}**{float(v):g}" if v != 1 else k for k, v in sorted(dims.items()) if v > 0]
    bottom = [f"{k}**{-float(v):g}" if v != -1 else k for k, v in sorted(dims.items())
              if v < 0]
    text_top = ".".join(top) or "1"
    return f"{text_top}/{'.'.join(bottom)}" if bottom else text_top


@lru_cache(maxsize=4096)
def conversion(source: str, target: str) -> tuple[float, float]:
    """``(scale, offset)`` with ``value in target = value in source * scale + offset``;
    :class:`UnitMismatch` when the two have different dimensions. (1.0, 0.0) when either
    is a unit-free port's."""
    if source == target or is_free(source) or is_free(target):
        return 1.0, 0.0
    a, b = parse(source), parse(target)
    if a.dimensionality != b.dimensionality:
        raise UnitMismatch(
            f"{source!r} ({dimension(source)}) cannot be converted to {target!r} "
            f"({dimension(target)})")
    q = _registry().Quantity  # (in fractions: 100 degC is 212 degF exactly)
    zero = q(Fraction(0), a).to(b).magnitude
    one = q(Fraction(1), a).to(b).magnitude
    return float(one - zero), float(zero)


def apply(value: Any, scale_offset: tuple[float, float]) -> Any:
    """``value`` (a number or an array) through the map ``(scale, offset)`` of
    :func:`conversion`; ``value`` itself for :data:`IDENTITY`."""
    if scale_offset == IDENTITY:
        return value
    return value * scale_offset[0] + scale_offset[1]
