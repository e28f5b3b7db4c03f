"""Values given with their units (``{"value": 5, "unit": "bar"}``), in the units the
models declare.

A parameter, an initial state or an input may be given as a plain number (in the
declared unit, as before) or as ``{"value": …, "unit": "…"}`` (a number, or a list of
numbers for a vector parameter); a series may carry ``"unit"`` beside ``t`` and ``v``.
Each is converted once, while the scenario is checked (:mod:`modellib.units`): a
unit of another dimension is ``invalid_argument`` naming both units and the path. A
port or parameter declared ``any`` takes the number as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modellib import units
from modellib.base import Variable
from modellib.errors import InvalidArgument

__all__ = ["is_quantity", "in_declared_unit", "params_in_units", "number_or_quantity",
           "scale_to"]

_KEYS = frozenset({"value", "unit"})


def is_quantity(value: Any) -> bool:
    """Whether ``value`` is a number given with its unit."""
    return type(value) is dict and value.keys() == _KEYS


def scale_to(given: Any, declared: str, path: str) -> tuple[float, float]:
    """``(scale, offset)`` from unit ``given`` (a value's) to ``declared``."""
    if not isinstance(given, str):
        raise InvalidArgument(f"{path}.unit must be a unit such as \"bar\" or \"m3/h\"",
                              path=f"{path}.unit")
    try:
        return units.conversion(given, declared)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}; {path.rsplit('.', 1)[-1]} is in "
                              f"{declared!r} ({units.dimension(declared)})",
                              path=f"{path}.unit") from None


def in_declared_unit(value: dict[str, Any], declared: str, path: str) -> Any:
    """The number (or list of numbers) of ``{"value", "unit"}`` in unit ``declared``."""
    scale, offset = scale_to(value["unit"], declared, path)
    number = value["value"]
    if isinstance(number, list) and all(_finite(v) for v in number):
        return [float(v) * scale + offset for v in number]
    if not _finite(number):
        raise InvalidArgument(f"{path}.value must be a finite number"
                              f"{' or a list of them' if isinstance(number, list) else ''}",
                              path=f"{path}.value")
    return float(number) * scale + offset


def params_in_units(declared: tuple[Variable, ...], params: Mapping[str, Any],
                    path: str) -> Mapping[str, Any]:
    """``params`` with every value given with its unit converted to the declared one
    (a parameter the model does not declare is left for the model to refuse)."""
    for v in params.values():
        if type(v) is dict:
            break
    else:
        return params  # (plain values: as they are)
    units_of = {v.name: v.unit for v in declared}
    return {k: in_declared_unit(v, units_of[k], f"{path}.{k}")
            if is_quantity(v) and k in units_of else v for k, v in params.items()}


def number_or_quantity(value: Any, declared: str, path: str) -> float:
    """A number for a value of unit ``declared``: a plain finite number, or one given
    with its unit; ``invalid_argument`` for anything else."""
    if is_quantity(value):
        number = in_declared_unit(value, declared, path)
        if isinstance(number, float):
            return number
    elif _finite(value):
        return float(value)
    raise InvalidArgument(
        f"{path} must be a finite number in {declared}, or a number with its unit: "
        f"{{\"value\": 1.5, \"unit\": \"{declared}\"}}", path=path)


def _finite(value: Any) -> bool:
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond a float's range
        return False
