"""The output times of a run, counted one way: start, start + step, …, stop, both ends.

When the span is not a whole number of steps, the last step is shorter (the grid
ends at ``time.stop`` exactly). A grid beyond counting (a step of 5e-324, a span of
2e308) counts as many rows as an int can say, so any limit refuses it.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

__all__ = ["whole_steps", "row_count", "tick_count", "output_times"]

_EPS = 1e-9
"""Relative tolerance of a step that lands on ``time.stop``."""


def _span(time: dict[str, Any]) -> tuple[float, float, float]:
    return float(time["start"]), float(time["stop"]), float(time["step"])


def whole_steps(time: dict[str, Any]) -> int:
    """Whole steps from ``time.start`` to ``time.stop``."""
    start, stop, step = _span(time)
    span = (stop - start) / step
    return math.floor(span + _EPS) if math.isfinite(span) else sys.maxsize


def row_count(time: dict[str, Any]) -> int:
    """Rows of a dynamic run: every whole step, both ends, and a last, shorter step."""
    start, stop, step = _span(time)
    n = whole_steps(time)
    return n + 1 + (1 if stop - (start + n * step) > _EPS * step else 0)


def tick_count(time: dict[str, Any]) -> int:
    """Ticks of a real-time run that has a ``time.stop`` (one per whole step, and t0)."""
    return whole_steps(time) + 1


def output_times(time: dict[str, Any]) -> np.ndarray:
    """The output times themselves (count them with :func:`row_count` first)."""
    start, stop, step = _span(time)
    grid = start + step * np.arange(whole_steps(time) + 1)
    if stop - grid[-1] > _EPS * step:
        grid = np.append(grid, stop)
    else:
        grid[-1] = stop
    return grid
