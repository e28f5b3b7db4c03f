"""The interface every function of the library follows: :class:`Function`.

A function declares its arguments as data (:class:`Argument`, in
:mod:`.arguments`: type, unit, description, default, bounds) and implements its
computation in :meth:`Function.run` on numpy arrays and floats. Arguments are
validated by a marshmallow schema built from those declarations before the run, so
undeclared, missing, malformed and out-of-range arguments are refused with the dotted
path of the argument (:func:`modellib.validation.declared_error` words the schema's
errors); numerical failures during the run become :class:`ModelRuntimeError`. No I/O
here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from marshmallow import RAISE, Schema, ValidationError

from ..errors import (
    CodedError,
    InvalidArgument,
    MissingArgument,
    ModelRuntimeError,
    did_you_mean,
)
from ..validation import declared_error, flatten, short
from .arguments import Argument, Choice, Integer, Number, Numbers, Returns, Series, Text
from .series_fields import NumbersField, SeriesField

__all__ = [
    "Argument", "Returns", "Function", "Series", "Numbers", "Number", "Integer", "Text",
    "Choice", "SeriesField", "NumbersField", "to_json", "MAX_POINTS",
]

MAX_POINTS = 1_000_000
"""The most values a function may produce (a resampling grid, for one)."""


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
                f"got {short(args)}",
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
        declared = {a.name: a for a in cls.arguments}

        def unknown(name: str) -> str:
            hint = did_you_mean(name, declared)
            if "did you mean" not in hint:
                hint = (f" (it takes: {', '.join(declared)})" if declared
                        else " (it takes no arguments)")
            return f"{cls.name} has no argument {name!r}{hint}"

        def missing(name: str) -> str:
            a = declared[name]
            return f"{cls.name} needs argument {name!r}: {a.expect()} ({a.description}{_unit(a)})"

        def invalid(name: str, messages: Any, value: Any) -> str:
            if isinstance(messages, dict):  # errors of list items, by index
                index = min(messages, key=lambda k: int(k) if str(k).isdigit() else -1)
                item = _item(value, index)
                problem = f"item {index} {flatten(messages[index], strip='.')}, got {short(item)}"
            else:
                problem = flatten(messages, strip=".")
                if "got " not in problem and "not null" not in problem:
                    problem += f", got {short(value)}"
            a = declared[name]
            return f"{cls.name} argument {name!r} ({a.description}{_unit(a)}) {problem}"

        return declared_error(exc, given, path=path, declared_names=declared,
                              unknown_first=True, unknown=unknown, missing=missing,
                              invalid=invalid)

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


def _unit(a: Argument) -> str:
    """``, in m`` after an argument's description, or nothing for a pure number."""
    return "" if a.unit in ("1", "any") else f", in {a.unit}"


def _item(value: Any, index: Any) -> Any:
    try:
        return value[int(index)]
    except (TypeError, ValueError, IndexError, KeyError):
        return None
