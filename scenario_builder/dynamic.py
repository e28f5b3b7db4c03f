"""Dynamic mode: mixed discrete-continuous simulation of a whole scenario.

Every continuous state of the scenario lives in one vector integrated by
``scipy.integrate.solve_ivp``. The right-hand side evaluates the elements in
stages, writing every port value into one signal vector:

1. elements without direct feed-through: outputs from their states;
2. elements with feed-through, in topological order; an algebraic loop among
   them is torn at its internal connections and solved with ``scipy.optimize.root``
   (warm-started from the last solution) at every evaluation;
3. derivatives of every element with states, from its inputs.

Elements of a model class that declares ``vectorized = True`` are evaluated
together, one numpy call per class and stage, so a scenario of a hundred tanks
costs a few array operations per evaluation, not a hundred Python calls.

Time advances in segments. A segment ends at the next sample instant of a
sampled element (discrete PID…), whose discrete states are held in between and
updated at once, from the same inputs, at the instant; and at the next *time
event*: a breakpoint of an input series or a jump or kink of a source
(:meth:`modellib.Model.time_events`), so no solver step, however long, passes over
a pulse or a corner. The integration up to a segment's end sees the inputs before
it (left limits); the next segment starts from it with the values from it on.
Inside a segment the elements' event functions are watched: with continuous
states, a sign change is located by the solver (terminal event); with none, along
the signals themselves (at the output times, at every ``max_step`` of the sources
that ask for one, and the segment's end, then ``brentq``); a crossing at the
segment's end itself (a source that jumps across a threshold there) fires there.
The run restarts there after the element's ``on_event``. The discrete states are
made consistent with the inputs at t0 (:meth:`modellib.Model.consistent_state`).
Outputs are recorded at ``time.start + k * time.step`` up to ``time.stop`` (both
included), after the updates and events of an instant (right limits), the last one
too.

(One module above the project's ~400 lines on purpose: the staged right-hand side,
the march over segments, the event location and the recording share one state
layout and one signal vector; apart, each part would make sense only beside the
others. The time grid itself is :mod:`scenario_builder.timegrid`.)
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import integrate, optimize

from modellib import Model, units
from modellib.errors import ModelRuntimeError

from .errors import LimitExceeded, RunStopped, ScenarioRuntimeError
from .graph import Element, Port, Scenario, _components
from .timegrid import output_times, row_count

__all__ = ["simulate", "check_rows", "March", "MAX_ROWS", "MAX_SEGMENTS"]

MAX_ROWS = 10_000_000
"""Output rows above which a run is refused before it starts (``limit_exceeded``)."""
MAX_SEGMENTS = 1_000_000
"""Sample instants plus events above which a run stops (chattering)."""


@dataclass
class _Block:
    """Elements evaluated together: one element, or several of a vectorized class."""

    members: list[Element]
    model: Model
    vector: bool
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    states: dict[str, slice] = field(default_factory=dict)
    convert: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    """input → ``(scale, offset)`` (per member) from the unit of its source to its own,
    for the inputs whose connection converts"""

    @property
    def name(self) -> str:
        return self.members[0].name if len(self.members) == 1 else (
            f"{len(self.members)} {self.model.name} elements")


@dataclass
class _Loop:
    """An algebraic loop: its blocks, the torn signals and the last solution."""

    blocks: list[_Block]
    torn: np.ndarray
    guess: np.ndarray
    names: list[str]


def _batch(members: list[Element]) -> Model:
    """A model object whose parameters are arrays over ``members`` (vectorized classes)."""
    first = members[0].model
    params: dict[str, Any] = {}
    for key in first.p:
        values = [m.model.p[key] for m in members]
        if all(type(v) in (int, float) or v is None for v in values):
            arr = np.array(values, dtype=float)  # (None: NaN)
            params[key] = arr
        else:
            params[key] = values[0] if len({repr(v) for v in values}) == 1 else values
    return _like(first, params)


def _like(model: Model, params: dict[str, Any]) -> Model:
    """A model of ``model``'s class and ports with the parameters ``params``."""
    batch = type(model).__new__(type(model))
    batch.p = params
    batch.inputs, batch.outputs = model.inputs, model.outputs
    batch.states, batch.discrete = model.states, model.discrete
    return batch


def _columns(batch: Model) -> Model:
    """``batch`` with its parameter arrays as columns (one row per element, a column per
    time: how outputs are recorded over many times at once)."""
    return _like(batch, {k: v[:, None] if isinstance(v, np.ndarray) else v
                         for k, v in batch.p.items()})


STOP_POLL_S = 0.2
"""How often (wall-clock seconds) a long dynamic run asks whether it should stop."""


class _Engine:
    def __init__(self, sc: Scenario, should_stop: Callable[[], bool] | None = None) -> None:
        self.sc = sc
        self.should_stop = should_stop
        self._polled = _time.perf_counter()
        self.elements = sc.elements
        # ---- the signal vector: external inputs, then every output port
        index: dict[Port, int] = {}
        for port in sc.inputs:
            index[port] = len(index)
        for name, el in sc.elements.items():
            for out in el.model.output_names():
                index[(name, out)] = len(index)
        self.index = index
        self.n_signals = len(index)
        self.const_slots: list[int] = []
        self.const_values: list[float] = []
        self.series: list[tuple[int, Any]] = []
        for port, sig in sc.inputs.items():
            if sig.constant:
                self.const_slots.append(index[port])
                self.const_values.append(float(sig.v[0]))
            else:
                self.series.append((index[port], sig))
        # ---- continuous states
        self.n_states = 0
        self.x0: list[float] = []
        # ---- blocks, stages
        self.stage_a: list[_Block] = []  # no feed-through: outputs from states
        self.stage_b: list[_Block | _Loop] = []  # feed-through, topological order
        self.dynamic: list[_Block] = []  # blocks with continuous states
        self.singles: dict[str, _Block] = {}
        self._build()
        self.z: dict[str, dict[str, float]] = {
            name: {k: v for k, v in el.model.initial_state(el.initial).items()
                   if k in el.model.discrete_names()}
            for name, el in self.elements.items() if el.model.discrete_names()
        }
        self.nfev = 0
        self.record_s = 0.0
        self.until = math.inf
        """no time later than this is given to the models (a segment's end, its left
        limit: a source that jumps there is seen before the jump)"""
        self._cache_key: tuple[float, bytes] | None = None
        self._plan_key: tuple[int, ...] | None = None
        self._plan: tuple[list[tuple[_Block, Model, frozenset[str]]], np.ndarray, int] = (
            [], np.empty(0), 0)
        self._cache_s: np.ndarray | None = None

    # ------------------------------------------------------------ building
    def _source_index(self, el: Element, port: str) -> int:
        src = self.sc.feeds.get((el.name, port))
        return self.index[src if src is not None else (el.name, port)]

    def _make_block(self, members: list[Element], vector: bool) -> _Block:
        model = _batch(members) if vector else members[0].model
        blk = _Block(members, model, vector)
        for var in members[0].model.inputs:
            blk.inputs[var.name] = np.array([self._source_index(m, var.name) for m in members])
            convert = [self.sc.conversions.get((m.name, var.name), units.IDENTITY) for m in members]
            if any(c != units.IDENTITY for c in convert):
                scale, offset = (np.array(c) for c in zip(*convert, strict=True))
                blk.convert[var.name] = ((scale, offset) if vector
                                         else (float(scale[0]), float(offset[0])))
        for out in members[0].model.output_names():
            blk.outputs[out] = np.array([self.index[(m.name, out)] for m in members])
        names = members[0].model.state_names()
        if names:
            initial = [m.model.initial_state(m.initial) for m in members]
        for state in names:
            start = self.n_states
            self.x0.extend(float(x[state]) for x in initial)
            self.n_states += len(members)
            blk.states[state] = slice(start, self.n_states)
        if blk.states:
            self.dynamic.append(blk)
        if not vector:
            self.singles[members[0].name] = blk
        return blk

    def _build(self) -> None:
        sc = self.sc
        direct = {n for n, el in sc.elements.items() if el.model.feedthrough}
        # stage A: every element without feed-through, vectorized by class
        lagged = [el for n, el in sc.elements.items() if n not in direct]
        self.stage_a = self._group(lagged)
        # stage B: feed-through elements in topological order, loops found as SCCs
        feeds = {dst: src for dst, src in sc.feeds.items() if dst[0] in direct and src[0] in direct}
        order = _components(sorted(direct), feeds)
        level: dict[str, int] = {}
        for comp in order:
            preds = [level[src[0]] for dst, src in feeds.items()
                     if dst[0] in comp and src[0] not in comp]
            for n in comp:
                level[n] = max(preds, default=-1) + 1
        pending: list[list[str]] = []
        for comp in order:
            loop = len(comp) > 1 or any(dst[0] == src[0] == comp[0] for dst, src in feeds.items())
            if loop:
                blocks = [self._make_block([sc.elements[n]], False) for n in comp]
                torn = sorted({self.index[src] for dst, src in feeds.items()
                               if dst[0] in comp and src[0] in comp})
                self.stage_b.append(_Loop(blocks, np.array(torn), np.zeros(len(torn)), comp))
            else:
                pending.append(comp)
        # singletons: group vectorized classes level by level, keeping topological order
        by_level: dict[int, list[Element]] = {}
        for comp in pending:
            by_level.setdefault(level[comp[0]], []).append(sc.elements[comp[0]])
        loops = [b for b in self.stage_b if isinstance(b, _Loop)]
        ordered: list[tuple[int, _Block | _Loop]] = []
        for lvl in sorted(by_level):
            for blk in self._group(by_level[lvl]):
                ordered.append((lvl, blk))
        for lp in loops:
            ordered.append((level[lp.names[0]], lp))
        ordered.sort(key=lambda item: item[0])
        self.stage_b = [b for _, b in ordered]

    def _group(self, elements: list[Element]) -> list[_Block]:
        blocks: list[_Block] = []
        vector: dict[type, list[Element]] = {}
        for el in elements:
            cls = type(el.model)
            if getattr(cls, "vectorized", False) and not el.model.discrete_names():
                vector.setdefault(cls, []).append(el)
            else:
                blocks.append(self._make_block([el], False))
        for members in vector.values():
            blocks.append(self._make_block(members, True))
        return blocks

    # ------------------------------------------------------------ evaluation
    def _fill_inputs(self, t: float, s: np.ndarray) -> None:
        if self.const_slots:
            s[self.const_slots] = self.const_values
        for slot, sig in self.series:
            s[slot] = sig.at(t)

    def set_input(self, port: Port, value: float) -> None:
        """Hold the external input ``port`` at ``value`` (a series is replaced)."""
        slot = self.index[port]
        self.series = [(sl, sig) for sl, sig in self.series if sl != slot]
        if slot in self.const_slots:
            self.const_values[self.const_slots.index(slot)] = float(value)
        else:
            self.const_slots.append(slot)
            self.const_values.append(float(value))
        self._cache_key = None

    def _x_of(self, blk: _Block, x: np.ndarray) -> dict[str, Any]:
        if blk.vector:
            vals: dict[str, Any] = {k: x[sl] for k, sl in blk.states.items()}
        else:
            vals = {k: float(x[sl][0]) for k, sl in blk.states.items()}
            vals.update(self.z.get(blk.members[0].name, {}))
        return vals

    def _u_of(self, blk: _Block, s: np.ndarray) -> dict[str, Any]:
        if blk.vector:
            u = {k: s[idx] for k, idx in blk.inputs.items()}
        else:
            u = {k: float(s[idx[0]]) for k, idx in blk.inputs.items()}
        for k, (scale, offset) in blk.convert.items():  # (units: folded in once)
            u[k] = u[k] * scale + offset
        return u

    def _call(self, blk: _Block, method: str, t: float, x: np.ndarray, s: np.ndarray,
              *first: str) -> dict[str, Any]:
        """``blk.model.<method>(*first, t, u, x)``, a model's failure named with the block."""
        try:
            result: dict[str, Any] = getattr(blk.model, method)(
                *first, t, self._u_of(blk, s), self._x_of(blk, x))
        except (ArithmeticError, ValueError, ModelRuntimeError) as exc:
            raise self._failed(blk, t, exc) from None
        return result

    def _outputs(self, blk: _Block, t: float, x: np.ndarray, s: np.ndarray) -> None:
        y = self._call(blk, "output", t, x, s)
        for k, idx in blk.outputs.items():
            s[idx] = y[k]

    def _failed(self, blk: _Block, t: float, exc: Exception) -> ScenarioRuntimeError:
        text = exc.message if isinstance(exc, ModelRuntimeError) else str(exc)
        return ScenarioRuntimeError(f"{blk.name} failed at t = {t:g} s: {text}",
                                    path=f"scenario.elements.{blk.members[0].name}")

    def _solve_loop(self, lp: _Loop, t: float, x: np.ndarray, s: np.ndarray) -> None:
        def residual(v: np.ndarray) -> np.ndarray:
            s[lp.torn] = v
            for blk in lp.blocks:
                self._outputs(blk, t, x, s)
            return s[lp.torn] - v

        try:
            sol = optimize.root(residual, lp.guess, method="hybr", options={"xtol": 1e-12})
            ok = sol.success or bool(np.all(np.abs(sol.fun) <= 1e-9 * np.maximum(
                1.0, np.abs(sol.x))))
        except ScenarioRuntimeError:
            ok, sol = False, None
        if not ok or sol is None:
            raise ScenarioRuntimeError(
                f"the algebraic loop of elements {', '.join(map(repr, lp.names))} has no "
                f"solution at t = {t:g} s", path="scenario.connections")
        lp.guess = sol.x
        residual(sol.x)

    def evaluate(self, t: float, x: np.ndarray) -> np.ndarray:
        """Every signal at (t, x), with the discrete states held."""
        key = (t, x.tobytes())
        if key == self._cache_key and self._cache_s is not None:
            return self._cache_s
        s = np.empty(self.n_signals)
        self._fill_inputs(t, s)
        for blk in self.stage_a:
            self._outputs(blk, t, x, s)
        for item in self.stage_b:
            if isinstance(item, _Loop):
                self._solve_loop(item, t, x, s)
            else:
                self._outputs(item, t, x, s)
        self._cache_key, self._cache_s = key, s
        return s

    def rhs(self, t: float, x: np.ndarray) -> np.ndarray:
        t = min(t, self.until)
        self.nfev += 1
        if self.should_stop is not None and self.nfev % 256 == 0:
            self._poll_stop(t)
        s = self.evaluate(t, x)
        dx = np.empty(self.n_states)
        for blk in self.dynamic:
            d = self._call(blk, "derivatives", t, x, s)
            for k, sl in blk.states.items():
                dx[sl] = d[k]
        return dx

    def _poll_stop(self, t: float) -> None:
        now = _time.perf_counter()
        if now - self._polled >= STOP_POLL_S:
            self._polled = now
            assert self.should_stop is not None
            if self.should_stop():
                raise RunStopped(t)

    # ------------------------------------------------------------ events, samples
    def time_events(self, start: float, stop: float) -> np.ndarray:
        """The breakpoints of every input series and the time events of every element
        in (``start``, ``stop``], sorted, each once."""
        found = [sig.t[(sig.t > start) & (sig.t <= stop)] for _, sig in self.series]
        for name, el in self.elements.items():
            try:
                times = el.model.time_events(start, stop)
            except (ArithmeticError, ValueError, ModelRuntimeError) as exc:
                raise self._failed(self._block_of(name), start, exc) from None
            if times:
                found.append(np.asarray(times, dtype=float))
        return np.unique(np.concatenate(found)) if found else np.empty(0)

    def longest_step(self) -> float | None:
        """The shortest :meth:`modellib.Model.max_step` of the elements, or None."""
        steps = [s for el in self.elements.values() if (s := el.model.max_step()) is not None]
        return float(min(steps)) if steps else None

    def _block_of(self, name: str) -> _Block:
        return self.singles.get(name) or next(
            b for b in [*self.stage_a, *self.stage_b] if isinstance(b, _Block)
            and any(m.name == name for m in b.members))

    def make_consistent(self, t: float, x: np.ndarray) -> None:
        """The discrete states corrected for the inputs at ``t`` (``consistent_state``),
        again until none changes (one corrected switch may change what another sees)."""
        for _ in range(len(self.z) + 1):
            s = self.evaluate(t, x)
            changed = False
            for name, z in self.z.items():
                fixed = self._call(self.singles[name], "consistent_state", t, x, s)
                new = {k: float(fixed[k]) for k in z if k in fixed and float(fixed[k]) != z[k]}
                if new:
                    z.update(new)
                    changed = True
            self._cache_key = None
            if not changed:
                return

    def event_functions(self, t: float, x: np.ndarray,
                        ) -> list[tuple[Callable[..., float], _Block, str]]:
        """The event functions armed at (t, x): each with its block and event name,
        evaluated at no time later than :attr:`until`."""
        s = self.evaluate(t, x)
        out: list[tuple[Callable[..., float], _Block, str]] = []
        for blk in [*self.stage_a, *[b for b in self.stage_b if isinstance(b, _Block)],
                    *[b for lp in self.stage_b if isinstance(lp, _Loop) for b in lp.blocks]]:
            values = self._call(blk, "event_functions", t, x, s)
            for name, g0 in values.items():
                if blk.vector:
                    armed = np.asarray(g0) > 1e-12
                    if not armed.any():
                        continue
                    out.append((self._vector_event(blk, name, armed), blk, name))
                elif abs(float(g0)) > 1e-12:  # just fired: re-armed once it leaves zero
                    out.append((self._single_event(blk, name), blk, name))
        return out

    def _single_event(self, blk: _Block, name: str) -> Callable[..., float]:
        def g(t: float, x: np.ndarray) -> float:
            t = min(t, self.until)
            s = self.evaluate(t, x)
            return float(self._call(blk, "event_functions", t, x, s)[name])
        g.terminal = True  # type: ignore[attr-defined]
        return g

    def _vector_event(self, blk: _Block, name: str, armed: np.ndarray) -> Callable[..., float]:
        def g(t: float, x: np.ndarray) -> float:
            t = min(t, self.until)
            s = self.evaluate(t, x)
            values = self._call(blk, "event_functions", t, x, s)
            return float(np.min(np.asarray(values[name])[armed]))
        g.terminal = True  # type: ignore[attr-defined]
        g.direction = -1  # type: ignore[attr-defined]
        return g

    def sampled(self) -> dict[str, float]:
        out = {}
        for name, blk in self.singles.items():
            ts = blk.model.sample_time()
            if ts is not None:
                out[name] = float(ts)
        return out

    def update(self, names: list[str], t: float, x: np.ndarray) -> None:
        """The sample instant ``t`` of elements ``names``: all updated from the same inputs."""
        s = self.evaluate(t, x)
        new = {}
        for name in names:
            new[name] = self._call(self.singles[name], "update", t, x, s)
        for name, z in new.items():
            self.z[name].update(z)
        self._cache_key = None

    def on_event(self, blk: _Block, name: str, t: float, x: np.ndarray) -> None:
        if blk.vector:
            return  # vectorized models have no discrete states: the kink is located, done
        s = self.evaluate(t, x)
        z = self._call(blk, "on_event", t, x, s, name)
        if z:
            self.z.setdefault(blk.members[0].name, {}).update(z)
        self._cache_key = None

    # ------------------------------------------------------------ outputs
    def port_index(self, port: Port) -> int:
        """Where a port's value is in the signal vector (an input port: its source, in
        the source's unit: :meth:`port_conversion`)."""
        if port in self.index:
            return self.index[port]
        return self.index[self.sc.feeds[port]]

    def port_conversion(self, port: Port) -> tuple[float, float]:
        """``(scale, offset)`` from the value at :meth:`port_index` to the unit the port
        is reported in (an input port: from its source's unit; then the scenario's
        ``units``)."""
        a1, b1 = self.sc.conversions.get(port, units.IDENTITY)
        a2, b2 = self.sc.reported(port)
        return a1 * a2, b1 * a2 + b2

    def needed_blocks(self, rows: list[int]) -> list[_Block]:
        """The blocks whose outputs the signals ``rows`` need, in evaluation order."""
        wanted = set(rows)
        blocks = [b for b in self.stage_b if isinstance(b, _Block)]
        keep: set[int] = set()
        for blk in reversed(blocks):  # feed-through: inputs are needed too
            if any(int(i) in wanted for idx in blk.outputs.values() for i in idx):
                keep.add(id(blk))
                wanted.update(int(i) for idx in blk.inputs.values() for i in idx)
        keep.update(id(b) for b in self.stage_a
                    if any(int(i) in wanted for idx in b.outputs.values() for i in idx))
        return [b for b in [*self.stage_a, *blocks] if id(b) in keep]

    def _record_plan(self, rows: list[int]) -> tuple[list[tuple[_Block, Model, frozenset[str]]],
                                                     np.ndarray, int]:
        """The blocks to evaluate for ``rows``, their column-shaped batches and the
        outputs needed of each, and the compact numbering of the signals they need (-1:
        not stored). The inputs of a block without feed-through are not needed: its
        outputs depend on its states only. Made once."""
        key = tuple(rows)
        if self._plan_key != key:
            blocks = self.needed_blocks(rows)
            wanted = set(rows)
            for blk in blocks:
                if blk.model.feedthrough:
                    wanted.update(int(i) for idx in blk.inputs.values() for i in idx)
            compact = np.full(self.n_signals, -1)
            ordered = sorted(wanted)
            compact[ordered] = np.arange(len(ordered))
            self._plan = ([(b, _columns(b.model) if b.vector else b.model, frozenset(
                k for k, idx in b.outputs.items() if any(int(i) in wanted for i in idx)))
                for b in blocks], compact, len(ordered))
            self._plan_key = key
        return self._plan

    def record(self, t: np.ndarray, x: np.ndarray, rows: list[int], out: np.ndarray,
               col: slice) -> None:
        """Signals ``rows`` at the grid times ``t`` (states ``x``, a column per time)."""
        started = _time.perf_counter()
        try:
            self._record(t, x, rows, out, col)
        finally:
            self.record_s += _time.perf_counter() - started

    def _record(self, t: np.ndarray, x: np.ndarray, rows: list[int], out: np.ndarray,
                col: slice) -> None:
        if not self.singles and all(isinstance(b, _Block) for b in self.stage_b):
            # everything vectorizes over time too: one call per needed block, and only
            # the signals needed are stored (compact rows)
            blocks, compact, n = self._record_plan(rows)
            direct = n == len(rows) and bool(np.array_equal(compact[rows], np.arange(n)))
            s = out[:, col] if direct else np.empty((n, len(t)))  # direct: write in place
            for slot, value in zip(self.const_slots, self.const_values, strict=True):
                if compact[slot] >= 0:
                    s[compact[slot]] = value
            for slot, sig in self.series:
                if compact[slot] >= 0:
                    s[compact[slot]] = np.interp(t, sig.t, sig.v)
            for blk, model, names in blocks:
                u = {k: s[_rows(compact[idx])] for k, idx in blk.inputs.items()} \
                    if model.feedthrough else {}
                for k, (scale, offset) in blk.convert.items() if u else ():
                    u[k] = u[k] * _column(scale) + _column(offset)
                xs = {k: x[sl] for k, sl in blk.states.items()}
                y = model.outputs_named(names, t, u, xs)  # type: ignore[arg-type]  # arrays
                for k in names:
                    idx = blk.outputs[k]
                    where = compact[idx]
                    keep = where >= 0
                    if keep.all():
                        s[_rows(where)] = y[k]
                    elif keep.any():
                        s[where[keep]] = np.asarray(y[k])[keep]
            if not direct:
                out[:, col] = s[_rows(compact[rows])]
            return
        for i, ti in enumerate(t):
            out[:, col.start + i] = self.evaluate(float(ti), np.ascontiguousarray(x[:, i]))[rows]


def _column(value: Any) -> Any:
    """A per-member array as a column (members by times); a number as it is."""
    return value[:, None] if isinstance(value, np.ndarray) else value


def _crossed(g: Callable[..., float], g0: float, g1: float) -> bool:
    """Whether event function ``g`` crossed zero from ``g0`` to ``g1`` (a vectorized
    one only downwards: its ``direction`` is -1)."""
    return (g0 > 0 and g1 <= 0) or (g0 < 0 and g1 >= 0 and getattr(g, "direction", 0) != -1)


def _rows(index: np.ndarray) -> slice | np.ndarray:
    """``index`` as a slice when it is a run of consecutive rows (a view, no copy)."""
    if len(index) and index[0] >= 0 and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def check_rows(time: dict[str, Any]) -> int:
    """The number of output rows; ``limit_exceeded`` above :data:`MAX_ROWS`."""
    rows = row_count(time)
    if rows > MAX_ROWS:
        raise LimitExceeded(
            f"the run would return about {rows:.3g} rows; at most {MAX_ROWS} are allowed: "
            "make time.step larger or the run shorter", path="scenario.time.step")
    return rows


def _grid(time: dict[str, Any]) -> np.ndarray:
    check_rows(time)
    return output_times(time)


def _solver_options(sc: Scenario) -> dict[str, Any]:
    solver = sc.solver or {}
    opts: dict[str, Any] = {"method": solver.get("method", "RK45"),
                            "rtol": solver.get("rtol", 1e-6), "atol": solver.get("atol", 1e-9)}
    if solver.get("max_step"):
        opts["max_step"] = solver["max_step"]
    return opts


class March:
    """The simulated state of a scenario, marched forward in time.

    Holds the time, the continuous states and the schedule of the sampled
    elements; :meth:`advance` integrates to a later time, updating the sampled
    elements at their instants and handling the events in between. Dynamic
    mode advances once over the whole grid; the real-time loop once per tick.
    """

    def __init__(self, sc: Scenario, should_stop: Callable[[], bool] | None = None) -> None:
        assert sc.time is not None
        self.eng = _Engine(sc, should_stop)
        self.opts = _solver_options(sc)
        longest = self.eng.longest_step()
        if longest is not None:
            self.opts["max_step"] = min(self.opts.get("max_step", math.inf), longest)
        self.t0 = self.t = float(sc.time["start"])
        self.x = np.array(self.eng.x0, dtype=float)
        self.sample_times = self.eng.sampled()
        self.next_sample = dict.fromkeys(self.sample_times, self.t)
        self.k_sample = dict.fromkeys(self.sample_times, 0)
        self.segments = self.events = self.samples = self.time_events = 0
        self.breaks = self.eng.time_events(self.t, math.inf)
        """the time events ahead (input series' breakpoints, the sources' jumps)"""
        self.eng.make_consistent(self.t, self.x)

    def _next_break(self, t: float) -> float:
        """The first time event after ``t`` (inf: none)."""
        i = int(np.searchsorted(self.breaks, t + 1e-12 * max(1.0, abs(t)), side="right"))
        return float(self.breaks[i]) if i < len(self.breaks) else math.inf

    def set_input(self, port: Port, value: float) -> None:
        """Hold the external input ``port`` at ``value`` from now on."""
        self.eng.set_input(port, value)

    def apply_due(self) -> None:
        """Update the sampled elements whose instant is now, all from the same inputs."""
        t = self.t
        due = [n for n, ts in self.next_sample.items() if ts <= t + 1e-12 * max(1.0, abs(t))]
        if due:
            self.eng.update(due, t, self.x)
            self.samples += len(due)
            for name in due:
                self.k_sample[name] += 1
                self.next_sample[name] = self.t0 + self.k_sample[name] * self.sample_times[name]

    def record_now(self, rows: list[int], out: np.ndarray, col: int) -> None:
        """The signals ``rows`` at the present time into column ``col`` of ``out``."""
        self.eng.record(np.array([self.t]), self.x[:, None], rows, out, slice(col, col + 1))

    def advance(self, t_stop: float, grid: np.ndarray | None = None,
                rows: list[int] | None = None, out: np.ndarray | None = None) -> int:
        """March to ``t_stop``; record ``rows`` at the times of ``grid`` before ``t_stop``
        into ``out`` (the row at ``t_stop`` is the caller's, after the updates due then:
        :meth:`apply_due`, :meth:`record_now`). Returns the rows recorded."""
        eng = self.eng
        grid = np.empty(0) if grid is None else grid
        recorded = 0
        while True:
            t = self.t
            if t >= t_stop:
                return recorded
            self.apply_due()
            self.segments += 1
            if self.segments > MAX_SEGMENTS:
                raise ScenarioRuntimeError(
                    f"more than {MAX_SEGMENTS} sample instants, time events and events "
                    f"before t = {t:g} s (a controller chattering?)", path="scenario")
            at_break = self._next_break(t)
            t_end = min([t_stop, at_break, *self.next_sample.values()])
            if t_end == at_break:
                self.time_events += 1
            upto = np.searchsorted(grid, t_end, side="left")
            t_eval = grid[recorded:upto]
            # the segment sees the inputs before its end (a source jumping at t_end: its
            # left limit), the next one those from it on
            eng.until = until = float(np.nextafter(t_end, -math.inf))
            try:
                watched = eng.event_functions(t, self.x)
                if eng.n_states == 0:
                    recorded += self._without_states(t, t_end, until, watched, t_eval, rows,
                                                     out, recorded)
                    continue
                before = [g(t, self.x) for g, _, _ in watched]
                ext = np.append(t_eval, t_end)  # t_end: the state to go on from, not recorded
                sol = integrate.solve_ivp(eng.rhs, (t, t_end), self.x, t_eval=ext,
                                          events=[g for g, _, _ in watched] or None,
                                          **self.opts)
            except (ValueError, ArithmeticError) as exc:
                raise ScenarioRuntimeError(f"the solver failed at t = {t:g} s: {exc}",
                                           path="scenario.solver") from None
            finally:
                eng.until = math.inf
            if sol.status == -1:
                raise ScenarioRuntimeError(
                    f"the solver failed at t = {float(sol.t[-1]) if len(sol.t) else t:g} s: "
                    f"{sol.message}; try solver.method \"LSODA\" or \"BDF\" for a stiff "
                    "scenario, or a smaller solver.max_step", path="scenario.solver")
            done = min(len(sol.t), len(t_eval))
            if done:
                assert rows is not None and out is not None
                eng.record(sol.t[:done], sol.y[:, :done], rows, out,
                           slice(recorded, recorded + done))
                recorded += done
            if sol.status == 1:  # a terminal event
                fired = [(i, float(te[0])) for i, te in enumerate(sol.t_events) if len(te)]
                i, te = min(fired, key=lambda item: item[1])
                self.x = np.asarray(sol.y_events[i][0], dtype=float)
                self._fire(te, [(watched[j], te_j) for j, te_j in fired])
                continue
            self.x = np.asarray(sol.y[:, -1], dtype=float)
            self.t = t_end
            self._fire_at_end(t_end, watched, before)

    def _fire_at_end(self, t_end: float,
                     watched: list[tuple[Callable[..., float], _Block, str]],
                     before: list[float]) -> None:
        """A segment that reached its end ``t_end`` with no event inside: an event
        function that crosses zero at ``t_end`` itself (a continuous signal that gets
        there exactly, or a source that jumps across a threshold there: the values from
        ``t_end`` on) fires there."""
        if not watched:
            return
        fired = [(w, t_end) for w, g0 in zip(watched, before, strict=True)
                 if _crossed(w[0], g0, w[0](t_end, self.x))]
        if fired:
            self._fire(t_end, fired)

    def _fire(self, te: float, fired: list[tuple[tuple[Any, _Block, str], float]]) -> None:
        """The events located first, at ``te``: the time goes there and each element
        whose event fired then has its ``on_event``."""
        self.t = te
        for (_, blk, name), te_j in fired:
            if te_j <= te + 1e-12 * max(1.0, abs(te)):
                self.eng.on_event(blk, name, te, self.x)
                self.events += 1

    def _without_states(self, t: float, t_end: float, until: float,
                        watched: list[tuple[Callable[..., float], _Block, str]],
                        t_eval: np.ndarray, rows: list[int] | None, out: np.ndarray | None,
                        recorded: int) -> int:
        """A segment with nothing to integrate: its events located along the signals,
        its rows recorded up to the first one. Returns the rows recorded."""
        te, fired = self._search(t, until, watched, t_eval)
        n = len(t_eval) if te is None else int(np.searchsorted(t_eval, te, side="left"))
        if n:
            assert rows is not None and out is not None
            self.eng.record(t_eval[:n], np.zeros((0, n)), rows, out,
                            slice(recorded, recorded + n))
        if te is None:
            self.t = t_end
            self.eng.until = math.inf
            self._fire_at_end(t_end, watched, [g(t, self.x) for g, _, _ in watched])
        else:
            self._fire(te, fired)
        return n

    def _search(self, t: float, until: float,
                watched: list[tuple[Callable[..., float], _Block, str]], t_eval: np.ndarray,
                ) -> tuple[float | None, list[tuple[tuple[Any, _Block, str], float]]]:
        """The first sign change of the armed event functions in (``t``, ``until``]
        when no state drives them: each is evaluated at the output times, every
        ``max_step`` (a source's, or the solver's) and ``until``; a change between two
        of these points is located with ``brentq``. Returns its time and the events
        that fired (with their own times), or ``(None, [])``."""
        if not watched:
            return None, []
        x = self.x
        scan = self.opts.get("max_step")
        points: list[np.ndarray] = [t_eval[t_eval > t], np.array([until])]
        if scan and until - t > scan:
            points.append(t + scan * np.arange(1, math.ceil((until - t) / scan)))
        ahead: np.ndarray = np.unique(np.concatenate(points))
        ahead = ahead[(ahead > t) & (ahead <= until)]
        before = [g(t, x) for g, _, _ in watched]
        a = t
        for b in ahead:
            now = [g(float(b), x) for g, _, _ in watched]
            crossed = [i for i, (g0, g1) in enumerate(zip(before, now, strict=True))
                       if _crossed(watched[i][0], g0, g1)]
            if crossed:
                times = [(i, self._root(watched[i][0], a, float(b), now[i])) for i in crossed]
                te = min(tj for _, tj in times)
                return te, [(watched[i], tj) for i, tj in times]
            a, before = float(b), now
        return None, []

    def _root(self, g: Callable[..., float], a: float, b: float, gb: float) -> float:
        """Where ``g`` (of time only here) crosses zero in (a, b]; ``g(b)`` is ``gb``."""
        if gb == 0.0:
            return b
        x = self.x
        root = float(optimize.brentq(lambda tt: g(tt, x), a, b, xtol=1e-12, rtol=1e-12))
        return min(b, root)

    def stats(self) -> dict[str, Any]:
        return {"elements": len(self.eng.elements), "states": self.eng.n_states,
                "rhs_evaluations": self.eng.nfev, "segments": self.segments,
                "events": self.events, "samples": self.samples,
                "time_events": self.time_events}


def simulate(sc: Scenario, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Simulate ``sc`` from ``time.start`` to ``time.stop``; return ``t``, ``values``, ``stats``.

    ``should_stop``, when given, is asked every :data:`STOP_POLL_S` seconds of a long
    integration; when it says yes the run ends with :class:`RunStopped`."""
    started = _time.perf_counter()
    assert sc.time is not None
    grid = _grid(sc.time)
    march = March(sc, should_stop)
    rows = [march.eng.port_index(port) for port in sc.outputs]
    s_out = np.empty((len(rows), len(grid)))
    recorded = march.advance(float(grid[-1]), grid, rows, s_out)
    march.apply_due()  # the sample instants at time.stop too: the last row is up to date
    march.record_now(rows, s_out, recorded)
    recorded += 1
    for i, port in enumerate(sc.outputs):  # an input port recorded: in its own unit
        s_out[i] = units.apply(s_out[i], march.eng.port_conversion(port))
    if recorded != len(grid):  # pragma: no cover - a bug, not an input
        raise ScenarioRuntimeError(f"recorded {recorded} of {len(grid)} rows", path="scenario")
    values = {f"{e}.{p}": s_out[i] for i, (e, p) in enumerate(sc.outputs)}
    return {
        "t": grid,
        "values": values,
        "stats": {"rows": len(grid), **march.stats(),
                  "solve_ms": round((_time.perf_counter() - started) * 1000, 3),
                  "outputs_ms": round(march.eng.record_s * 1000, 3)},
    }
