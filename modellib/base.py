"""The interface every model of the library follows.

A model declares its variables as data (:class:`Variable`: parameter, input,
output or state; unit, default, bounds, description) and implements its
equations as plain methods on floats. Parameters are validated by a marshmallow
schema built from those declarations before a model is made, so undeclared,
missing and out-of-range parameters are refused before any run. No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from . import units
from .errors import InvalidArgument, MissingArgument, ModelRuntimeError, did_you_mean
from .validation import declared_error, flatten

__all__ = ["Variable", "Param", "Input", "Output", "State", "Discrete", "Model", "StrictFloat",
           "StrictInt", "StrictBool", "Vector", "Matrix", "G"]

G = 9.80665
"""Standard gravity, m/s2 (CGPM 1901)."""

Kind = Literal["parameter", "input", "output", "state", "discrete"]
VarType = Literal["number", "integer", "boolean", "choice", "vector", "matrix"]


@dataclass(frozen=True)
class Variable:
    """One declared variable of a model, JSON-able through :meth:`describe`."""

    kind: Kind
    name: str
    unit: str
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    type: VarType = "number"
    choices: tuple[str, ...] = ()
    optional: bool = False
    """a parameter that may be left out (its value is then None)"""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit,
                               "dimension": units.dimension(self.unit),
                               "description": self.description}
        if self.type != "number":
            out["type"] = self.type
        if self.choices:
            out["choices"] = list(self.choices)
        if self.default is not None:
            out["default"] = self.default
        if self.optional:
            out["optional"] = True
        if self.minimum is not None:
            out["exclusive_minimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out

    def check(self, value: Any) -> str | None:
        """Why ``value`` is out of bounds, or None (bounds apply to numbers)."""
        if self.type not in ("number", "integer") or value is None:
            return None
        return out_of_bounds(value, self.minimum, self.maximum, self.exclusive_minimum,
                             self.unit)


def bounds_text(minimum: float | None, maximum: float | None, exclusive: bool) -> str:
    """``> 0 and <= 1`` and the like."""
    lo = "" if minimum is None else (f"> {minimum:g}" if exclusive else f">= {minimum:g}")
    hi = "" if maximum is None else f"<= {maximum:g}"
    return " and ".join(t for t in (lo, hi) if t)


def out_of_bounds(value: float, minimum: float | None, maximum: float | None,
                  exclusive: bool, unit: str) -> str | None:
    """Why ``value`` is outside the bounds (a phrase for a message), or None."""
    low = minimum is not None and (value <= minimum if exclusive else value < minimum)
    if low or (maximum is not None and value > maximum):
        shown = "" if unit in ("1", "any") else f" {unit}"
        return f"must be {bounds_text(minimum, maximum, exclusive)}{shown}, got {value:g}"
    return None


_NAMES: dict[int, tuple[tuple[Variable, ...], tuple[str, ...]]] = {}
"""The names of each tuple of declarations, by the tuple's identity (the engine and
the checks ask for them thousands of times in a scenario of a thousand elements)."""


def _names(variables: tuple[Variable, ...]) -> tuple[str, ...]:
    hit = _NAMES.get(id(variables))
    if hit is not None and hit[0] is variables:
        return hit[1]
    names = tuple(v.name for v in variables)
    if len(_NAMES) < 10_000:  # (models that make their ports per instance: bounded)
        _NAMES[id(variables)] = (variables, names)
    return names


def Param(name: str, unit: str, description: str, **kw: Any) -> Variable:  # noqa: N802
    return Variable("parameter", name, unit, description, **kw)


def Input(name: str, unit: str, description: str, **kw: Any) -> Variable:  # noqa: N802
    return Variable("input", name, unit, description, **kw)


def Output(name: str, unit: str, description: str) -> Variable:  # noqa: N802
    return Variable("output", name, unit, description)


def State(name: str, unit: str, description: str, **kw: Any) -> Variable:  # noqa: N802
    """A continuous state: integrated by the solver from :meth:`Model.derivatives`."""
    return Variable("state", name, unit, description, **kw)


def Discrete(name: str, unit: str, description: str, **kw: Any) -> Variable:  # noqa: N802
    """A discrete state: held between sample instants and events, changed by
    :meth:`Model.update` and :meth:`Model.on_event`."""
    return Variable("discrete", name, unit, description, **kw)


class StrictFloat(fields.Float):
    """A finite JSON number: refuses strings, booleans, NaN and infinities."""

    default_error_messages = {
        "invalid": "must be a number",
        "special": "must be a finite number (not NaN or Infinity)",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        try:
            number = float(value)  # a huge JSON integer overflows here
        except OverflowError:
            raise self.make_error("special") from None
        if not math.isfinite(number):
            raise self.make_error("special")
        return number


class StrictInt(fields.Integer):
    """A whole JSON number (2 or 2.0), not a string or boolean."""

    default_error_messages = {"invalid": "must be a whole number"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise self.make_error("invalid")
        return int(value)


class StrictBool(fields.Boolean):
    default_error_messages = {"invalid": "must be true or false"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Vector(fields.List):
    """A non-empty list of finite numbers."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(StrictFloat(), validate=validate.Length(min=1), **kw)


class Matrix(fields.List):
    """A non-empty list of equally long, non-empty rows of finite numbers."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(Vector(), validate=validate.Length(min=1), **kw)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> list:
        rows: list = super()._deserialize(value, attr, data, **kw) or []
        if len({len(r) for r in rows}) > 1:
            raise ValidationError("rows must all have the same length")
        return rows


def _field(v: Variable) -> fields.Field:
    meta = {"unit": v.unit, "description": v.description}
    kw: dict[str, Any] = {"metadata": meta}
    if v.optional:
        kw.update(load_default=None, allow_none=True)
    elif v.default is None:
        kw["required"] = True
    else:
        kw["load_default"] = v.default
    if v.type == "integer":
        return StrictInt(**kw)
    if v.type == "boolean":
        return StrictBool(**kw)
    if v.type == "choice":
        return fields.String(validate=validate.OneOf(
            v.choices, error=f"must be one of: {', '.join(v.choices)}"), **kw)
    if v.type == "vector":
        return Vector(**kw)
    if v.type == "matrix":
        return Matrix(**kw)
    return StrictFloat(**kw)


class Model:
    """Base of every model: declarations as class data, equations as methods.

    Subclasses set ``name``, ``description``, ``reference`` and the variable
    tuples, and implement :meth:`output`; models with continuous states also
    :meth:`derivatives` and, where one exists, :meth:`steady_state`; sampled
    models :meth:`sample_time` and :meth:`update`; switching models
    :meth:`event_functions` and :meth:`on_event`.

    Values travel as dicts of floats keyed by variable name: ``u`` the inputs,
    ``x`` every state (continuous and discrete), ``t`` the time in s. A model
    whose ports depend on its parameters (a state-space block) sets
    ``self.inputs`` / ``self.outputs`` / ``self.states`` in ``__init__``; the
    class attributes then describe them as templates.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    reference: ClassVar[str] = ""
    parameters: ClassVar[tuple[Variable, ...]] = ()
    inputs: tuple[Variable, ...] = ()
    outputs: tuple[Variable, ...] = ()
    states: tuple[Variable, ...] = ()
    """continuous states"""
    discrete: tuple[Variable, ...] = ()
    """discrete states (held between samples and events)"""
    #: True when some output depends on the inputs at the same instant
    #: (an algebraic path); False when outputs depend on states (and t) only.
    feedthrough: ClassVar[bool] = True
    #: True when output, derivatives and event_functions also work on numpy arrays
    #: (one entry per element, or per element and time) in u, x and self.p, and
    #: the model has no discrete states: the engine then evaluates all elements of
    #: the class in one call.
    vectorized: ClassVar[bool] = False
    #: where the model comes from (``describe``): ``builtin``, ``plugin:<distribution>``
    #: or ``fmu:<file name>``
    source: ClassVar[str] = "builtin"
    _schema: ClassVar[Schema | None] = None

    def __init__(self, params: Mapping[str, Any] | None = None, *, path: str = "params") -> None:
        self.p: dict[str, Any] = self.load_params(params or {}, path=path)
        self.check(path)

    def check(self, path: str) -> None:
        """Checks that involve several parameters; raise InvalidArgument with a path."""

    # ----- metadata -------------------------------------------------------
    def input_names(self) -> tuple[str, ...]:
        return _names(self.inputs)

    def output_names(self) -> tuple[str, ...]:
        return _names(self.outputs)

    def state_names(self) -> tuple[str, ...]:
        return _names(self.states)

    def discrete_names(self) -> tuple[str, ...]:
        return _names(self.discrete)

    def port_units(self, kind: str) -> dict[str, str]:
        """Port (or state) name -> declared unit, of ``kind`` ``"input"``, ``"output"`` or
        ``"state"`` (continuous and discrete); made once per element."""
        own = self.__dict__
        table: dict[str, dict[str, str]] | None = own.get("_port_units")
        if table is None:
            cls = type(self)
            shared = ("inputs" not in own and "outputs" not in own and "states" not in own
                      and "discrete" not in own)  # (the class's ports: one table for all)
            table = cls.__dict__.get("_class_port_units") if shared else None
            if table is None:
                table = {"input": {v.name: v.unit for v in self.inputs},
                         "output": {v.name: v.unit for v in self.outputs},
                         "state": {v.name: v.unit for v in (*self.states, *self.discrete)}}
                if shared:
                    cls._class_port_units = table  # type: ignore[attr-defined]
            own["_port_units"] = table
        return table[kind]

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
            "discrete_states": [v.describe() for v in cls.discrete],
            "source": cls.source,
        }

    # ----- parameters -----------------------------------------------------
    @classmethod
    def params_schema(cls) -> Schema:
        """A marshmallow schema of the declared parameters (built once per class)."""
        if cls.__dict__.get("_schema") is None:
            declared = {v.name: _field(v) for v in cls.parameters}
            schema_cls = Schema.from_dict(declared, name=f"{cls.name}Params")
            cls._schema = schema_cls(unknown=RAISE)
        assert cls._schema is not None
        return cls._schema

    @classmethod
    def load_params(cls, params: Mapping[str, Any], *, path: str = "params") -> dict[str, Any]:
        """Validate ``params`` against the declarations; raise on the first problem."""
        if not isinstance(params, Mapping):
            raise InvalidArgument(f"{path} must be an object of parameter values", path=path)
        loaded = cls._given_whole(params)
        if loaded is None:  # defaults to fill in, or something wrong: the schema says what
            try:
                loaded = cls.params_schema().load(params)
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
    def _given_whole(cls, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """``params`` loaded without the schema when every parameter given is a plain
        value of its type and every one left out has a default or may be left out (what
        the ingress queues for a worker, and most scenarios: a tenth of the cost); None
        when the schema must look (a list, a required one missing, an unknown name,
        anything wrong), so that its message names the problem."""
        if len(params) > len(cls.parameters):
            return None
        out: dict[str, Any] = {}
        given = 0
        for v in cls.parameters:
            value = params.get(v.name, _ABSENT)
            if value is _ABSENT:
                if v.optional:
                    out[v.name] = None
                    continue
                if v.default is None:
                    return None
                value = v.default
            else:
                given += 1
            if value is None and v.optional:
                out[v.name] = None
            elif v.type == "number" and type(value) in (float, int) and -_BIG < value < _BIG:
                out[v.name] = float(value)
            elif v.type == "integer" and type(value) is int:
                out[v.name] = value
            elif v.type == "boolean" and type(value) is bool:
                out[v.name] = value
            elif v.type == "choice" and type(value) is str and value in v.choices:
                out[v.name] = value
            else:
                return None
        return out if given == len(params) else None  # (else a name not declared)

    @classmethod
    def _translate(
        cls, exc: ValidationError, path: str, given: Mapping[str, Any]
    ) -> InvalidArgument | MissingArgument:
        declared = {v.name: v for v in cls.parameters}

        def unknown(name: str) -> str:
            return f"{cls.name} has no parameter {name!r}{did_you_mean(name, declared)}"

        def missing(name: str) -> str:
            v = declared[name]
            return f"{cls.name} needs parameter {name!r} ({v.description}, in {v.unit})"

        def invalid(name: str, messages: Any, value: Any) -> str:
            v = declared[name]
            return (f"{cls.name} parameter {name!r} ({v.description}) {flatten(messages)} "
                    f"in {v.unit}, got {repr(value)[:40]}")

        return declared_error(exc, given, path=path, declared_names=declared,
                              unknown_first=False, unknown=unknown, missing=missing,
                              invalid=invalid)

    # ----- equations ------------------------------------------------------
    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        """Output port values at time ``t`` from inputs ``u`` and states ``x``."""
        raise NotImplementedError

    def outputs_named(self, names: Collection[str], t: float, u: Mapping[str, float],
                      x: Mapping[str, float]) -> dict[str, float]:
        """The outputs ``names`` at least (what a run records of this element): by
        default all of :meth:`output`. A vectorized model may compute only these; the
        engine gives a model without feed-through no inputs (``u`` empty) here."""
        return self.output(t, u, x)

    def derivatives(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        """d(state)/dt for each continuous state; models without any return {}."""
        return {}

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        """States at which every derivative is zero, for constant inputs ``u``.

        ``x0`` holds the initial states; discrete states keep their initial
        values. Raise :class:`ModelRuntimeError` when there is no steady state.
        """
        if self.states:
            raise ModelRuntimeError(f"{self.name} has no steady state for static mode")
        return dict(x0)

    def initial_state(self, given: Mapping[str, float] | None = None) -> dict[str, float]:
        """Initial states (continuous and discrete): declared defaults overridden by ``given``."""
        x = {v.name: float(v.default or 0.0) for v in (*self.states, *self.discrete)}
        x.update(given or {})
        return x

    # ----- sampled and switching models -----------------------------------
    def sample_time(self) -> float | None:
        """Seconds between discrete updates, or None for a model that is not sampled."""
        return None

    def update(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        """New discrete state values at a sample instant ``t`` (sampled models only)."""
        return {}

    def event_functions(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        """Zero-crossing functions: an event named ``k`` happens where value ``k`` changes sign."""
        return {}

    def time_events(self, start: float, stop: float) -> list[float]:
        """The times in (``start``, ``stop``] at which this element's outputs jump or
        kink by themselves (a source's step, a table's breakpoints). The engine ends an
        integration there and starts the next one from it, so no solver step passes
        over one; the integration up to it sees the values before (left limits), the
        row at it and everything after the values from it on (right limits)."""
        return []

    def max_step(self) -> float | None:
        """The longest time over which this element's outputs may be taken as smooth
        (a sine: a sixteenth of its period), or None. The solver's steps, and the
        search for events along signals that no state drives, are no longer."""
        return None

    def consistent_state(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        """The states ``x`` corrected to agree with the inputs ``u`` at the start time
        ``t`` (a switch that must be on while its measurement is below its threshold).
        The engine applies it to the discrete states at t0 in every mode (static mode
        through :meth:`steady_state`). Default: ``x`` as given."""
        return dict(x)

    def on_event(
        self, name: str, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        """New discrete state values after event ``name`` (switching models only)."""
        return {}


_ABSENT = object()
_BIG = 1.7976931348623157e308
"""Finite floats lie strictly inside ±this (NaN compares false and falls to the schema)."""
