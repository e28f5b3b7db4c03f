"""Signal functions against numpy / scipy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from modellib.functions import call_function

X = [3.0, -1.5, 4.0, 1.0, 5.5, 9.0, 2.0, 6.5]


@pytest.mark.parametrize("window", [1, 3, 8])
def test_moving_average_against_numpy_convolve(window: int) -> None:
    got = call_function("moving_average", {"x": X, "window": window})
    ref = np.convolve(X, np.ones(window) / window, mode="valid")
    assert len(got) == len(X) - window + 1
    assert got == pytest.approx(ref.tolist(), rel=1e-14)


def test_exponential_smoothing_against_the_recursion() -> None:
    alpha = 0.3
    ref = [X[0]]
    for v in X[1:]:
        ref.append(alpha * v + (1 - alpha) * ref[-1])
    got = call_function("exponential_smoothing", {"x": X, "alpha": alpha})
    assert got == pytest.approx(ref, rel=1e-13)
    assert call_function("exponential_smoothing", {"x": X, "alpha": 1}) == pytest.approx(X)
    # a constant series stays constant
    assert call_function("exponential_smoothing", {"x": [2, 2, 2], "alpha": 0.1}) == \
        pytest.approx([2, 2, 2])


def test_resample_onto_a_fixed_step() -> None:
    got = call_function("resample", {"t": [0, 1, 2.5], "x": [0, 1, 4], "step": 0.5})
    # between 1 and 2.5 the slope is 2
    assert got == {"t": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5], "x": [0.0, 0.5, 1.0, 2.0, 3.0, 4.0]}
    # the grid stops at or before the last time
    got = call_function("resample", {"t": [10, 11], "x": [0, 10], "step": 0.4})
    assert got["t"] == pytest.approx([10.0, 10.4, 10.8])
    assert got["x"] == pytest.approx([0.0, 4.0, 8.0])
    # a step that divides the span only up to rounding still reaches the end
    got = call_function("resample", {"t": [0, 0.3], "x": [0, 3], "step": 0.1})
    assert got["t"] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert got["t"][-1] <= 0.3


def test_interpolate_one_and_many_against_numpy() -> None:
    t, x = [0.0, 1.0, 3.0], [10.0, 20.0, 0.0]
    assert call_function("interpolate", {"t": t, "x": x, "at": 0.25}) == 12.5
    got = call_function("interpolate", {"t": t, "x": x, "at": [3, 2, 0]})
    assert got == np.interp([3, 2, 0], t, x).tolist() == [0.0, 10.0, 10.0]


def test_deadband_keeps_changes_larger_than_the_band() -> None:
    t = [0, 1, 2, 3, 4, 5, 6]
    x = [0.0, 0.4, 0.6, 1.5, 1.2, 1.0, 1.1]
    got = call_function("deadband", {"t": t, "x": x, "band": 0.5})
    # kept: 0 (first); 0.6 (|0.6-0| > 0.5); 1.5 (0.9); 1.2 no (0.3); 1.0 no (0.5 is not
    # more than 0.5); 1.1 (last, always)
    assert got == {"t": [0.0, 2.0, 3.0, 6.0], "x": [0.0, 0.6, 1.5, 1.1]}
    # band 0 keeps every change; a single point is first and last at once
    assert call_function("deadband", {"t": [0, 1, 2], "x": [1, 1, 2], "band": 0})["t"] == \
        [0.0, 2.0]
    assert call_function("deadband", {"t": [5], "x": [3], "band": 1}) == {"t": [5.0],
                                                                         "x": [3.0]}
