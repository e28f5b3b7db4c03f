"""Statistics of a series: mean, extremes, spread, percentiles, trend and outliers."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Choice, Function, Integer, Number, Numbers, Returns, Series
from .registry import register

X_ANY = "the values"
PERCENTILE_METHODS = ("linear", "lower", "higher", "nearest", "midpoint")
MAD_TO_SIGMA = 1.4826022185056018
"""1 / Phi^-1(3/4): scales the median absolute deviation to a normal standard deviation."""


@register
class Mean(Function):
    name = "mean"
    description = "Arithmetic mean of a series."
    arguments = (Series("x", "any", X_ANY, scalar=True),)
    returns = Returns("same as x", "the mean sum(x)/n")

    def run(self, x: np.ndarray) -> float:
        return float(np.mean(x))


@register
class Min(Function):
    name = "min"
    description = "Smallest value of a series."
    arguments = (Series("x", "any", X_ANY, scalar=True),)
    returns = Returns("same as x", "the smallest value")

    def run(self, x: np.ndarray) -> float:
        return float(np.min(x))


@register
class Max(Function):
    name = "max"
    description = "Largest value of a series."
    arguments = (Series("x", "any", X_ANY, scalar=True),)
    returns = Returns("same as x", "the largest value")

    def run(self, x: np.ndarray) -> float:
        return float(np.max(x))


@register
class Std(Function):
    name = "std"
    description = (
        "Standard deviation sqrt(sum((x - mean)^2) / (n - ddof)): ddof 0 for the "
        "population (the default, as numpy), 1 for the sample estimate."
    )
    reference = "numpy.std"
    arguments = (
        Series("x", "any", X_ANY, scalar=True),
        Integer("ddof", "1", "delta degrees of freedom: the divisor is n - ddof",
                default=0, minimum=0),
    )
    returns = Returns("same as x", "the standard deviation")

    @classmethod
    def check(cls, args: dict[str, Any], path: str) -> None:
        n = args["x"].size
        if args["ddof"] >= n:
            raise cls.invalid("ddof", f"must be less than the number of values in x ({n}), "
                              f"got {args['ddof']}", path)

    def run(self, x: np.ndarray, ddof: int) -> float:
        return float(np.std(x, ddof=ddof))


@register
class Percentile(Function):
    name = "percentile"
    description = (
        "Percentile(s) q of a series, interpolating between the sorted values "
        "(method 'linear' is numpy's default and Hyndman & Fan type 7)."
    )
    reference = "numpy.percentile; Hyndman & Fan, Am. Stat. 50(4), 1996"
    arguments = (
        Series("x", "any", X_ANY, scalar=True),
        Numbers("q", "%", "the percentiles to compute, 0 to 100: one number or a list",
                minimum=0.0, maximum=100.0),
        Choice("method", "how to pick a value between two sorted values",
               PERCENTILE_METHODS, default="linear"),
    )
    returns = Returns("same as x", "one number for one q, a list (in the order of q) for a list")

    def run(self, x: np.ndarray, q: float | np.ndarray, method: str) -> Any:
        return np.percentile(x, q, method=method)  # type: ignore[call-overload]


@register
class Rms(Function):
    name = "rms"
    description = "Root mean square sqrt(mean(x^2)) of a series."
    arguments = (Series("x", "any", X_ANY, scalar=True),)
    returns = Returns("same as x", "the root mean square")

    def run(self, x: np.ndarray) -> float:
        scale = float(np.max(np.abs(x)))
        if scale == 0.0:
            return 0.0
        # scaled so that squaring cannot overflow
        return scale * float(np.sqrt(np.mean(np.square(x / scale))))


@register
class LinearTrend(Function):
    name = "linear_trend"
    description = (
        "Least-squares straight line x = slope*t + intercept through the series, with "
        "the coefficient of determination r2 (1 for a perfect fit; 1 also for a "
        "constant series, which the flat line fits exactly)."
    )
    reference = "ordinary least squares, as scipy.stats.linregress"
    arguments = (
        Series("t", "s", "the times, or any increasing abscissa", min_length=2,
               increasing=True),
        Series("x", "any", "the values at those times", min_length=2),
    )
    aligned = ("t", "x")
    returns = Returns("slope: x per unit of t; intercept: same as x; r2: 1",
                      "{'slope', 'intercept', 'r2'}")

    def run(self, t: np.ndarray, x: np.ndarray) -> dict[str, float]:
        t_mean, x_mean = float(np.mean(t)), float(np.mean(x))
        dt, dx = t - t_mean, x - x_mean
        slope = float(np.sum(dt * dx) / np.sum(dt * dt))
        intercept = x_mean - slope * t_mean
        ss_tot = float(np.sum(dx * dx))
        ss_res = float(np.sum(np.square(dx - slope * dt)))
        r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
        return {"slope": slope, "intercept": intercept, "r2": r2}


@register
class RemoveOutliers(Function):
    name = "remove_outliers"
    description = (
        "Drop outliers from a series. method 'hampel' (the default): a point is an "
        "outlier when it is more than threshold scaled MADs (1.4826 * median absolute "
        "deviation) from the median of the half_window points each side of it (the "
        "window is cut short at the ends); robust to the outliers themselves. method "
        "'zscore': more than threshold standard deviations (ddof 0) from the mean of the "
        "whole series; note that no point of n lies more than sqrt(n - 1) standard "
        "deviations from their mean (Samuelson's inequality), so a series of at most "
        "threshold^2 + 1 points (10 for threshold 3) keeps every point."
    )
    reference = (
        "Hampel filter: Hampel, J. Am. Stat. Assoc. 69(346), 1974; Pearson et al., "
        "EURASIP J. Adv. Signal Process. 2016:87"
    )
    arguments = (
        Series("x", "any", "the values"),
        Series("t", "s", "the times of the values, dropped together with them",
               optional=True, increasing=True),
        Choice("method", "hampel: moving median and MAD; zscore: mean and standard "
               "deviation of the whole series", ("hampel", "zscore"), default="hampel"),
        Number("threshold", "1", "how many scaled MADs or standard deviations away "
               "makes an outlier", default=3.0, minimum=0.0, exclusive_minimum=True),
        Integer("half_window", "1", "hampel only: samples each side of a point in its "
                "window, which is 2*half_window + 1 long", default=3, minimum=1),
    )
    aligned = ("x", "t")
    returns = Returns(
        "x: same as x; t: same as t; removed: 1",
        "{'x': the kept values, 't': their times (only when t was given), "
        "'removed': the indices (0-based) of the dropped values}",
    )

    def run(self, x: np.ndarray, t: np.ndarray | None, method: str, threshold: float,
            half_window: int) -> dict[str, Any]:
        if method == "hampel":
            outlier = hampel_outliers(x, half_window, threshold)
        else:
            outlier = zscore_outliers(x, threshold)
        out: dict[str, Any] = {"x": x[~outlier]}
        if t is not None:
            out["t"] = t[~outlier]
        out["removed"] = [int(i) for i in np.flatnonzero(outlier)]
        return out


def hampel_outliers(x: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """A mask of the points farther than ``threshold`` scaled MADs from their window's median."""
    n = x.size
    median = np.empty(n)
    mad = np.empty(n)
    if n >= 2 * k + 1:
        windows = sliding_window_view(x, 2 * k + 1)
        m = np.median(windows, axis=1)
        median[k:n - k] = m
        mad[k:n - k] = np.median(np.abs(windows - m[:, None]), axis=1)
        edges: list[int] = [*range(k), *range(n - k, n)]
    else:
        edges = list(range(n))
    for i in edges:
        window = x[max(0, i - k):min(n, i + k + 1)]
        median[i] = np.median(window)
        mad[i] = np.median(np.abs(window - median[i]))
    result: np.ndarray = np.abs(x - median) > threshold * MAD_TO_SIGMA * mad
    return result


def zscore_outliers(x: np.ndarray, threshold: float) -> np.ndarray:
    """A mask of the points farther than ``threshold`` standard deviations from the mean."""
    std = float(np.std(x))
    if std == 0.0:
        return np.zeros(x.size, dtype=bool)
    result: np.ndarray = np.abs(x - np.mean(x)) > threshold * std
    return result
