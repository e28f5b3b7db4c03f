"""The interface every function of the library follows.

A function declares its arguments as data (:class:`Argument`: type, unit,
description, default, bounds) and implements its computation in :meth:`Function.run`
on numpy arrays and floats. Arguments are validated by a marshmallow schema built
from those declarations before the run, so undeclared, missing, malformed and
out-of-range arguments are refused with the dotted path of the argument; numerical
failures during the run become :class:`ModelRuntimeError`. No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ..base import StrictFloat, StrictInt, out_of_bounds
from ..errors import (
    CodedError,
    InvalidArgument,
    MissingArgument,
    ModelRuntimeError,
    did_you_mean,
)
from ..validation import StrictString

__all__ = [
    "Argument", "Returns", "Function", "Series", "Numbers", "Number", "Integer", "Text",
    "Choice", "SeriesField", "NumbersField", "to_json", "MAX_POINTS",
]

ArgType = Literal["series", "number or series", "number", "integer", "string", "choice"]

MAX_POINTS = 1_000_000
"""The most values a function may produce (a resampling grid, for one)."""

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


class Function:
    """Base of every function: declarations as class data, the computation in :meth:`run`.

    Subclasses set ``name``, ``description``, ``reference`` (where there is one),
    ``arguments`` and ``returns``, and implement :meth:`run`, which receives every
    declared argument by name (series as float numpy arrays, optional arguments
    left out as None) and returns a float, a list of floats or a dict of those
    (numpy values are converted by :func:`to_json`). ``aligned`` names series that
    pair up one to one (same length); :meth:`check` takes the checks that involve
    several arguments.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    reference: ClassVar[str] = ""
    arguments: ClassVar[tuple[Argument, ...]] = ()
    returns: ClassVar[Returns]
    aligned: ClassVar[tuple[str, ...]] = ()
    _schema: ClassVar[Schema | None] = None

    # ----- metadata -------------------------------------------------------
    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The function's metadata as JSON-able data."""
        return {
            "name": cls.name,
            "description": cls.description,
            "reference": cls.reference,
            "arguments": [a.describe() for a in cls.arguments],
            "returns": cls.returns.describe(),
        }

    @classmethod
    def argument(cls, name: str) -> Argument:
        return {a.name: a for a in cls.arguments}[name]

    # ----- arguments ------------------------------------------------------
    @classmethod
    def args_schema(cls) -> Schema:
        """A marshmallow schema of the declared arguments (built once per class)."""
        if cls.__dict__.get("_schema") is None:
            declared = {a.name: a.field() for a in cls.arguments}
            schema_cls = Schema.from_dict(declared, name=f"{cls.name}Args")
            cls._schema = schema_cls(unknown=RAISE)
        assert cls._schema is not None
        return cls._schema

    @classmethod
    def load_args(cls, args: Any, *, path: str = "args") -> dict[str, Any]:
        """Validate ``args`` against the declarations; raise on the first problem."""
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise InvalidArgument(
                f"{path} must be an object of argument values for {cls.name} "
                f"(such as {{{', '.join(repr(a.name) + ': ...' for a in cls.arguments[:2])}}}), "
                f"got {_short(args)}",
                path=path,
            )
        try:
            loaded: dict[str, Any] = cls.args_schema().load(args)
        except ValidationError as exc:
            raise cls._translate(exc, path, args) from None
        for a in cls.arguments:
            problem = a.check(loaded[a.name])
            if problem:
                raise cls.invalid(a.name, problem, path)
        cls._check_series(loaded, path)
        cls.check(loaded, path)
        return loaded

    @classmethod
    def check(cls, args: dict[str, Any], path: str) -> None:
        """Checks that involve several arguments; raise :meth:`invalid` errors."""

    @classmethod
    def invalid(cls, name: str, problem: str, path: str) -> InvalidArgument:
        """An :class:`InvalidArgument` about argument ``name``, with its path."""
        a = cls.argument(name)
        return InvalidArgument(f"{cls.name} argument {name!r} ({a.description}) {problem}",
                               path=f"{path}.{name}")

    @classmethod
    def _check_series(cls, args: dict[str, Any], path: str) -> None:
        for a in cls.arguments:
            t = args[a.name]
            if a.increasing and t is not None:
                bad = np.flatnonzero(np.diff(t) <= 0)
                if bad.size:
                    i = int(bad[0]) + 1
                    raise cls.invalid(
                        a.name,
                        f"must increase strictly: {a.name}[{i}] = {t[i]:g} does not come "
                        f"after {a.name}[{i - 1}] = {t[i - 1]:g}",
                        path,
                    )
        present = [n for n in cls.aligned if args.get(n) is not None]
        if present:
            first = present[0]
            n = np.size(args[first])
            for other in present[1:]:
                m = np.size(args[other])
                if m != n:
                    raise cls.invalid(
                        other,
                        f"has {m} values but {first!r} has {n}: they pair up one to one, "
                        "so they must be equally long",
                        path,
                    )

    @classmethod
    def _translate(
        cls, exc: ValidationError, path: str, given: Mapping[str, Any]
    ) -> InvalidArgument | MissingArgument:
        messages = exc.normalized_messages()
        assert isinstance(messages, dict)
        declared = {a.name: a for a in cls.arguments}
        unknown = sorted(str(k) for k in messages if k not in declared)
        if unknown:
            name = unknown[0]
            hint = did_you_mean(name, declared)
            if "did you mean" not in hint:
                hint = (f" (it takes: {', '.join(declared)})" if declared
                        else " (it takes no arguments)")
            return InvalidArgument(f"{cls.name} has no argument {name!r}{hint}",
                                   path=f"{path}.{name}")
        # report in declaration order, so the first error is stable
        for name, a in declared.items():
            if name not in messages:
                continue
            where = f"{path}.{name}"
            text = messages[name]
            unit = "" if a.unit in ("1", "any") else f", in {a.unit}"
            if isinstance(text, list) and any("Missing data" in str(m) for m in text):
                return MissingArgument(
                    f"{cls.name} needs argument {name!r}: {a.expect()} ({a.description}{unit})",
                    path=where,
                )
            value = given.get(name)
            if isinstance(text, dict):  # errors of list items, by index
                index = min(text, key=lambda k: int(k) if str(k).isdigit() else -1)
                item = _item(value, index)
                problem = f"item {index} {_flatten(text[index])}, got {_short(item)}"
            else:
                problem = _flatten(text)
                if "got " not in problem and "not null" not in problem:
                    problem += f", got {_short(value)}"
            return InvalidArgument(
                f"{cls.name} argument {name!r} ({a.description}{unit}) {problem}",
                path=where,
            )
        return InvalidArgument(f"{path}: {messages}", path=path)

    # ----- running ----------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The computation on validated arguments; see the class docstring."""
        raise NotImplementedError

    @classmethod
    def call(cls, args: Any, *, path: str = "args") -> Any:
        """Validate ``args``, run, and return a JSON-able result.

        Raises :class:`MissingArgument` / :class:`InvalidArgument` (path
        ``{path}.{argument}``) before the run and :class:`ModelRuntimeError` when
        the computation fails numerically or gives a non-finite number.
        """
        loaded = cls.load_args(args, path=path)
        try:
            with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
                result = cls().run(**loaded)
        except CodedError as exc:
            if exc.path is None:
                exc.path = path
            raise
        except (FloatingPointError, ZeroDivisionError, OverflowError) as exc:
            raise ModelRuntimeError(
                f"{cls.name} failed numerically: {exc} (are some values too large or "
                "too close together?)",
                path=path,
            ) from exc
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise ModelRuntimeError(f"{cls.name} failed: {exc}", path=path) from exc
        out = to_json(result)
        if not _finite(out):
            raise ModelRuntimeError(
                f"{cls.name} gave a result that is not a finite number (overflow?)", path=path)
        return out


def to_json(value: Any) -> Any:
    """Numpy values to plain Python: arrays to lists, scalars to float / int / bool."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _flatten(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"item {k}: {_flatten(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return " ".join(_flatten(m) for m in messages).rstrip(".")
    return str(messages).rstrip(".")


def _item(value: Any, index: Any) -> Any:
    try:
        return value[int(index)]
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
