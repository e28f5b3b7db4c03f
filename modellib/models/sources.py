"""Signal sources: functions of time only (no inputs, no states)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..base import Model, Output, Param
from ..errors import InvalidArgument, ModelRuntimeError
from ..registry import register

_NAMING = (
    "These are definitions, not physics; names and parameters follow the Modelica "
    "Standard Library 4.0, Modelica.Blocks.Sources"
)

_Y = (Output("y", "any", "the source's signal"),)


@register
class Step(Model):
    name = "Step"
    description = (
        "Step signal: y = initial for t < step_time and y = final from step_time on. "
        "step_time is a time event: the engine stops the integration there instead of "
        "integrating across the jump, and the row at step_time shows final."
    )
    reference = f"{_NAMING} (Step: offset, height, startTime)."
    parameters = (
        Param("initial", "any", "value before step_time", default=0.0),
        Param("final", "any", "value from step_time on", default=1.0),
        Param("step_time", "s", "time of the jump", default=0.0),
    )
    outputs = _Y
    feedthrough = False

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        p = self.p
        return {"y": float(p["final"] if t >= p["step_time"] else p["initial"])}

    def time_events(self, start: float, stop: float) -> list[float]:
        return _within([self.p["step_time"]], start, stop)


@register
class Ramp(Model):
    name = "Ramp"
    description = (
        "Ramp signal without end: y = initial + slope*max(0, t - start_time). The kink "
        "at start_time is a time event: the engine stops the integration there."
    )
    reference = f"{_NAMING} (Ramp, here without a duration: it rises for ever)."
    parameters = (
        Param("slope", "any/s", "rate of change of y after start_time (y's unit per second)",
              default=1.0),
        Param("start_time", "s", "time the ramp starts", default=0.0),
        Param("initial", "any", "value up to start_time", default=0.0),
    )
    outputs = _Y
    feedthrough = False

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        p = self.p
        return {"y": p["initial"] + p["slope"] * max(0.0, t - p["start_time"])}

    def time_events(self, start: float, stop: float) -> list[float]:
        return _within([self.p["start_time"]], start, stop)


@register
class Sine(Model):
    name = "Sine"
    description = "Sine wave: y = offset + amplitude*sin(2*pi*frequency*t + phase)."
    reference = f"{_NAMING} (Sine: amplitude, f, phase, offset; here without startTime)."
    parameters = (
        Param("amplitude", "any", "amplitude of the wave", default=1.0),
        Param("frequency", "Hz", "frequency of the wave", default=1.0,
              minimum=0.0, exclusive_minimum=True),
        Param("phase", "rad", "phase at t = 0", default=0.0),
        Param("offset", "any", "value the wave oscillates about", default=0.0),
    )
    outputs = _Y
    feedthrough = False

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        p = self.p
        angle = 2.0 * math.pi * p["frequency"] * t + p["phase"]
        return {"y": p["offset"] + p["amplitude"] * math.sin(angle)}

    def max_step(self) -> float | None:
        """A sixteenth of the period: steps over which the wave is nearly straight, so
        that a threshold it crosses is found (one within ~2 % of a peak may be missed)."""
        return 1.0 / (16.0 * float(self.p["frequency"]))


@register
class TableSource(Model):
    name = "TableSource"
    description = (
        "Signal given by a table of times t (strictly increasing) and values v: linear "
        "interpolation between breakpoints, or 'previous' (the value of the last breakpoint "
        "at or before t, a zero-order hold). Outside the table the end values are held "
        "('hold'), or the run fails ('error'). Every breakpoint is a time event: the "
        "engine stops the integration at each jump or kink, and the row at a jump "
        "shows the value from it on."
    )
    reference = (
        f"{_NAMING} (CombiTimeTable: Smoothness LinearSegments / ConstantSegments, "
        "Extrapolation HoldLastPoint / NoExtrapolation)."
    )
    parameters = (
        Param("t", "s", "breakpoint times, strictly increasing", type="vector"),
        Param("v", "any", "values at the breakpoints, as many as times", type="vector"),
        Param("interpolation", "1", "'linear' between breakpoints, or 'previous': the value "
              "of the last breakpoint at or before t", type="choice",
              choices=("linear", "previous"), default="linear"),
        Param("extrapolation", "1", "outside the table: 'hold' the first/last value, or "
              "'error' (a runtime error)", type="choice", choices=("hold", "error"),
              default="hold"),
    )
    outputs = _Y
    feedthrough = False

    def check(self, path: str) -> None:
        t, v = self.p["t"], self.p["v"]
        if len(v) != len(t):
            raise InvalidArgument(
                f"{self.name} parameter 'v' must have as many values as 't' ({len(t)}), "
                f"got {len(v)}",
                path=f"{path}.v",
            )
        for i in range(1, len(t)):
            if not t[i] > t[i - 1]:
                raise InvalidArgument(
                    f"{self.name} parameter 't' must be strictly increasing, but "
                    f"t[{i}] = {t[i]:g} follows t[{i - 1}] = {t[i - 1]:g}",
                    path=f"{path}.t",
                )
        self._t = np.asarray(t, dtype=float)
        self._v = np.asarray(v, dtype=float)

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        ts, vs = self._t, self._v
        if self.p["extrapolation"] == "error" and not ts[0] <= t <= ts[-1]:
            raise ModelRuntimeError(
                f"{self.name}: t = {t:g} s is outside the table [{ts[0]:g}, {ts[-1]:g}] s "
                "(extrapolation 'error')"
            )
        if self.p["interpolation"] == "linear":
            return {"y": float(np.interp(t, ts, vs))}
        i = int(np.searchsorted(ts, t, side="right")) - 1
        return {"y": float(vs[max(i, 0)])}

    def time_events(self, start: float, stop: float) -> list[float]:
        return _within(self._t.tolist(), start, stop)


def _within(times: list[float], start: float, stop: float) -> list[float]:
    """The ``times`` in (``start``, ``stop``]."""
    return [float(t) for t in times if start < t <= stop]
