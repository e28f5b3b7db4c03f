"""The marshmallow fields of series arguments: lists of finite numbers as float arrays.

:class:`SeriesField` loads a list of finite numbers (or, with ``scalar``, a single
number) as a float numpy array, plain lists of numbers on a fast path and anything
else through marshmallow, which names what is wrong; :class:`NumbersField` loads one
number as a float and a list as an array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from marshmallow import ValidationError, fields

from ..base import StrictFloat

__all__ = ["SeriesField", "NumbersField"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SeriesField(fields.List):
    """A list of finite numbers (at least ``min_length``), loaded as a float array.

    With ``scalar`` a single number is taken as a series of one value. Numpy
    arrays are accepted from Python callers.
    """

    default_error_messages = {"invalid": "must be a list of numbers"}

    def __init__(self, *, min_length: int = 1, scalar: bool = False, **kw: Any) -> None:
        super().__init__(StrictFloat(), **kw)
        self.min_length = min_length
        self.scalar = scalar
        if scalar:
            self.error_messages["invalid"] = "must be a number or a list of numbers"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if self.scalar and _is_number(value):
            value = [_finite_number(value)]
        array = _fast_array(value)
        if array is None:  # something is wrong (or unusual): let marshmallow name it
            array = np.asarray(super()._deserialize(value, attr, data, **kw), dtype=float)
        if array.size < self.min_length:
            word = "value" if self.min_length == 1 else "values"
            raise ValidationError(f"needs at least {self.min_length} {word}, got {array.size}")
        return array


class NumbersField(SeriesField):
    """One number (loaded as a float) or a non-empty list of numbers (a float array)."""

    default_error_messages = {"invalid": "must be a number or a list of numbers"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if _is_number(value):
            return _finite_number(value)
        return super()._deserialize(value, attr, data, **kw)


def _finite_number(value: int | float) -> float:
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValidationError("must be a finite number (not NaN or Infinity)")
    return number


def _fast_array(value: Any) -> np.ndarray | None:
    """``value`` as a float array when it is plainly a list of finite numbers, else None."""
    if not isinstance(value, list | tuple):
        return None
    if not all(type(v) is float or type(v) is int for v in value):
        return None
    try:
        array = np.asarray(value, dtype=float)
    except OverflowError:  # an integer too large for a float
        return None
    if array.ndim != 1 or not np.isfinite(array).all():
        return None
    return array
