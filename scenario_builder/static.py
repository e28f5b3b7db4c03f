"""Static mode: the steady state of a whole scenario.

Elements are evaluated component by component in topological order. Each
algebraic loop (a strongly connected component of the connection graph) is
torn at its internal connections and solved with scipy's root finders until
every torn value reproduces itself to 1e-9 relative.
"""

from __future__ import annotations

import time as _time
from typing import Any

import numpy as np
from scipy import optimize

from modellib import units
from modellib.errors import ModelRuntimeError

from .errors import ScenarioRuntimeError
from .graph import Element, Port, Scenario

__all__ = ["solve_static", "RTOL"]

RTOL = 1e-9
"""Relative tolerance every algebraic loop is solved to."""


class _Evaluator:
    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        start = (scenario.time or {}).get("start", 0.0)
        self.t = float(start)
        self.values: dict[Port, float] = {
            port: sig.at(start) for port, sig in scenario.inputs.items()
        }
        self.evaluations = 0

    def inputs_of(self, el: Element, torn: dict[Port, float] | None = None) -> dict[str, float]:
        u = {}
        for var in el.model.inputs:
            port = (el.name, var.name)
            src = self.sc.feeds.get(port)
            if src is None:
                u[var.name] = self.values[port]
                continue
            if torn is not None and src in torn:
                u[var.name] = torn[src]
            else:
                u[var.name] = self.values[src]
            u[var.name] = units.apply(u[var.name], self.sc.conversions.get(
                port, units.IDENTITY))  # (a connection between units: folded in)
        return u

    def evaluate(self, el: Element, torn: dict[Port, float] | None = None) -> dict[str, float]:
        u = self.inputs_of(el, torn)
        self.evaluations += 1
        try:
            x = el.model.steady_state(self.t, u, el.model.initial_state(el.initial))
            y = el.model.output(self.t, u, x)
        except (ArithmeticError, ValueError) as exc:
            raise ScenarioRuntimeError(
                f"element {el.name!r} ({el.cls.name}) failed: {exc}", path=None
            ) from None
        except ModelRuntimeError as exc:
            raise ScenarioRuntimeError(
                f"element {el.name!r} ({el.cls.name}): {exc.message}",
                path=f"scenario.elements.{el.name}",
            ) from None
        for name, value in u.items():
            self.values[(el.name, name)] = value
        for name, value in y.items():
            self.values[(el.name, name)] = value
        return y

    def solve_loop(self, names: list[str]) -> int:
        members = set(names)
        torn = sorted({src for dst, src in self.sc.feeds.items()
                       if dst[0] in members and src[0] in members})
        elements = [self.sc.elements[n] for n in names]

        def residual(x: np.ndarray) -> np.ndarray:
            guess = dict(zip(torn, map(float, x), strict=True))
            out = {}
            for el in elements:
                for key, value in self.evaluate(el, guess).items():
                    out[(el.name, key)] = value
            r = np.array([out[p] for p in torn]) - x
            if not np.all(np.isfinite(r)):
                raise FloatingPointError
            return r

        label = ", ".join(repr(n) for n in names)
        best: Any = None
        failure: ScenarioRuntimeError | None = None
        for method in ("hybr", "lm"):
            try:
                sol = optimize.root(residual, np.zeros(len(torn)), method=method,
                                    options={"xtol": 1e-13} if method == "hybr" else {})
            except FloatingPointError:
                continue
            except ScenarioRuntimeError as exc:  # an element failed at some guess
                failure = exc
                continue
            if self._converged(residual, sol.x):
                best = sol
                break
        if best is None:
            why = f"; the last failure: {failure.message}" if failure is not None else (
                "; check that the curves cross, e.g. that the pump can deliver the static head")
            raise ScenarioRuntimeError(
                f"the algebraic loop of elements {label} has no solution the solver could find "
                f"(torn at {', '.join(f'{a}.{b}' for a, b in torn)}){why}",
                path="scenario.connections",
            )
        residual(best.x)  # leave the values of the solution in self.values
        return int(getattr(best, "nfev", 0))

    @staticmethod
    def _converged(residual: Any, x: np.ndarray) -> bool:
        try:
            r = residual(x)
        except (FloatingPointError, ScenarioRuntimeError):
            return False
        return bool(np.all(np.abs(r) <= RTOL * np.maximum(1.0, np.abs(x))))


def solve_static(scenario: Scenario) -> dict[str, Any]:
    """Solve ``scenario`` at steady state; return ``values`` and ``stats``."""
    started = _time.perf_counter()
    ev = _Evaluator(scenario)
    loops = 0
    iterations = 0
    in_loops = scenario.loops
    for component in scenario.order:
        if component in in_loops:
            loops += 1
            iterations += ev.solve_loop(component)
        else:
            ev.evaluate(scenario.elements[component[0]])
    return {
        "values": {f"{e}.{p}": units.apply(ev.values[(e, p)], scenario.reported((e, p)))
                   for e, p in scenario.outputs},
        "stats": {
            "elements": len(scenario.elements),
            "loops": loops,
            "evaluations": ev.evaluations,
            "loop_function_calls": iterations,
            "solve_ms": round((_time.perf_counter() - started) * 1000, 3),
        },
    }
