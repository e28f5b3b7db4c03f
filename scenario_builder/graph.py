"""A parsed scenario → a checked graph of model instances.

Checks everything a scenario can get wrong before anything runs: models and
their parameters (through the model library), element and port names, ports fed
twice, input ports left without a value, input series, the time grid. Orders
the elements for evaluation and finds the algebraic loops (strongly connected
components of the feed-through graph).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modellib import Model, get_model, units
from modellib.errors import InvalidArgument, did_you_mean

from .alarms import AlarmRule, parse_alarms
from .errors import InvalidScenario
from .schema import RealtimeSchema, parse_scenario
from .unitvalues import is_quantity, number_or_quantity, params_in_units, scale_to

__all__ = ["Port", "Signal", "Element", "Scenario", "build_scenario"]

Port = tuple[str, str]
"""(element, port name)."""


@dataclass(frozen=True)
class Signal:
    """A value for an unconnected input port: a constant or a piecewise-linear series."""

    t: np.ndarray
    v: np.ndarray

    @property
    def constant(self) -> bool:
        return len(self.v) == 1

    def at(self, time: float) -> float:
        if self.constant:
            return float(self.v[0])
        return float(np.interp(time, self.t, self.v))

    def to_data(self) -> float | dict[str, list[float]]:
        """The value as a scenario gives it: a number, or a series ``{"t", "v"}``."""
        if self.constant:
            return float(self.v[0])
        return {"t": self.t.tolist(), "v": self.v.tolist()}


@dataclass
class Element:
    name: str
    model: Model
    initial: dict[str, float]

    @property
    def cls(self) -> type[Model]:
        return type(self.model)


@dataclass
class Scenario:
    """A checked scenario, ready for a solver."""

    mode: str
    elements: dict[str, Element]
    feeds: dict[Port, Port]
    """input port → the output port that feeds it"""
    inputs: dict[Port, Signal]
    """input port → its given or default value"""
    outputs: list[Port]
    time: dict[str, Any] | None
    post: list[dict[str, Any]]
    realtime: dict[str, Any] | None
    solver: dict[str, Any] = field(default_factory=dict)
    order: list[list[str]] = field(default_factory=list)
    """elements grouped into strongly connected components, in evaluation order"""
    conversions: dict[Port, tuple[float, float]] = field(default_factory=dict)
    """input port → ``(scale, offset)`` from the unit of the output that feeds it to its
    own (only where they differ: ``rad/s`` into ``rpm``)"""
    output_units: dict[Port, str] = field(default_factory=dict)
    """output → the unit it is reported in, where the scenario's ``units`` asks"""
    alarms: list[AlarmRule] = field(default_factory=list)
    """alarm rules on the outputs and post names (:mod:`scenario_builder.alarms`)"""

    def unit_of(self, port: Port) -> str:
        """The unit ``port`` is reported in: asked for, or its declared one."""
        if port in self.output_units:
            return self.output_units[port]
        return _declared_unit(self.elements[port[0]].model, port[1])

    def reported(self, port: Port) -> tuple[float, float]:
        """``(scale, offset)`` from ``port``'s declared unit to the unit it is reported in."""
        if port not in self.output_units:
            return units.IDENTITY
        return units.conversion(_declared_unit(self.elements[port[0]].model, port[1]),
                                self.output_units[port])

    def units_shown(self) -> dict[str, str]:
        """``"element.port"`` → the unit of every output (what a result says)."""
        return {f"{e}.{p}": self.unit_of((e, p)) for e, p in self.outputs}

    def to_data(self) -> dict[str, Any]:
        """This checked scenario as JSON-able data that builds the same scenario again:
        every element with its model, all its parameters (instances resolved, defaults
        filled) and initial states; every input port that has no connection with its
        value; the outputs, time grid, solver and ``realtime`` options spelled out. What
        the ingress queues for a worker (whose own check of it is then cheap)."""
        def port(p: Port) -> str:
            return f"{p[0]}.{p[1]}"

        return {
            "mode": self.mode,
            # (a parameter left out is None: left out again)
            "elements": {name: {"model": el.cls.name,
                                "params": {k: v for k, v in el.model.p.items() if v is not None},
                                "initial": dict(el.initial)}
                         for name, el in self.elements.items()},
            "connections": [{"from": port(src), "to": port(dst)}
                            for dst, src in self.feeds.items()],
            "inputs": {port(p): sig.to_data() for p, sig in self.inputs.items()},
            "outputs": [port(p) for p in self.outputs],
            "time": self.time,
            "solver": self.solver,
            "post": [{("as" if k == "as_" else k): v for k, v in call.items()}
                     for call in self.post],
            **({"realtime": self.realtime} if self.realtime is not None else {}),
            **({"units": {port(p): u for p, u in self.output_units.items()}}
               if self.output_units else {}),
            **({"alarms": [rule.to_data() for rule in self.alarms]} if self.alarms else {}),
        }

    @property
    def loops(self) -> list[list[str]]:
        return [c for c in self.order if len(c) > 1 or self._self_loop(c[0])]

    def _self_loop(self, name: str) -> bool:
        return any(dst[0] == name and src[0] == name for dst, src in self.feeds.items())


def _port_name(port: Port) -> str:
    return f"{port[0]}.{port[1]}"


def _split_port(text: str, elements: Mapping[str, Element], path: str) -> Port:
    element, dot, port = text.partition(".")
    if not dot or not element or not port:
        raise InvalidScenario(
            f"{path}: {text!r} is not a port; write 'element.port', e.g. 'pump.head'", path=path
        )
    if element not in elements:
        raise InvalidScenario(
            f"{path}: no element {element!r} in {text!r}{did_you_mean(element, elements)}",
            path=path,
        )
    return element, port


def _check_port(
    port: Port, elements: Mapping[str, Element], want: str, path: str
) -> None:
    """Check that ``port`` is an ``want`` ("input"/"output") port of its element."""
    model = elements[port[0]].model
    if port[1] in model.port_units(want):
        return
    cls = elements[port[0]].cls
    ins, outs = model.input_names(), model.output_names()
    names = ins if want == "input" else outs
    label = _port_name(port)
    if port[1] in (outs if want == "input" else ins):
        other = "output" if want == "input" else "input"
        raise InvalidScenario(
            f"{path}: {label!r} is an {other} port of {cls.name}; here it must be an {want} "
            f"port ({', '.join(names) or 'none'})",
            path=path,
        )
    raise InvalidScenario(
        f"{path}: {cls.name} has no {want} port {port[1]!r}{did_you_mean(port[1], names)}",
        path=path,
    )


_NUMBER_TYPES = frozenset({int, float})


def _unit_of(model: Model, port: str, kind: str = "input") -> str:
    """The declared unit of input (or output) port ``port`` of ``model``."""
    return model.port_units(kind).get(port, "any")


def _declared_unit(model: Model, port: str) -> str:
    """The declared unit of port ``port`` (an output, or an input) of ``model``."""
    found = model.port_units("output").get(port)
    return found if found is not None else _unit_of(model, port)


def _output_units(asked: Mapping[str, str], elements: Mapping[str, Element],
                  outputs: list[Port], path: str) -> dict[Port, str]:
    """The scenario's ``units``: each an output of the run, in a unit of its dimension."""
    found: dict[Port, str] = {}
    for key, unit in asked.items():
        where = f"{path}.{key}"
        port = _split_port(key, elements, where)
        if port not in outputs:
            raise InvalidScenario(
                f"{where}: {key!r} is not among the run's outputs "
                f"({', '.join(map(_port_name, outputs[:8]))}{', …' if len(outputs) > 8 else ''})",
                path=where)
        declared = _declared_unit(elements[port[0]].model, port[1])
        try:
            units.parse(unit)  # (a port of any unit: the unit only labels it)
            units.conversion(declared, unit)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc.message}; {key!r} is in {declared!r} "
                                  f"({units.dimension(declared)})", path=where) from None
        found[port] = unit
    return found


def _connection_units(elements: Mapping[str, Element], src: Port, dst: Port,
                      where: str) -> tuple[float, float]:
    """``(scale, offset)`` from the unit of output ``src`` to that of input ``dst``;
    ``invalid_scenario`` naming both ports and units when their dimensions differ."""
    a = _unit_of(elements[src[0]].model, src[1], "output")
    b = _unit_of(elements[dst[0]].model, dst[1])
    try:
        return units.conversion(a, b)
    except InvalidArgument:
        raise InvalidScenario(
            f"{where}: {_port_name(src)!r} is in {a!r} ({units.dimension(a)}) and "
            f"{_port_name(dst)!r} in {b!r} ({units.dimension(b)}): a connection joins "
            "ports of one dimension (it converts between their units)", path=where) from None


def _signal(value: Any, path: str, unit: str = "any") -> Signal:
    """The value of an input port of unit ``unit``: a number, a number with its unit,
    or a series (with its ``unit``, optionally), in ``unit``."""
    if is_quantity(value):
        return Signal(np.zeros(1), np.array([number_or_quantity(value, unit, path)]))
    if isinstance(value, bool) or not isinstance(value, int | float | dict):
        raise InvalidArgument(
            f"{path} must be a number or a series {{\"t\": [...], \"v\": [...]}}", path=path
        )
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{path} must be a finite number", path=path)
        return Signal(np.zeros(1), np.array([float(value)]))
    extra = set(value) - {"t", "v", "unit"}
    if extra:
        raise InvalidArgument(
            f"{path}: unknown field {sorted(extra)[0]!r} in a series; use 't', 'v' and "
            "optionally 'unit'",
            path=f"{path}.{sorted(extra)[0]}",
        )
    signal = _series(value, path)
    if "unit" in value:
        scale, offset = scale_to(value["unit"], unit, path)
        signal = Signal(signal.t, signal.v * scale + offset)
    return signal


def _series(value: dict[str, Any], path: str) -> Signal:
    """The ``t`` and ``v`` of a series, checked."""
    arrays = []
    for key in ("t", "v"):
        seq = value.get(key)
        if seq is None:
            raise InvalidArgument(f"{path}.{key} is required in a series", path=f"{path}.{key}")
        # the types at C speed (a series may have a million points); bool is not a number
        if not isinstance(seq, list) or not seq or not set(map(type, seq)) <= _NUMBER_TYPES:
            raise InvalidArgument(
                f"{path}.{key} must be a non-empty list of finite numbers", path=f"{path}.{key}"
            )
        array = np.asarray(seq, dtype=float)
        if not np.isfinite(array).all():
            raise InvalidArgument(
                f"{path}.{key} must be a non-empty list of finite numbers", path=f"{path}.{key}"
            )
        arrays.append(array)
    t, v = arrays
    if len(t) != len(v):
        raise InvalidArgument(
            f"{path}: 't' has {len(t)} values but 'v' has {len(v)}; they must match", path=path
        )
    if len(t) > 1 and not np.all(np.diff(t) > 0):
        bad = int(np.argmin(np.diff(t) > 0)) + 1
        raise InvalidScenario(
            f"{path}.t must increase strictly; t[{bad}] = {t[bad]:g} follows {t[bad - 1]:g}",
            path=f"{path}.t[{bad}]",
        )
    return Signal(t, v)


def _components(names: list[str], feeds: Mapping[Port, Port]) -> list[list[str]]:
    """Tarjan's strongly connected components, sources first."""
    succ: dict[str, set[str]] = {n: set() for n in names}
    for dst, src in feeds.items():
        succ[src[0]].add(dst[0])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:  # iterative, so deep chains cannot overflow
        nonlocal counter
        work = [(root, iter(sorted(succ[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(succ[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(sorted(comp))

    for n in names:
        if n not in index:
            visit(n)
    out.reverse()  # Tarjan emits sinks first
    return out


def build_scenario(data: Any, *, path: str = "scenario") -> Scenario:
    """Parse and check a scenario; raise a coded error with a path on the first problem."""
    sc = parse_scenario(data, path=path)
    elements: dict[str, Element] = {}
    for name, spec in sc["elements"].items():
        where = f"{path}.elements.{name}"
        cls = get_model(spec["model"], path=f"{where}.model")
        model = cls(params_in_units(cls.parameters, spec["params"], f"{where}.params"),
                    path=f"{where}.params")
        initial = {}
        for key, value in spec["initial"].items():
            unit = model.port_units("state").get(key)
            if unit is None:
                states = (*model.state_names(), *model.discrete_names())
                raise InvalidArgument(
                    f"{where}.initial: {cls.name} has no state {key!r}"
                    f"{did_you_mean(key, states) if states else ' (it has no states)'}",
                    path=f"{where}.initial.{key}",
                )
            initial[key] = value if type(value) is float and math.isfinite(value) \
                else number_or_quantity(value, unit, f"{where}.initial.{key}")
        elements[name] = Element(name, model, initial)

    feeds: dict[Port, Port] = {}
    conversions: dict[Port, tuple[float, float]] = {}
    for i, conn in enumerate(sc["connections"]):
        where = f"{path}.connections[{i}]"
        src = _split_port(conn["source"], elements, f"{where}.from")
        _check_port(src, elements, "output", f"{where}.from")
        dst = _split_port(conn["target"], elements, f"{where}.to")
        _check_port(dst, elements, "input", f"{where}.to")
        if dst in feeds:
            raise InvalidScenario(
                f"{where}.to: input port {_port_name(dst)!r} is fed twice (already from "
                f"{_port_name(feeds[dst])!r}); an input port takes one connection",
                path=f"{where}.to",
            )
        feeds[dst] = src
        scale = _connection_units(elements, src, dst, where)
        if scale != units.IDENTITY:
            conversions[dst] = scale

    inputs: dict[Port, Signal] = {}
    for key, value in sc["inputs"].items():
        where = f"{path}.inputs.{key}"
        port = _split_port(key, elements, where)
        _check_port(port, elements, "input", where)
        if port in feeds:
            raise InvalidScenario(
                f"{where}: input port {key!r} is connected from {_port_name(feeds[port])!r} "
                "and cannot also take a value; drop one of the two",
                path=where,
            )
        inputs[port] = _signal(value, where, _unit_of(elements[port[0]].model, port[1]))

    for name, el in elements.items():
        for var in el.model.inputs:
            port = (name, var.name)
            if port in feeds or port in inputs:
                continue
            if var.default is not None:
                inputs[port] = Signal(np.zeros(1), np.array([float(var.default)]))
                continue
            raise InvalidScenario(
                f"input port '{name}.{var.name}' ({var.description}, {var.unit}) has no value: "
                f"connect it or give it in {path}.inputs",
                path=f"{path}.inputs",
            )

    if sc["outputs"] is None:
        outputs = [(n, p) for n, el in elements.items() for p in el.model.output_names()]
    else:
        outputs = []
        for i, text in enumerate(sc["outputs"]):
            where = f"{path}.outputs[{i}]"
            port = _split_port(text, elements, where)
            model = elements[port[0]].model
            names = (*model.output_names(), *model.input_names())
            if port[1] not in names:
                raise InvalidScenario(
                    f"{where}: {model.name} has no port {port[1]!r}{did_you_mean(port[1], names)}",
                    path=where,
                )
            outputs.append(port)

    output_units = _output_units(sc["units"], elements, outputs, f"{path}.units")
    time = sc["time"]
    if time is not None:
        _check_time(time, f"{path}.time")
    if sc["mode"] == "dynamic":
        for key in ("stop", "step"):
            if time is None or time.get(key) is None:
                raise InvalidScenario(
                    f"{path}.time.{key} is required in dynamic mode: give "
                    "\"time\": {\"start\": 0, \"stop\": 600, \"step\": 1}",
                    path=f"{path}.time.{key}",
                )

    if sc["mode"] == "realtime":
        _check_realtime(sc, f"{path}")

    alarms = parse_alarms(sc["alarms"], [
        *(_port_name(p) for p in outputs),
        *(str(call.get("as_") or call["function"]) for call in sc["post"])],
        path=f"{path}.alarms") if sc["alarms"] else []

    scenario = Scenario(
        mode=sc["mode"], elements=elements, feeds=feeds, inputs=inputs, outputs=outputs,
        time=time, post=sc["post"], realtime=sc["realtime"], solver=sc["solver"],
        conversions=conversions, output_units=output_units, alarms=alarms,
    )
    scenario.order = _components(list(elements), feeds)
    return scenario


def _check_time(time: Mapping[str, Any], path: str) -> None:
    step, start, stop = time.get("step"), time["start"], time.get("stop")
    if step is not None and step <= 0:
        raise InvalidScenario(f"{path}.step must be > 0 s, got {step:g}", path=f"{path}.step")
    if stop is not None and stop <= start:
        raise InvalidScenario(
            f"{path}.stop must be after time.start ({start:g} s), got {stop:g}",
            path=f"{path}.stop",
        )


MIN_TICK_S = 0.001
"""The shortest wall-clock tick of a real-time run (``time.step / realtime.speed``)."""


def _check_realtime(sc: dict[str, Any], path: str) -> None:
    """A real-time run needs ``time.step``; ``time.stop`` may be left out (open-ended)."""
    time = sc["time"]
    if time is None or time.get("step") is None:
        raise InvalidScenario(
            f"{path}.time.step is required in realtime mode (the simulated time of one "
            "tick): give \"time\": {\"start\": 0, \"step\": 0.1} and, for a run that "
            "ends by itself, \"stop\"", path=f"{path}.time.step")
    if sc["post"]:
        raise InvalidScenario(
            f"{path}.post is not available in realtime mode (its rows are published as "
            "they are computed, never gathered): remove it, or run the scenario in "
            "dynamic mode", path=f"{path}.post")
    if sc["realtime"] is None:
        sc["realtime"] = RealtimeSchema().load({})
    tick = float(time["step"]) / float(sc["realtime"]["speed"])
    if tick < MIN_TICK_S:
        raise InvalidScenario(
            f"a tick of {path}.time.step / realtime.speed = {tick * 1000:g} ms of wall-clock "
            f"time is too short: at least {MIN_TICK_S * 1000:g} ms; make time.step larger "
            "or realtime.speed smaller", path=f"{path}.time.step")
