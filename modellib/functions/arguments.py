"""How a function declares its arguments: :class:`Argument` and its constructors.

An argument is data (type, unit, description, default, bounds): it describes itself
as JSON for ``describe`` and the docs, builds the marshmallow field that loads it
(:meth:`Argument.field`) and checks the bounds of a loaded value
(:meth:`Argument.check`). :class:`Returns` says what a function gives back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from marshmallow import fields, validate

from ..base import StrictFloat, StrictInt, out_of_bounds
from ..validation import StrictString
from .series_fields import NumbersField, SeriesField

__all__ = ["ArgType", "Argument", "Returns", "Series", "Numbers", "Number", "Integer", "Text",
           "Choice"]

ArgType = Literal["series", "number or series", "number", "integer", "string", "choice"]

_EXPECT: dict[str, str] = {
    "series": "a list of numbers",
    "number or series": "a number or a list of numbers",
    "number": "a number",
    "integer": "a whole number",
    "string": "a string",
    "choice": "one of the listed choices",
}


@dataclass(frozen=True)
class Argument:
    """One declared argument of a function, JSON-able through :meth:`describe`."""

    name: str
    type: ArgType
    unit: str
    """the argument's unit, or ``any`` when the function works in whatever unit it is given"""
    description: str
    default: Any = None
    optional: bool = False
    """an argument that may be left out (its value is then None)"""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    min_length: int = 1
    """series only: the fewest values accepted"""
    scalar: bool = False
    """series only: a single number is taken as a series of one value"""
    increasing: bool = False
    """series only: the values must increase strictly (a time axis)"""

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional

    def expect(self) -> str:
        if self.type == "choice":
            return f"one of: {', '.join(self.choices)}"
        if self.type == "series":
            text = "a list of numbers"
            if self.min_length > 1:
                text = f"a list of at least {self.min_length} numbers"
            if self.scalar:
                text = f"a number or {text}"
            return text
        return _EXPECT[self.type]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "unit": self.unit,
                               "description": self.description, "required": self.required}
        if self.default is not None:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
        if self.minimum is not None:
            out["exclusive_minimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.type == "series":
            out["min_length"] = self.min_length
            if self.scalar:
                out["accepts_number"] = True
            if self.increasing:
                out["increasing"] = True
        return out

    def check(self, value: Any) -> str | None:
        """Why ``value`` is out of bounds, or None (bounds apply to numbers)."""
        if value is None or (self.minimum is None and self.maximum is None):
            return None
        if self.type in ("number", "integer"):
            values = [value]
        elif self.type == "number or series":
            values = [float(v) for v in np.atleast_1d(value)]
        else:
            return None
        for v in values:
            problem = out_of_bounds(v, self.minimum, self.maximum, self.exclusive_minimum,
                                    self.unit)
            if problem:
                return problem
        return None

    def field(self) -> fields.Field:
        kw: dict[str, Any] = {
            "metadata": {"unit": self.unit, "description": self.description},
            "error_messages": {"null": f"must be {self.expect()}, not null"},
        }
        if self.optional:
            kw.update(load_default=None, allow_none=True)
        elif self.default is None:
            kw["required"] = True
        else:
            kw["load_default"] = self.default
        if self.type == "series":
            return SeriesField(min_length=self.min_length, scalar=self.scalar, **kw)
        if self.type == "number or series":
            return NumbersField(**kw)
        if self.type == "integer":
            return StrictInt(**kw)
        if self.type == "string":
            return StrictString(**kw)
        if self.type == "choice":
            return StrictString(validate=validate.OneOf(
                self.choices, error=f"must be one of: {', '.join(self.choices)}"), **kw)
        return StrictFloat(**kw)


def Series(name: str, unit: str, description: str, **kw: Any) -> Argument:  # noqa: N802
    """A list of finite numbers, loaded as a float numpy array."""
    return Argument(name, "series", unit, description, **kw)


def Numbers(name: str, unit: str, description: str, **kw: Any) -> Argument:  # noqa: N802
    """One number (loaded as a float) or a list of numbers (loaded as a numpy array)."""
    return Argument(name, "number or series", unit, description, **kw)


def Number(name: str, unit: str, description: str, **kw: Any) -> Argument:  # noqa: N802
    return Argument(name, "number", unit, description, **kw)


def Integer(name: str, unit: str, description: str, **kw: Any) -> Argument:  # noqa: N802
    return Argument(name, "integer", unit, description, **kw)


def Text(name: str, unit: str, description: str, **kw: Any) -> Argument:  # noqa: N802
    return Argument(name, "string", unit, description, **kw)


def Choice(name: str, description: str, choices: tuple[str, ...], **kw: Any) -> Argument:  # noqa: N802
    return Argument(name, "choice", "1", description, choices=choices, **kw)


@dataclass(frozen=True)
class Returns:
    """What a function gives back."""

    unit: str
    description: str

    def describe(self) -> dict[str, Any]:
        return {"unit": self.unit, "description": self.description}
