"""``twinctl check-model``: what a model author runs before the controller loads a model
(a tool of the command line: nothing a message says reaches it).

:func:`check_model` takes a model class and says, check by check, whether it is
complete and sound: its declarations (a name, a description, every variable with a
unit the library knows and a description), its parameter schema and defaults, its
static equations on the defaults (finite), a short dynamic run of it alone (finite),
and, where it says it is vectorized, that an evaluation of two elements at once equals
two evaluations of one. :func:`load_target` finds the class from ``module:Class`` or a
``.py`` file. No I/O beyond importing the target.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modellib import Model
from modellib.errors import CodedError
from modellib.plugins import Loaded, check_metadata, load_file
from scenario_builder import run_scenario

__all__ = ["Check", "check_model", "load_target", "passed"]


@dataclass(frozen=True)
class Check:
    """One check: ``ok``, ``FAIL`` or ``skip``, and what it found."""

    name: str
    status: str
    detail: str = ""


def load_target(target: str) -> tuple[list[type[Model]], list[str]]:
    """The model classes ``target`` names (``package.module:Class`` or a ``.py`` file of
    models), and what could not be loaded."""
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            return [], [f"no file {target}"]
        loaded: Loaded = load_file(path.resolve())
        from modellib import get_model

        return ([get_model(name) for name in loaded.models],
                [f"{s.name or s.where}: {s.why}" for s in loaded.skipped])
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001  (the author's import error, reported)
        return [], [f"{module_name} could not be imported: {type(exc).__name__}: {exc}"]
    found = vars(module).get(attr) if attr else None
    if attr and not (isinstance(found, type) and issubclass(found, Model)):
        return [], [f"{target} is not a model class (a subclass of modellib.Model)"]
    if found is not None:
        return [found], []
    classes = [v for v in vars(module).values() if isinstance(v, type)
               and issubclass(v, Model) and v is not Model and v.__module__ == module.__name__]
    return classes, [] if classes else [f"{module_name} defines no model class"]


def _value(var: Any) -> float:
    """A value to run a variable at: its default, else inside its bounds, else 1."""
    if var.default is not None and not isinstance(var.default, list | tuple):
        return float(var.default)
    lo, hi = var.minimum, var.maximum
    if lo is not None and hi is not None:
        return (float(lo) + float(hi)) / 2
    if lo is not None:
        return float(lo) + 1.0
    if hi is not None:
        return float(hi) - 1.0
    return 1.0


def _finite(values: dict[str, Any]) -> list[str]:
    return [k for k, v in values.items()
            if not np.all(np.isfinite(np.asarray(v, dtype=float)))]


def check_model(cls: type[Model], params: dict[str, Any] | None = None) -> list[Check]:
    """Every check of ``cls`` (``params``: values for parameters without a default)."""
    checks: list[Check] = []
    problems = check_metadata(cls)
    checks.append(Check("declarations", "FAIL" if problems else "ok",
                        "; ".join(problems) or f"{len(cls.parameters)} parameter(s), "
                        f"{len(cls.inputs)} input(s), {len(cls.outputs)} output(s), "
                        f"{len(cls.states)} state(s), each with a unit and a description"))
    given = dict(params or {})
    missing = [p.name for p in cls.parameters if p.default is None and not p.optional
               and p.name not in given]
    if missing:
        checks.append(Check("parameters", "FAIL", f"no default for {', '.join(missing)}: "
                            "give one, or pass --params '{\"name\": value}' to check"))
        return checks
    try:
        cls.params_schema()
        model = cls(given)
    except CodedError as exc:
        checks.append(Check("parameters", "FAIL", exc.message))
        return checks
    checks.append(Check("parameters", "ok", "the schema loads the defaults"
                        + (f" and {', '.join(given)}" if given else "")))
    u = {v.name: _value(v) for v in cls.inputs}
    try:
        x = model.steady_state(0.0, u, model.initial_state({}))
        y = model.output(0.0, u, x)
        bad = _finite({**x, **y})
        checks.append(Check("static equations", "FAIL" if bad else "ok",
                            f"not finite: {', '.join(bad)}" if bad else
                            "steady state and outputs finite at the defaults"))
    except Exception as exc:  # noqa: BLE001  (the author's bug, reported)
        checks.append(Check("static equations", "FAIL", f"{type(exc).__name__}: {exc}"))
    checks.append(_dynamic(cls, given, u))
    checks.append(_vectorized(cls, model, u))
    checks.append(Check("derivatives", "skip", "no Jacobian declared (the solver estimates "
                        "one by finite differences where it needs it)"))
    return checks


def _dynamic(cls: type[Model], params: dict[str, Any], u: dict[str, float]) -> Check:
    from modellib.registry import MODELS, NameTaken

    added = MODELS.items().get(cls.name) is None
    try:
        MODELS.register(cls)  # (a class named by module:Class: registered for the run)
    except NameTaken as exc:
        return Check("dynamic run", "FAIL", f"the name {exc.name!r} is taken by another "
                     "model (a built-in one?): rename it")
    try:
        return _run_alone(cls, params, u)
    finally:
        if added:
            MODELS.unregister(cls.name)


def _run_alone(cls: type[Model], params: dict[str, Any], u: dict[str, float]) -> Check:
    try:
        result = run_scenario({
            "mode": "dynamic", "elements": {"m": {"model": cls.name, "params": params}},
            "inputs": {f"m.{k}": v for k, v in u.items()},
            "time": {"start": 0, "stop": 10, "step": 1}})
    except CodedError as exc:
        return Check("dynamic run", "FAIL", exc.message)
    except Exception as exc:  # noqa: BLE001
        return Check("dynamic run", "FAIL", f"{type(exc).__name__}: {exc}")
    bad = _finite(result["values"])
    return Check("dynamic run", "FAIL" if bad else "ok",
                 f"not finite: {', '.join(bad)}" if bad else
                 f"10 s alone at the defaults: {len(result['t'])} rows, every value finite")


def _vectorized(cls: type[Model], model: Model, u: dict[str, float]) -> Check:
    if not cls.vectorized:
        return Check("vectorized", "skip", "not declared vectorized")
    try:
        x0 = model.initial_state({})
        one = model.output(0.0, u, x0)
        two_model = cls.__new__(cls)
        two_model.p = {k: np.array([v, v]) if isinstance(v, int | float) else v
                       for k, v in model.p.items()}
        pair: dict[str, Any] = {k: np.array([v, v]) for k, v in u.items()}
        states: dict[str, Any] = {k: np.array([v, v]) for k, v in x0.items()}
        two = two_model.output(0.0, pair, states)
        for name, value in one.items():
            if not np.allclose(np.asarray(two[name], dtype=float), value, rtol=1e-12,
                               atol=0.0, equal_nan=True):
                return Check("vectorized", "FAIL", f"{name}: two at once give {two[name]}, "
                             f"one gives {value}")
    except Exception as exc:  # noqa: BLE001
        return Check("vectorized", "FAIL", f"{type(exc).__name__}: {exc}")
    return Check("vectorized", "ok", "two elements at once equal one at a time")


def passed(checks: list[Check]) -> bool:
    return all(c.status != "FAIL" for c in checks)

