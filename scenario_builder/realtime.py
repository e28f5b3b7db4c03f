"""Real-time mode: a fixed-time loop of mixed discrete-continuous simulation.

Tick ``k`` stands for simulated time ``t_k = time.start + k * time.step`` and
is released at wall-clock time ``W0 + k * P``, with the period
``P = time.step / realtime.speed``. Release times are absolute, so a late tick
never pushes the next one: lateness does not accumulate into drift. At each
tick the loop

1. asks its :class:`Steering` for a stop request and the latest input values
   (``set``), which hold from this tick on;
2. updates the sampled elements due at ``t_k`` and records the outputs at ``t_k``;
3. advances the continuous states to ``t_{k+1}``, handling the sample instants
   and the events inside the tick (:class:`scenario_builder.dynamic.March`);
4. every ``publish_every`` rows, hands the rows since the last time to
   :meth:`Steering.publish` with the deadline statistics so far.

Falling behind (a tick released more than one period late) follows the
declared ``realtime.policy``: ``catch_up`` runs the late ticks back to back
until the loop is on time again; ``skip`` jumps over the missed ticks (their
simulated time is still integrated, their rows are not recorded) so the loop
is on time at once; ``fail`` ends the run with ``runtime_error`` as soon as a
tick is later than ``realtime.tolerance``.

Wall-clock pacing is all the I/O here; reading steering and publishing rows
belong to the caller's :class:`Steering` (the Celery task does it over Redis).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modellib import units

from .alarms import Detector
from .dynamic import March
from .errors import ScenarioRuntimeError
from .graph import Port, Scenario

__all__ = ["Steering", "Poll", "LatenessStats", "run_realtime", "settable_inputs"]


@dataclass
class Poll:
    """What the steering says at a tick."""

    stop: bool = False
    inputs: dict[str, float] = field(default_factory=dict)
    """every input value set so far, ``"element.port" → value`` (only changes are applied)"""


class Steering(Protocol):
    """The loop's link to the outside: steering in, rows out."""

    def poll(self, tick: int, t: float) -> Poll:
        """Called once per tick, before it is computed."""

    def publish(self, chunk: int, t: list[float], values: dict[str, list[float]],
                stats: dict[str, Any]) -> None:
        """Rows ``t``/``values`` (chunk ``chunk``, counted from 0) and the statistics so far."""

    # A steering may also have ``alarm(events)``: the raised and cleared events of the
    # scenario's alarm rules and of ``realtime_overrun`` at this tick (see _Alarms).


OVERRUN = "realtime_overrun"
OVERRUN_CLEAR_S = 1.0
"""``realtime_overrun`` clears once the ticks have been within ``realtime.tolerance`` for
this long (wall clock)."""


class _Alarms:
    """The live alarms of a real-time run: its rules on the outputs of each tick, and
    ``realtime_overrun`` (a tick later than ``realtime.tolerance``), to its steering."""

    def __init__(self, sc: Scenario, steering: Any, tolerance: float) -> None:
        self.send = getattr(steering, "alarm", None)
        self.detectors = [Detector(rule) for rule in sc.alarms] if self.send else []
        self.units = sc.units_shown()
        self.tolerance = tolerance
        self.late_since: float | None = None
        self.on_time_since: float | None = None

    def tick(self, t: float, values: dict[str, float]) -> None:
        if not self.detectors:
            return
        events = []
        for det in self.detectors:
            rule = det.rule
            other = values.get(rule.source) if rule.source else None
            for event in det.feed(t, values[rule.on], other):
                event["priority"] = rule.priority
                event["message"] = rule.describe(event["value"], self.units.get(rule.on, ""),
                                                 event["event"])
                events.append(event)
        if events and self.send is not None:
            self.send(events)

    def lateness(self, t: float, late: float, now: float) -> None:
        """The lateness of this tick (s): raise or clear ``realtime_overrun``."""
        if self.send is None:
            return
        ms, limit = round(late * 1000, 3), round(self.tolerance * 1000, 3)
        if late > self.tolerance:
            self.on_time_since = None
            if self.late_since is None:
                self.late_since = now
                self.send([{"alarm": OVERRUN, "event": "raised", "t": t, "value": ms,
                            "limit": limit, "priority": "high", "message": (
                                f"a tick started {ms:g} ms late, more than realtime.tolerance "
                                f"= {limit:g} ms: the run falls behind the wall clock "
                                "(the worker's host is overloaded, or the scenario is too "
                                "costly for its time.step)")}])
        elif self.late_since is not None:
            if self.on_time_since is None:
                self.on_time_since = now
            elif now - self.on_time_since >= OVERRUN_CLEAR_S:
                self.late_since = self.on_time_since = None
                self.send([{"alarm": OVERRUN, "event": "cleared", "t": t, "value": ms,
                            "limit": limit, "priority": "high", "message": (
                                f"the ticks have been within realtime.tolerance = {limit:g} "
                                f"ms for {OVERRUN_CLEAR_S:g} s")}])


def settable_inputs(sc: Scenario) -> list[str]:
    """The input ports a ``set`` may change: those not fed by a connection."""
    return sorted(f"{e}.{p}" for e, p in sc.inputs)


class LatenessStats:
    """Tick lateness in a fixed histogram (bins of ``bin_s``): constant memory for
    open-ended runs, percentiles exact to one bin."""

    def __init__(self, bin_s: float = 1e-4, span_s: float = 1.0) -> None:
        self.bin_s = bin_s
        self.counts = np.zeros(int(round(span_s / bin_s)) + 1, dtype=np.int64)
        self.n = 0
        self.max = 0.0
        self.last = 0.0

    def add(self, lateness: float) -> None:
        lateness = max(lateness, 0.0)
        self.counts[min(int(lateness / self.bin_s), len(self.counts) - 1)] += 1
        self.n += 1
        self.max = max(self.max, lateness)
        self.last = lateness

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (upper edge of its bin; the maximum in the last one)."""
        if self.n == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.n))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min((i + 1) * self.bin_s, self.max)

    def histogram(self) -> dict[str, Any]:
        """Non-empty bins as ``{"bin_ms", "counts": {bin index: count}}`` (JSON-able)."""
        nz = np.flatnonzero(self.counts)
        return {"bin_ms": self.bin_s * 1000,
                "counts": {str(int(i)): int(self.counts[i]) for i in nz}}


@dataclass
class _Counters:
    ticks: int = 0
    overruns: int = 0
    late: int = 0
    skipped: int = 0
    rows: int = 0
    chunks: int = 0
    inputs_set: int = 0


def _stats(c: _Counters, lat: LatenessStats, period: float, tolerance: float,
           policy: str) -> dict[str, Any]:
    ms = 1000.0
    return {
        "ticks": c.ticks, "overruns": c.overruns, "late": c.late, "skipped": c.skipped,
        "rows": c.rows, "inputs_set": c.inputs_set, "policy": policy,
        "period_ms": round(period * ms, 6), "tolerance_ms": round(tolerance * ms, 6),
        "lateness_ms": {"p50": round(lat.percentile(50) * ms, 3),
                        "p99": round(lat.percentile(99) * ms, 3),
                        "max": round(lat.max * ms, 3)},
        "max_lag_ms": round(lat.max * ms, 3),
        "drift_ms": round(lat.last * ms, 3),
    }


def run_realtime(sc: Scenario, steering: Steering, *,
                 max_wall_s: float | None = None,
                 clock: Callable[[], float] = _time.monotonic,
                 sleep: Callable[[float], None] = _time.sleep) -> dict[str, Any]:
    """Run ``sc`` in real time until ``time.stop`` or a stop request; return the fields
    of the final ``result`` (``status`` ``completed`` or ``stopped``, ``stats``).

    ``max_wall_s``: the most wall-clock seconds the run lasts. No tick released at or
    after that time, or starting after it (a loop that fell behind), is run: the run
    ends there as a stop request ends it, and the result says ``"capped": true``."""
    assert sc.time is not None and sc.realtime is not None
    opts = sc.realtime
    start, step = float(sc.time["start"]), float(sc.time["step"])
    stop = sc.time.get("stop")
    last_tick = None if stop is None else math.floor((float(stop) - start) / step + 1e-9)
    period = step / float(opts["speed"])
    policy: str = opts["policy"]
    tolerance = float(opts["tolerance"]) if opts.get("tolerance") else period
    every = int(opts["publish_every"])

    march = March(sc)
    ports = {f"{e}.{p}": (e, p) for e, p in sc.inputs}
    rows = [march.eng.port_index(port) for port in sc.outputs]
    convert = [march.eng.port_conversion(port) for port in sc.outputs]
    """(an input port recorded: from its source's unit to its own)"""
    names = [f"{e}.{p}" for e, p in sc.outputs]
    buf = np.empty((len(rows), every))
    buf_t: list[float] = []
    applied: dict[str, float] = {}
    c = _Counters()
    lat = LatenessStats()
    alarms = _Alarms(sc, steering, tolerance)
    watched = {name for rule in sc.alarms for name in (rule.on, rule.source) if name}
    watched_rows = [(i, name) for i, name in enumerate(names) if name in watched]

    def flush() -> None:
        if not buf_t:
            return
        n = len(buf_t)
        steering.publish(c.chunks, list(buf_t), {
            name: units.apply(buf[i, :n], convert[i]).tolist() for i, name in enumerate(names)},
                         _stats(c, lat, period, tolerance, policy))
        c.chunks += 1
        buf_t.clear()

    def steer(poll: Poll) -> None:
        for key, value in poll.inputs.items():
            port: Port | None = ports.get(key)
            if port is None or applied.get(key) == value or not math.isfinite(value):
                continue  # (the ingress checks `set`; a stale or foreign key is ignored)
            march.set_input(port, float(value))
            applied[key] = value
            c.inputs_set += 1

    status = "completed"
    capped = False
    k = 0
    w0 = clock()
    end = math.inf if max_wall_s is None else w0 + max_wall_s
    try:
        while True:
            release = w0 + k * period
            now = clock()
            if max(release, now) >= end:
                status, capped = "stopped", True
                break
            if now < release:
                sleep(release - now)
                now = clock()
            if policy == "skip" and now - release > period:
                missed = int((now - release) // period)
                if last_tick is not None:
                    missed = min(missed, last_tick - k)
                if missed > 0:
                    k += missed
                    c.skipped += missed
                    march.advance(start + k * step)
                    release = w0 + k * period
            lateness = now - release
            lat.add(lateness)
            alarms.lateness(start + k * step, lateness, now)
            c.ticks += 1
            if lateness > tolerance:
                c.late += 1
                if policy == "fail":
                    raise ScenarioRuntimeError(
                        f"the real-time loop fell behind: tick {k} (t = {start + k * step:g} s) "
                        f"started {lateness * 1000:.1f} ms late, more than realtime.tolerance "
                        f"= {tolerance * 1000:g} ms; lower realtime.speed, make time.step "
                        "larger, or choose policy \"catch_up\" or \"skip\"",
                        path="scenario.realtime.tolerance")
            t_k = start + k * step
            poll = steering.poll(k, t_k)
            steer(poll)
            if poll.stop:
                status = "stopped"
                break
            march.apply_due()
            march.record_now(rows, buf, len(buf_t))
            if watched_rows:
                col = len(buf_t)
                alarms.tick(t_k, {name: float(units.apply(buf[i, col], convert[i]))
                                  for i, name in watched_rows})
            buf_t.append(t_k)
            c.rows += 1
            if len(buf_t) == every:
                flush()
            if last_tick is not None and k >= last_tick:
                break
            march.advance(start + (k + 1) * step)
            if clock() > release + period:
                c.overruns += 1
            k += 1
    finally:
        flush()  # the last rows go out whatever ends the run
    return {"status": status, "rows": c.rows, "chunks": c.chunks, "units": sc.units_shown(),
            **({"capped": True} if capped else {}),
            "stats": {**_stats(c, lat, period, tolerance, policy), **march.stats(),
                      "lateness_histogram": lat.histogram()}}
