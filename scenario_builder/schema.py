"""The marshmallow schema of a scenario (PROTOCOL.md, "Scenario")."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from modellib.base import StrictFloat
from modellib.errors import InvalidArgument
from modellib.validation import StrictString, first_error

__all__ = ["ScenarioSchema", "parse_scenario", "NAME_RE", "MODES", "POLICIES"]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
MODES = ("static", "dynamic", "realtime")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class ElementSchema(_Strict):
    model = StrictString(required=True)
    instance = StrictString(validate=validate.Length(1, 128))
    params = fields.Dict(keys=StrictString(), values=fields.Raw(), load_default=dict)
    initial = fields.Dict(keys=StrictString(), values=fields.Raw(), load_default=dict)
    """numbers, or numbers with their units: checked with the states' declared units"""


class ConnectionSchema(_Strict):
    source = StrictString(required=True, data_key="from")
    target = StrictString(required=True, data_key="to")


class TimeSchema(_Strict):
    start = StrictFloat(load_default=0.0)
    stop = StrictFloat(load_default=None, allow_none=True)
    step = StrictFloat(load_default=None, allow_none=True)


SOLVER_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


class SolverSchema(_Strict):
    method = StrictString(load_default="RK45", validate=validate.OneOf(
        SOLVER_METHODS, error=f"must be one of: {', '.join(SOLVER_METHODS)}"))
    rtol = StrictFloat(load_default=1e-6, validate=validate.Range(
        min=1e-13, max=0.1, error="must be between 1e-13 and 0.1"))
    atol = StrictFloat(load_default=1e-9, validate=validate.Range(
        min=1e-15, max=1.0, error="must be between 1e-15 and 1"))
    max_step = StrictFloat(load_default=None, allow_none=True, validate=validate.Range(
        min=0.0, min_inclusive=False, error="must be > 0 s"))


POLICIES = ("catch_up", "skip", "fail")


class RealtimeSchema(_Strict):
    """``realtime``: how a real-time run keeps pace with the wall clock."""

    speed = StrictFloat(load_default=1.0, validate=validate.Range(
        min=1e-3, max=1e3, error="must be between 0.001 and 1000 (1 = wall-clock time)"))
    publish_every = fields.Integer(strict=True, load_default=10, validate=validate.Range(
        min=1, max=100_000, error="must be a whole number of ticks between 1 and 100000"))
    policy = StrictString(load_default="catch_up", validate=validate.OneOf(
        POLICIES, error=f"must be one of: {', '.join(POLICIES)}"))
    tolerance = StrictFloat(load_default=None, allow_none=True, validate=validate.Range(
        min=0.0, min_inclusive=False, max=3600.0,
        error="must be between 0 and 3600 s of wall-clock time"))


class PostSchema(_Strict):
    function = StrictString(required=True)
    args = fields.Dict(keys=StrictString(), values=fields.Raw(), load_default=dict)
    as_ = StrictString(data_key="as", validate=validate.Length(1, 64))


class ScenarioSchema(_Strict):
    mode = StrictString(load_default="static", validate=validate.OneOf(
        MODES, error="must be one of: static, dynamic, realtime"))
    elements = fields.Dict(
        keys=StrictString(validate=validate.Regexp(
            NAME_RE, error="must start with a letter and use letters, digits, '_' or '-'")),
        values=fields.Nested(ElementSchema),
        required=True,
    )
    connections = fields.List(fields.Nested(ConnectionSchema), load_default=list)
    inputs = fields.Dict(keys=StrictString(), values=fields.Raw(), load_default=dict)
    outputs = fields.List(StrictString(), load_default=None)
    time = fields.Nested(TimeSchema, load_default=None)
    solver = fields.Nested(SolverSchema, load_default=lambda: SolverSchema().load({}))
    post = fields.List(fields.Nested(PostSchema), load_default=list)
    realtime = fields.Nested(RealtimeSchema, load_default=None)
    units = fields.Dict(keys=StrictString(), values=StrictString(), load_default=dict)
    """output port -> the unit to report it in"""
    alarms = fields.List(fields.Raw(), load_default=list)
    """alarm rules (scenario_builder/alarms.py checks each, with its path)"""

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if "elements" in data and not data["elements"]:
            raise ValidationError("needs at least one element", "elements")


_SCHEMA = ScenarioSchema()
_BIG_PARTS = ("elements", "connections", "outputs")
_REST = ScenarioSchema(exclude=_BIG_PARTS)
"""the scenario's small parts (mode, time, solver, …): marshmallow, even on the fast path"""
_ELEMENT_KEYS = frozenset(ElementSchema().fields)


def parse_scenario(data: Any, *, path: str = "scenario") -> dict[str, Any]:
    """Load a scenario object, or raise a coded error naming the first problem.

    A scenario whose elements, connections and outputs are plainly well-formed is
    loaded without marshmallow's walk over each of them (a fifth of the cost of a
    thousand elements: :func:`_plain_parts`); anything else goes through the
    schema, whose error names the first problem."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path} must be an object with 'elements'", path=path)
    parts = _plain_parts(data)
    try:
        if parts is not None and set(data) <= set(_SCHEMA.fields):
            rest: dict[str, Any] = _REST.load(
                {k: v for k, v in data.items() if k not in _BIG_PARTS})
            return {**rest, **parts}
        loaded: dict[str, Any] = _SCHEMA.load(data)
    except ValidationError as exc:
        raise first_error(exc, _SCHEMA, path, data=data) from None
    return loaded


def _plain_parts(data: dict[str, Any]) -> dict[str, Any] | None:
    """``elements``, ``connections`` and ``outputs`` loaded as the schema would load
    them, when each is plainly of its shape (types, names, keys); None otherwise."""
    elements = data.get("elements")
    if type(elements) is not dict or not elements:
        return None
    loaded: dict[str, Any] = {}
    for name, spec in elements.items():
        if type(name) is not str or not NAME_RE.match(name) or type(spec) is not dict \
                or not spec.keys() <= _ELEMENT_KEYS or type(spec.get("model")) is not str:
            return None
        params, initial = spec.get("params", {}), spec.get("initial", {})
        if type(params) is not dict or type(initial) is not dict \
                or not all(type(k) is str for k in params) or not all(
                    type(k) is str and type(v) in (int, float) and -_BIG < v < _BIG
                    for k, v in initial.items()):
            return None
        element = {"model": spec["model"], "params": dict(params),
                   "initial": {k: float(v) for k, v in initial.items()}}
        if "instance" in spec:
            instance = spec["instance"]
            if type(instance) is not str or not 1 <= len(instance) <= 128:
                return None
            element["instance"] = instance
        loaded[name] = element
    connections = data.get("connections", [])
    if type(connections) is not list:
        return None
    links = []
    for conn in connections:
        if type(conn) is not dict or conn.keys() != {"from", "to"} \
                or type(conn["from"]) is not str or type(conn["to"]) is not str:
            return None
        links.append({"source": conn["from"], "target": conn["to"]})
    outputs = data.get("outputs")
    if outputs is not None and (type(outputs) is not list
                                or not all(type(o) is str for o in outputs)):
        return None
    return {"elements": loaded, "connections": links,
            "outputs": None if outputs is None else list(outputs)}


_BIG = 1.7976931348623157e308
"""Finite floats lie strictly inside ±this (NaN compares false: the schema says why)."""
