"""Linear time-invariant state-space model, for models identified from plant data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..base import Input, Model, Output, Param, State, Variable
from ..errors import InvalidArgument, ModelRuntimeError
from ..registry import register


@register
class LinearStateSpace(Model):
    name = "LinearStateSpace"
    description = (
        "Continuous-time linear time-invariant system dx/dt = A x + B u, y = C x + D u, the "
        "usual form of a model identified from plant data (subspace identification, "
        "linearisation). Its ports follow the matrix shapes: with A n x n, B n x m, C p x n "
        "and D p x m there are inputs u1..um, outputs y1..yp and states x1..xn, numbered "
        "from 1 in the order of the matrix columns and rows. D may be left out (zero). "
        "Signals are dimensionless: scale them in the identification."
    )
    reference = (
        "K. Ogata, Modern Control Engineering, 5th ed., Prentice Hall 2010, sec. 2-4 "
        "(modelling in state space); the same convention as scipy.signal.StateSpace."
    )
    parameters = (
        Param("A", "1", "state matrix, n x n (n states)", type="matrix"),
        Param("B", "1", "input matrix, n x m (m inputs)", type="matrix"),
        Param("C", "1", "output matrix, p x n (p outputs)", type="matrix"),
        Param("D", "1", "feedthrough matrix, p x m; zero when left out", type="matrix",
              optional=True),
    )
    # Templates for describe(); every instance sets its own ports from the shapes.
    inputs: tuple[Variable, ...] = (
        Input("u{i}", "1", "input i = 1..m, one per column of B (and of D)"),
    )
    outputs: tuple[Variable, ...] = (
        Output("y{i}", "1", "output i = 1..p, one per row of C (and of D)"),
    )
    states: tuple[Variable, ...] = (
        State("x{i}", "1", "state i = 1..n, one per row and column of A"),
    )

    def __init__(self, params: Mapping[str, Any] | None = None, *,
                 path: str = "params") -> None:
        super().__init__(params, path=path)
        p = self.p
        self.a = np.array(p["A"], dtype=float)
        self.b = np.array(p["B"], dtype=float)
        self.c = np.array(p["C"], dtype=float)
        n, m, q = self.a.shape[0], self.b.shape[1], self.c.shape[0]
        self.d = np.zeros((q, m)) if p["D"] is None else np.array(p["D"], dtype=float)
        self.inputs = tuple(Input(f"u{i}", "1", f"input {i} of {m}") for i in range(1, m + 1))
        self.outputs = tuple(Output(f"y{i}", "1", f"output {i} of {q}")
                             for i in range(1, q + 1))
        self.states = tuple(State(f"x{i}", "1", f"state {i} of {n}") for i in range(1, n + 1))
        self._u = self.input_names()
        self._x = self.state_names()
        self._y = self.output_names()

    def check(self, path: str) -> None:
        a, b, c, d = (self.p[k] for k in ("A", "B", "C", "D"))
        n = len(a)
        if len(a[0]) != n:
            raise InvalidArgument(
                f"{path}.A must be square (n x n, one row and column per state), got {n} "
                f"rows of {len(a[0])}",
                path=f"{path}.A",
            )
        if len(b) != n:
            raise InvalidArgument(
                f"{path}.B must have {n} rows (one per row of A), got {len(b)}",
                path=f"{path}.B",
            )
        if len(c[0]) != n:
            raise InvalidArgument(
                f"{path}.C must have {n} columns (one per column of A), got {len(c[0])}",
                path=f"{path}.C",
            )
        if d is None:
            return
        if len(d) != len(c):
            raise InvalidArgument(
                f"{path}.D must have {len(c)} rows (one per row of C), got {len(d)}",
                path=f"{path}.D",
            )
        if len(d[0]) != len(b[0]):
            raise InvalidArgument(
                f"{path}.D must have {len(b[0])} columns (one per column of B), got "
                f"{len(d[0])}",
                path=f"{path}.D",
            )

    def _vector(self, values: Mapping[str, float], names: tuple[str, ...]) -> np.ndarray:
        return np.array([values[k] for k in names], dtype=float)

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        y = self.c @ self._vector(x, self._x) + self.d @ self._vector(u, self._u)
        return {k: float(v) for k, v in zip(self._y, y, strict=True)}

    def derivatives(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        dx = self.a @ self._vector(x, self._x) + self.b @ self._vector(u, self._u)
        return {k: float(v) for k, v in zip(self._x, dx, strict=True)}

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        n = self.a.shape[0]
        if np.linalg.matrix_rank(self.a) < n:
            raise ModelRuntimeError(
                f"{self.name} has no unique steady state: A is singular (an integrator or "
                "a pole at the origin), so A x = -B u cannot be solved"
            )
        try:
            xs = np.linalg.solve(self.a, -(self.b @ self._vector(u, self._u)))
        except np.linalg.LinAlgError as exc:  # pragma: no cover - caught by the rank test
            raise ModelRuntimeError(f"{self.name}: A is singular ({exc})") from None
        return {**x0, **{k: float(v) for k, v in zip(self._x, xs, strict=True)}}
