"""The interface every model of the library follows.

A model declares its variables as data (:class:`Variable`: parameter, input,
output or state; unit, default, bounds, description) and implements its
equations as plain methods on floats. Parameters are validated by a marshmallow
schema built from those declarations before a model is made, so undeclared,
missing and out-of-range parameters are refused before any run. No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from marshmallow import RAISE, Schema, ValidationError, fields

from .errors import InvalidArgument, MissingArgument, did_you_mean

__all__ = ["Variable", "Param", "Input", "Output", "State", "Model", "StrictFloat", "G"]

G = 9.80665
"""Standard gravity, m/s2 (CGPM 1901)."""

Kind = Literal["parameter", "input", "output", "state"]


@dataclass(frozen=True)
class Variable:
    """One declared variable of a model, JSON-able through :meth:`describe`."""

    kind: Kind
    name: str
    unit: str
    description: str
    default: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit,
                               "description": self.description}
        if self.default is not None:
            out["default"] = self.default
        if self.minimum is not None:
            out["exclusive_minimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out

    def bounds_text(self) -> str:
        lo = "" if self.minimum is None else (
            f"> {self.minimum:g}" if self.exclusive_minimum else f">= {self.minimum:g}")
        hi = "" if self.maximum is None else f"<= {self.maximum:g}"
        return " and ".join(t for t in (lo, hi) if t)

    def check(self, value: float) -> str | None:
        """Why ``value`` is out of bounds, or None."""
        lo, hi = self.minimum, self.maximum
        low = lo is not None and (value <= lo if self.exclusive_minimum else value < lo)
        if low or (hi is not None and value > hi):
            unit = "" if self.unit == "1" else f" {self.unit}"
            return f"must be {self.bounds_text()}{unit}, got {value:g}"
        return None


def Param(name: str, unit: str, description: str, **kw: Any) -> Variable:  # noqa: N802
    return Variable("parameter", name, unit, description, **kw)


def Input(name: str, unit: str, description: str, **kw: Any) -> Variable:  # noqa: N802
    return Variable("input", name, unit, description, **kw)


def Output(name: str, unit: str, description: str) -> Variable:  # noqa: N802
    return Variable("output", name, unit, description)


def State(name: str, unit: str, description: str, **kw: Any) -> Variable:  # noqa: N802
    return Variable("state", name, unit, description, **kw)


class StrictFloat(fields.Float):
    """A finite JSON number: refuses strings, booleans, NaN and infinities."""

    default_error_messages = {
        "invalid": "must be a number",
        "special": "must be a finite number (not NaN or Infinity)",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if not math.isfinite(value):
            raise self.make_error("special")
        try:
            return float(value)
        except OverflowError:
            raise self.make_error("special") from None


class Model:
    """Base of every model: declarations as class data, equations as methods.

    Subclasses set ``name``, ``description``, ``reference`` and the variable
    tuples, and implement :meth:`output` (plus :meth:`derivatives` and
    :meth:`steady_state` when they have states).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    reference: ClassVar[str] = ""
    parameters: ClassVar[tuple[Variable, ...]] = ()
    inputs: ClassVar[tuple[Variable, ...]] = ()
    outputs: ClassVar[tuple[Variable, ...]] = ()
    states: ClassVar[tuple[Variable, ...]] = ()
    #: True when some output depends on the inputs at the same instant
    #: (an algebraic path); False when outputs depend on states only.
    feedthrough: ClassVar[bool] = True
    _schema: ClassVar[Schema | None] = None

    def __init__(self, params: Mapping[str, Any] | None = None, *, path: str = "params") -> None:
        self.p: dict[str, float] = self.load_params(params or {}, path=path)

    # ----- metadata -------------------------------------------------------
    @classmethod
    def input_names(cls) -> tuple[str, ...]:
        return tuple(v.name for v in cls.inputs)

    @classmethod
    def output_names(cls) -> tuple[str, ...]:
        return tuple(v.name for v in cls.outputs)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The model's metadata as JSON-able data (``describe`` and docs use it)."""
        return {
            "name": cls.name,
            "description": cls.description,
            "reference": cls.reference,
            "feedthrough": cls.feedthrough,
            "parameters": [v.describe() for v in cls.parameters],
            "inputs": [v.describe() for v in cls.inputs],
            "outputs": [v.describe() for v in cls.outputs],
            "states": [v.describe() for v in cls.states],
        }

    # ----- parameters -----------------------------------------------------
    @classmethod
    def params_schema(cls) -> Schema:
        """A marshmallow schema of the declared parameters (built once per class)."""
        if cls.__dict__.get("_schema") is None:
            declared: dict[str, fields.Field] = {}
            for v in cls.parameters:
                meta = {"unit": v.unit, "description": v.description}
                if v.default is None:
                    declared[v.name] = StrictFloat(required=True, metadata=meta)
                else:
                    declared[v.name] = StrictFloat(load_default=v.default, metadata=meta)
            schema_cls = Schema.from_dict(declared, name=f"{cls.name}Params")
            cls._schema = schema_cls(unknown=RAISE)
        assert cls._schema is not None
        return cls._schema

    @classmethod
    def load_params(cls, params: Mapping[str, Any], *, path: str = "params") -> dict[str, float]:
        """Validate ``params`` against the declarations; raise on the first problem."""
        if not isinstance(params, Mapping):
            raise InvalidArgument(f"{path} must be an object of parameter values", path=path)
        try:
            loaded: dict[str, float] = cls.params_schema().load(params)
        except ValidationError as exc:
            raise cls._translate(exc, path, params) from None
        for v in cls.parameters:
            problem = v.check(loaded[v.name])
            if problem:
                raise InvalidArgument(
                    f"{cls.name} parameter {v.name!r} ({v.description}) {problem}",
                    path=f"{path}.{v.name}",
                )
        return loaded

    @classmethod
    def _translate(
        cls, exc: ValidationError, path: str, given: Mapping[str, Any]
    ) -> InvalidArgument | MissingArgument:
        messages = exc.normalized_messages()
        assert isinstance(messages, dict)
        declared = {v.name: v for v in cls.parameters}
        # report in declaration order, so the first error is stable
        for name in [*declared, *sorted(map(str, messages))]:
            if name not in messages:
                continue
            text = " ".join(messages[name]) if isinstance(messages[name], list) else str(
                messages[name])
            where = f"{path}.{name}"
            if name not in declared:
                return InvalidArgument(
                    f"{cls.name} has no parameter {name!r}{did_you_mean(name, declared)}",
                    path=where,
                )
            v = declared[name]
            if "Missing data" in text:
                return MissingArgument(
                    f"{cls.name} needs parameter {name!r} ({v.description}, in {v.unit})",
                    path=where,
                )
            got = repr(given.get(name))[:40]
            return InvalidArgument(
                f"{cls.name} parameter {name!r} ({v.description}) {text} in {v.unit}, "
                f"got {got}",
                path=where,
            )
        return InvalidArgument(f"{path}: {messages}", path=path)

    # ----- equations ------------------------------------------------------
    def output(self, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        """Output port values from input values ``u`` and state values ``x``."""
        raise NotImplementedError

    def derivatives(self, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        """d(state)/dt for each state; models without states return {}."""
        return {}

    def steady_state(self, u: Mapping[str, float]) -> dict[str, float]:
        """State values at which every derivative is zero, for constant inputs ``u``."""
        if self.states:
            raise NotImplementedError(f"{self.name} has no steady state")
        return {}

    def initial_state(self, given: Mapping[str, float] | None = None) -> dict[str, float]:
        """Initial states: declared defaults overridden by ``given``."""
        x = {v.name: float(v.default or 0.0) for v in self.states}
        x.update(given or {})
        return x

