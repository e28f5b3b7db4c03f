"""Sweeps: one checked scenario run for many cases, and the table of their outcomes.

A sweep (``PROTOCOL.md``, section Sweeps) sets, case by case, paths of a scenario:
``element.name`` (a parameter, or an input port without a connection) or
``element.initial.state``. Its cases come from exactly one of

- ``grid``: path -> list of values; the Cartesian product, the last path varying fastest;
- ``cases``: a list of objects path -> value;
- ``sample``: ``{"n", "seed", "vars": {path: {"uniform": [low, high]} |
  {"normal": [mean, sd]}}}``: numpy's ``default_rng(seed)`` (PCG64) draws ``n``
  values for each var in the order given, so the same seed gives the same cases
  (a sample without a seed gets one, and the result says which).

:func:`parse_sweep` checks all of it against a checked :class:`Scenario` before
anything runs: every path, every value (the same checks as a single run's, each
element's distinct values once), ``collect`` and ``objective``, and the number of
cases (``max_cases``). :func:`apply_case` makes one case's scenario from the checked
one without building it again (the elements a case does not touch, the connections,
the evaluation order and the unit conversions are shared); :func:`run_case` runs it
and collects its values. A plain library: no Celery or Redis here.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modellib.errors import CodedError, InvalidArgument, LimitExceeded, did_you_mean

from .graph import Element, Port, Scenario, _signal
from .run import run_checked
from .unitvalues import in_declared_unit, is_quantity, number_or_quantity

__all__ = ["Target", "Sweep", "parse_sweep", "apply_case", "run_case", "collected_value",
           "best_case", "chunks", "KINDS"]

KINDS = ("grid", "cases", "sample")
"""The ways a sweep gives its cases (exactly one)."""
_DISTRIBUTIONS = ("uniform", "normal")


@dataclass(frozen=True)
class Target:
    """What a swept path sets: ``kind`` is ``param``, ``input`` or ``initial``."""

    path: str
    kind: str
    element: str
    name: str
    unit: str


@dataclass(frozen=True)
class Sweep:
    """A checked sweep: its targets (the swept columns), its cases, what it collects."""

    targets: tuple[Target, ...]
    cases: list[list[Any]]
    """one list of values per case, in the order of :attr:`targets`"""
    collect: tuple[str, ...]
    objective: tuple[str, str] | None = None
    """(``minimize`` or ``maximize``, a collected name)"""
    seed: int | None = None
    """the seed of a ``sample`` (given, or chosen and reported)"""
    units: dict[str, str] = dataclasses.field(default_factory=dict)
    """column -> unit, of the swept paths and the collected outputs"""

    @property
    def columns(self) -> list[str]:
        """The table's columns: ``case``, the swept paths, the collected names."""
        return ["case", *(t.path for t in self.targets), *self.collect]

    def to_data(self) -> dict[str, Any]:
        """JSON-able: what a worker gets (:meth:`from_data` reads it back)."""
        return {"targets": [dataclasses.asdict(t) for t in self.targets], "cases": self.cases,
                "collect": list(self.collect),
                "objective": list(self.objective) if self.objective else None,
                "seed": self.seed, "units": self.units}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Sweep:
        objective = data.get("objective")
        return cls(tuple(Target(**t) for t in data["targets"]), list(data["cases"]),
                   tuple(data["collect"]),
                   (str(objective[0]), str(objective[1])) if objective else None,
                   data.get("seed"), dict(data.get("units") or {}))

    def part(self, first: int, end: int) -> Sweep:
        """The sweep of cases ``first`` to ``end - 1`` only (a chunk's)."""
        return dataclasses.replace(self, cases=self.cases[first:end])


# ----- targets -----------------------------------------------------------------------
def _target(sc: Scenario, text: Any, path: str) -> Target:
    """The target of swept path ``text`` in ``sc``; ``invalid_argument`` naming what the
    element has when it is not a parameter, an unconnected input or a state."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{path}: a swept path must be a string such as "
                              "'pump.speed' or 'tank.initial.level'", path=path)
    element, dot, name = text.partition(".")
    if not dot or not element or not name:
        raise InvalidArgument(
            f"{path}: {text!r} is not a swept path; write 'element.name' (a parameter or "
            "an input port) or 'element.initial.state'", path=path)
    el = sc.elements.get(element)
    if el is None:
        raise InvalidArgument(f"{path}: no element {element!r} in the scenario"
                              f"{did_you_mean(element, sc.elements)}", path=path)
    model, cls = el.model, el.cls
    if name.startswith("initial."):
        state = name[len("initial."):]
        units = model.port_units("state")
        if state not in units:
            states = (*model.state_names(), *model.discrete_names())
            raise InvalidArgument(
                f"{path}: {cls.name} has no state {state!r}"
                f"{did_you_mean(state, states) if states else ' (it has no states)'}",
                path=path)
        return Target(text, "initial", element, state, units[state])
    params = {v.name: v.unit for v in cls.parameters}
    if name in params:
        return Target(text, "param", element, name, params[name])
    inputs = model.port_units("input")
    if name in inputs:
        src = sc.feeds.get((element, name))
        if src is not None:
            raise InvalidArgument(
                f"{path}: the input port {text!r} is connected from '{src[0]}.{src[1]}', "
                "so a case cannot set it; sweep a parameter or an unconnected input",
                path=path)
        return Target(text, "input", element, name, inputs[name])
    choices = [*params, *(p for p in inputs if (element, p) not in sc.feeds)]
    raise InvalidArgument(
        f"{path}: {cls.name} has no parameter or input port {name!r}"
        f"{did_you_mean(name, choices)}; a case sets a parameter, an unconnected input "
        f"port or '{element}.initial.<state>'", path=path)


# ----- one case ----------------------------------------------------------------------
def _element_with(el: Element, targets: Sequence[Target], values: Sequence[Any],
                  paths: Sequence[str]) -> Element:
    """``el`` with the parameters and initial states of one case set (checked as a
    single run checks them: the model is made anew when a parameter changes)."""
    params: dict[str, Any] = {}
    initial = el.initial
    for target, value, path in zip(targets, values, paths, strict=True):
        if target.kind == "param":
            params[target.name] = in_declared_unit(value, target.unit, path) \
                if is_quantity(value) else value
        elif target.kind == "initial":
            if initial is el.initial:
                initial = dict(el.initial)
            initial[target.name] = number_or_quantity(value, target.unit, path)
    if not params:
        return Element(el.name, el.model, initial)
    cls = el.cls
    where = {t.name: p for t, p in zip(targets, paths, strict=True) if t.kind == "param"}
    try:
        model = cls({**el.model.p, **params}, path="params")
    except CodedError as exc:
        raise _at(exc, where, el.name) from None
    return Element(el.name, model, initial)


def _at(exc: CodedError, where: Mapping[str, str], element: str) -> CodedError:
    """A model's refusal of a case's parameter, at the case's path (``where``: parameter
    name -> path of the case's value)."""
    name = (exc.path or "").rpartition(".")[2]
    path = where.get(name) or next(iter(where.values()))
    message = exc.message.replace(f"params.{name}", path) if name in where else \
        f"{path}: {exc.message}"
    return type(exc)(message if path in message else f"{path}: {message}", path=path)


def apply_case(sc: Scenario, targets: Sequence[Target], values: Sequence[Any],
               paths: Sequence[str] | None = None) -> Scenario:
    """The scenario of one case: ``sc`` with ``values`` set at ``targets`` (checked; an
    error names ``paths``, one per value, default the targets' paths). Only the
    elements and inputs the case sets are new; everything else is shared with ``sc``."""
    paths = list(paths) if paths is not None else [t.path for t in targets]
    by_element: dict[str, list[int]] = {}
    inputs: dict[Port, Any] | None = None
    for i, target in enumerate(targets):
        if target.kind == "input":
            if inputs is None:
                inputs = dict(sc.inputs)
            inputs[(target.element, target.name)] = _signal(values[i], paths[i], target.unit)
        else:
            by_element.setdefault(target.element, []).append(i)
    elements = sc.elements
    if by_element:
        elements = dict(sc.elements)
        for name, idx in by_element.items():
            elements[name] = _element_with(sc.elements[name], [targets[i] for i in idx],
                                           [values[i] for i in idx], [paths[i] for i in idx])
    return dataclasses.replace(sc, elements=elements,
                               inputs=inputs if inputs is not None else sc.inputs)


def collected_value(result: Mapping[str, Any], name: str) -> Any:
    """The value ``name`` collects from one case's result: an output's value (its last,
    at ``time.stop``, in a dynamic run) or a ``post`` answer."""
    values = result.get("values") or {}
    if name in values:
        value = values[name]
        if isinstance(value, np.ndarray):
            value = value[-1] if len(value) else None
        elif isinstance(value, list):
            value = value[-1] if value else None
        return value.item() if isinstance(value, np.generic) else value
    post = (result.get("post") or {}).get(name)
    return post.item() if isinstance(post, np.generic) else post


def run_case(sc: Scenario, sweep: Sweep, values: Sequence[Any],
             should_stop: Callable[[], bool] | None = None) -> list[Any]:
    """Run one case of ``sweep`` on the checked scenario ``sc``: its collected values.
    Raises what a single run of that scenario raises."""
    result = run_checked(apply_case(sc, sweep.targets, values), should_stop)
    return [collected_value(result, name) for name in sweep.collect]


def best_case(sweep: Sweep, rows: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
    """The row the objective marks (the first of equals), as column -> value, with the
    objective; None without an objective or a finite value to compare."""
    if sweep.objective is None:
        return None
    goal, name = sweep.objective
    col = sweep.columns.index(name)
    usable = [r for r in rows if isinstance(r[col], int | float) and not isinstance(r[col], bool)
              and math.isfinite(r[col])]
    if not usable:
        return None
    pick = min if goal == "minimize" else max
    row = pick(usable, key=lambda r: r[col])
    return {**dict(zip(sweep.columns, row, strict=True)), "objective": f"{goal} {name}"}


# ----- the sweep, checked --------------------------------------------------------------
def _count(data: Mapping[str, Any], kind: str, path: str) -> int:
    """How many cases the sweep would have (before any is made)."""
    if kind == "grid":
        grid = data["grid"]
        if not isinstance(grid, dict) or not grid:
            raise InvalidArgument(f"{path}.grid must be an object of path -> list of values, "
                                  "e.g. {\"pump.speed\": [1200, 1400]}", path=f"{path}.grid")
        n = 1
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise InvalidArgument(f"{path}.grid.{key} must be a non-empty list of values",
                                      path=f"{path}.grid.{key}")
            n *= len(values)
        return n
    if kind == "cases":
        cases = data["cases"]
        if not isinstance(cases, list) or not cases:
            raise InvalidArgument(f"{path}.cases must be a non-empty list of objects "
                                  "path -> value", path=f"{path}.cases")
        return len(cases)
    sample = data["sample"]
    if not isinstance(sample, dict):
        raise InvalidArgument(f"{path}.sample must be an object {{\"n\", \"seed\", \"vars\"}}",
                              path=f"{path}.sample")
    extra = set(sample) - {"n", "seed", "vars"}
    if extra:
        raise InvalidArgument(f"{path}.sample: unknown field {sorted(extra)[0]!r}; use 'n', "
                              "'seed' and 'vars'", path=f"{path}.sample.{sorted(extra)[0]}")
    count = sample.get("n")
    if type(count) is not int or count < 1:
        raise InvalidArgument(f"{path}.sample.n must be a whole number of cases (>= 1)",
                              path=f"{path}.sample.n")
    return count


def _grid_cases(grid: Mapping[str, list[Any]]) -> list[list[Any]]:
    return [list(combo) for combo in itertools.product(*grid.values())]


def _listed_cases(cases: list[Any], keys: list[str], path: str) -> list[list[Any]]:
    rows = []
    for i, case in enumerate(cases):
        where = f"{path}.cases[{i}]"
        if not isinstance(case, dict):
            raise InvalidArgument(f"{where} must be an object path -> value", path=where)
        missing = [k for k in keys if k not in case]
        extra = [k for k in case if k not in keys]
        if missing or extra:
            raise InvalidArgument(
                f"{where}: every case sets the same paths as the first "
                f"({', '.join(keys)}); this one "
                + (f"lacks {missing[0]!r}" if missing else f"also sets {extra[0]!r}"),
                path=f"{where}.{(missing or extra)[0]}")
        rows.append([case[k] for k in keys])
    return rows


def _sampled_cases(sample: Mapping[str, Any], n: int, path: str
                   ) -> tuple[list[str], list[list[Any]], int]:
    vars_ = sample.get("vars")
    if not isinstance(vars_, dict) or not vars_:
        raise InvalidArgument(
            f"{path}.sample.vars must be an object path -> distribution, e.g. "
            "{\"pump.speed\": {\"uniform\": [1200, 1500]}}", path=f"{path}.sample.vars")
    seed = sample.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
    elif type(seed) is not int or seed < 0:
        raise InvalidArgument(f"{path}.sample.seed must be a whole number >= 0",
                              path=f"{path}.sample.seed")
    rng = np.random.default_rng(seed)
    columns = []
    for key, dist in vars_.items():
        where = f"{path}.sample.vars.{key}"
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in _DISTRIBUTIONS:
            raise InvalidArgument(
                f"{where} must be one distribution: {{\"uniform\": [low, high]}} or "
                "{\"normal\": [mean, standard deviation]}", path=where)
        name, args = next(iter(dist.items()))
        if not isinstance(args, list) or len(args) != 2 or not all(
                type(a) in (int, float) and math.isfinite(a) for a in args):
            raise InvalidArgument(f"{where}.{name} must be two finite numbers",
                                  path=f"{where}.{name}")
        a, b = float(args[0]), float(args[1])
        if name == "uniform":
            if not a < b:
                raise InvalidArgument(f"{where}.uniform: low ({a:g}) must be below high ({b:g})",
                                      path=f"{where}.uniform")
            columns.append(rng.uniform(a, b, n))
        else:
            if not b >= 0:
                raise InvalidArgument(f"{where}.normal: the standard deviation ({b:g}) must "
                                      "be >= 0", path=f"{where}.normal")
            columns.append(rng.normal(a, b, n))
    return list(vars_), np.column_stack(columns).tolist(), int(seed)


def _value_path(kind: str, keys: list[str], grid: Mapping[str, list[Any]] | None,
                case: int, col: int) -> str:
    """Where a case's value of column ``col`` was given, for an error."""
    if kind == "grid":
        assert grid is not None
        sizes = [len(v) for v in grid.values()]
        index = case
        for c in range(len(sizes) - 1, col, -1):
            index //= sizes[c]
        return f"sweep.grid.{keys[col]}[{index % sizes[col]}]"
    if kind == "cases":
        return f"sweep.cases[{case}].{keys[col]}"
    return f"sweep.sample.vars.{keys[col]}"


def _check_values(sc: Scenario, targets: tuple[Target, ...], cases: list[list[Any]],
                  kind: str, keys: list[str], grid: Mapping[str, list[Any]] | None) -> None:
    """Every case's values, checked as a single run checks them: per element, each
    distinct combination of the values it is given once (a grid's are few)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for col, t in enumerate(targets):
        groups.setdefault(("input", t.path) if t.kind == "input" else ("element", t.element),
                          []).append(col)
    for cols in groups.values():
        seen: set[str] = set()
        for case, values in enumerate(cases):
            picked = [values[c] for c in cols]
            key = repr(picked)
            if key in seen:
                continue
            seen.add(key)
            paths = [_value_path(kind, keys, grid, case, c) for c in cols]
            try:
                apply_case(sc, [targets[c] for c in cols], picked, paths)
            except CodedError as exc:
                if kind == "sample":
                    raise type(exc)(f"{exc.message} (drawn for case {case}; narrow the "
                                    "distribution to the values the model takes)",
                                    path=exc.path) from None
                raise


def _in_declared_units(targets: tuple[Target, ...], cases: list[list[Any]]) -> list[list[Any]]:
    """The cases with every value given with its unit (checked) in the declared unit, so
    that the table's columns are in the units it names."""
    if not any(is_quantity(v) for values in cases for v in values):
        return cases
    return [[in_declared_unit(v, t.unit, t.path) if is_quantity(v) else v
             for t, v in zip(targets, values, strict=True)] for values in cases]


def _collect(sc: Scenario, data: Mapping[str, Any]) -> tuple[str, ...]:
    outputs = [f"{e}.{p}" for e, p in sc.outputs]
    posts = [str(p.get("as_") or p["function"]) for p in sc.post]
    known = [*outputs, *posts]
    asked = data.get("collect")
    if asked is None:
        return tuple(known)
    if not isinstance(asked, list) or not asked:
        raise InvalidArgument("sweep.collect must be a non-empty list of outputs and post "
                              "names", path="sweep.collect")
    for i, name in enumerate(asked):
        if name not in known:
            raise InvalidArgument(
                f"sweep.collect[{i}]: {name!r} is not an output of the scenario or a post "
                f"name{did_you_mean(str(name), known)}; it collects from scenario.outputs "
                f"({', '.join(outputs)}) and post ({', '.join(posts) or 'none'})",
                path=f"sweep.collect[{i}]")
    if len(set(asked)) != len(asked):
        raise InvalidArgument("sweep.collect names a value twice", path="sweep.collect")
    return tuple(asked)


def _objective(data: Mapping[str, Any], collect: tuple[str, ...]) -> tuple[str, str] | None:
    objective = data.get("objective")
    if objective is None:
        return None
    if not isinstance(objective, dict) or len(objective) != 1 or \
            next(iter(objective)) not in ("minimize", "maximize"):
        raise InvalidArgument("sweep.objective must be {\"minimize\": name} or "
                              "{\"maximize\": name}", path="sweep.objective")
    goal, name = next(iter(objective.items()))
    if name not in collect:
        raise InvalidArgument(
            f"sweep.objective.{goal}: {name!r} is not collected{did_you_mean(str(name), collect)}"
            f"; the objective is one of sweep.collect ({', '.join(collect)})",
            path=f"sweep.objective.{goal}")
    return goal, name


def parse_sweep(data: Any, sc: Scenario, *, max_cases: int) -> Sweep:
    """Check ``data`` (a ``run``'s ``sweep``) against the checked scenario ``sc``; the
    sweep, or a coded error with its path. More than ``max_cases`` cases is
    ``limit_exceeded`` (counted before any case is made)."""
    if not isinstance(data, dict):
        raise InvalidArgument("sweep must be an object with one of 'grid', 'cases' or "
                              "'sample'", path="sweep")
    if sc.mode not in ("static", "dynamic"):
        raise InvalidArgument(
            f"a sweep runs static or dynamic scenarios, not {sc.mode!r} ones (a real-time "
            "run lives beside the plant, once)", path="scenario.mode")
    unknown = set(data) - {*KINDS, "collect", "objective"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidArgument(f"sweep: unknown field {name!r}{did_you_mean(name, KINDS)}; a "
                              "sweep has one of grid, cases or sample, and optionally "
                              "collect and objective", path=f"sweep.{name}")
    given = [k for k in KINDS if k in data]
    if len(given) != 1:
        raise InvalidArgument("sweep needs exactly one of 'grid', 'cases' or 'sample', not "
                              + (" and ".join(given) if given else "none"), path="sweep")
    kind = given[0]
    n = _count(data, kind, "sweep")
    if n > max_cases:
        raise LimitExceeded(
            f"the sweep has {n} cases, more than this controller runs in one sweep "
            f"(TWIN_MAX_CASES = {max_cases}); split it into sweeps of at most {max_cases}",
            path=f"sweep.{kind}", cases=n, limit=max_cases)
    seed = None
    grid = None
    if kind == "grid":
        grid = data["grid"]
        keys, cases = list(grid), _grid_cases(grid)
    elif kind == "cases":
        first = data["cases"][0]
        if not isinstance(first, dict) or not first:
            raise InvalidArgument("sweep.cases[0] must be an object path -> value (at least "
                                  "one)", path="sweep.cases[0]")
        keys = list(first)
        cases = _listed_cases(data["cases"], keys, "sweep")
    else:
        keys, cases, seed = _sampled_cases(data["sample"], n, "sweep")
    where = {"grid": "sweep.grid", "cases": "sweep.cases[0]", "sample": "sweep.sample.vars"}
    targets = tuple(_target(sc, key, f"{where[kind]}.{key}") for key in keys)
    _check_values(sc, targets, cases, kind, keys, grid)
    cases = _in_declared_units(targets, cases)
    collect = _collect(sc, data)
    clash = set(collect) & set(keys)
    if clash:
        raise InvalidArgument(f"sweep.collect: {sorted(clash)[0]!r} is also swept",
                              path="sweep.collect")
    shown = sc.units_shown()
    units = {**{t.path: t.unit for t in targets}, **{c: shown[c] for c in collect if c in shown}}
    return Sweep(targets, cases, collect, _objective(data, collect), seed, units)


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(first, end)`` case ranges of ``size`` cases (the last may be shorter)."""
    for first in range(0, total, size):
        yield first, min(total, first + size)
