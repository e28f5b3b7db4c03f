"""Signal processing of a series: smoothing, resampling, interpolation, compression."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from .base import MAX_POINTS, Function, Integer, Number, Numbers, Returns, Series
from .registry import register

T_DESC = "the times of the values, strictly increasing"


@register
class MovingAverage(Function):
    name = "moving_average"
    description = (
        "Trailing moving average over window samples. Only full windows are averaged, "
        "so the result has n - window + 1 values: value i is the mean of x[i] to "
        "x[i + window - 1] and belongs to the time of x[i + window - 1]."
    )
    reference = "numpy.convolve(x, ones(window) / window, 'valid')"
    arguments = (
        Series("x", "any", "the values"),
        Integer("window", "1", "how many samples each average takes", minimum=1),
    )
    returns = Returns("same as x", "the averages, n - window + 1 of them")

    @classmethod
    def check(cls, args: dict[str, Any], path: str) -> None:
        n = args["x"].size
        if args["window"] > n:
            raise cls.invalid("window", f"is longer than x ({n} values): use at most {n}, "
                              f"got {args['window']}", path)

    def run(self, x: np.ndarray, window: int) -> np.ndarray:
        result: np.ndarray = sliding_window_view(x, window).mean(axis=1)
        return result


@register
class ExponentialSmoothing(Function):
    name = "exponential_smoothing"
    description = (
        "Simple exponential smoothing s[0] = x[0], s[i] = alpha*x[i] + (1 - alpha)*s[i-1]: "
        "alpha 1 keeps the series, smaller alpha smooths more. Same length as x."
    )
    reference = "Brown's simple exponential smoothing (NIST/SEMATECH e-Handbook, 6.4.3.1)"
    arguments = (
        Series("x", "any", "the values, equally spaced"),
        Number("alpha", "1", "smoothing factor, 0 < alpha <= 1", minimum=0.0,
               exclusive_minimum=True, maximum=1.0),
    )
    returns = Returns("same as x", "the smoothed series, as long as x")

    def run(self, x: np.ndarray, alpha: float) -> np.ndarray:
        # s[i] - (1 - alpha) s[i-1] = alpha x[i], started so that s[0] = x[0]
        smoothed, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * x[0]])
        result: np.ndarray = smoothed
        return result


@register
class Resample(Function):
    name = "resample"
    description = (
        "Linear interpolation onto a fixed step: times t[0], t[0] + step, ... up to "
        f"t[-1] (at most {MAX_POINTS} points)."
    )
    reference = "numpy.interp"
    arguments = (
        Series("t", "s", T_DESC, min_length=2, increasing=True),
        Series("x", "any", "the values at those times", min_length=2),
        Number("step", "s", "the new time step", minimum=0.0,
               exclusive_minimum=True),
    )
    aligned = ("t", "x")
    returns = Returns("t: same as t; x: same as x", "{'t': the new times, 'x': the values}")

    @classmethod
    def check(cls, args: dict[str, Any], path: str) -> None:
        span = float(args["t"][-1] - args["t"][0])
        count = span / args["step"] + 1
        if not math.isfinite(count) or count > MAX_POINTS:
            raise cls.invalid(
                "step",
                f"would give {count:.3g} points over t ({span:g} s), more than {MAX_POINTS}: "
                f"use a step of at least {span / (MAX_POINTS - 1):.3g}, got {args['step']:g}",
                path,
            )

    def run(self, t: np.ndarray, x: np.ndarray, step: float) -> dict[str, np.ndarray]:
        # a tiny tolerance so that rounding does not lose the last point of an exact grid
        count = math.floor(float(t[-1] - t[0]) / step * (1 + 1e-12) + 1e-9) + 1
        grid = np.minimum(t[0] + step * np.arange(count), t[-1])
        return {"t": grid, "x": np.interp(grid, t, x)}


@register
class Interpolate(Function):
    name = "interpolate"
    description = (
        "Values of a series at given times, by linear interpolation between the "
        "neighbouring samples. Times outside t are refused: no extrapolation."
    )
    reference = "numpy.interp"
    arguments = (
        Series("t", "s", T_DESC, min_length=2, increasing=True),
        Series("x", "any", "the values at those times", min_length=2),
        Numbers("at", "s", "the times wanted, within t: one number or a list"),
    )
    aligned = ("t", "x")
    returns = Returns("same as x", "one number for one time, a list (in the order of at) "
                      "for a list")

    @classmethod
    def check(cls, args: dict[str, Any], path: str) -> None:
        t, at = args["t"], np.atleast_1d(args["at"])
        outside = np.flatnonzero((at < t[0]) | (at > t[-1]))
        if outside.size:
            value = float(at[outside[0]])
            raise cls.invalid("at", f"must lie within t ({t[0]:g} to {t[-1]:g}): "
                              f"interpolate does not extrapolate, got {value:g}", path)

    def run(self, t: np.ndarray, x: np.ndarray, at: float | np.ndarray) -> Any:
        return np.interp(at, t, x)


@register
class Deadband(Function):
    name = "deadband"
    description = (
        "Deadband compression, to send fewer points: a point is kept when it differs from "
        "the last kept value by more than band; the first and the last point are always "
        "kept."
    )
    reference = "deadband (exception) reporting as in process historians"
    arguments = (
        Series("t", "s", T_DESC, increasing=True),
        Series("x", "any", "the values at those times"),
        Number("band", "same as x", "the change that must be exceeded for a point to be "
               "kept", minimum=0.0),
    )
    aligned = ("t", "x")
    returns = Returns("t: same as t; x: same as x", "{'t': the kept times, 'x': the kept "
                      "values}")

    def run(self, t: np.ndarray, x: np.ndarray, band: float) -> dict[str, np.ndarray]:
        values = x.tolist()
        kept = [0]
        last = values[0]
        for i in range(1, len(values) - 1):
            if abs(values[i] - last) > band:
                kept.append(i)
                last = values[i]
        if len(values) > 1:
            kept.append(len(values) - 1)
        return {"t": t[kept], "x": x[kept]}
