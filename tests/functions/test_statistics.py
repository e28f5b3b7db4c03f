"""Statistics functions against numpy / scipy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from modellib.functions import call_function

X = [3.0, -1.5, 4.0, 1.0, 5.5, 9.0, 2.0, 6.5]


def test_mean_min_max_against_numpy() -> None:
    assert call_function("mean", {"x": X}) == pytest.approx(np.mean(X), rel=1e-15)
    assert call_function("min", {"x": X}) == -1.5
    assert call_function("max", {"x": X}) == 9.0


def test_a_single_number_is_a_series_of_one() -> None:
    assert call_function("mean", {"x": 7}) == 7.0
    assert call_function("max", {"x": [7]}) == 7.0
    assert call_function("rms", {"x": -2}) == 2.0
    assert isinstance(call_function("mean", {"x": [1, 2]}), float)  # plain Python, not numpy


@pytest.mark.parametrize("ddof", [0, 1, 3])
def test_std_against_numpy(ddof: int) -> None:
    assert call_function("std", {"x": X, "ddof": ddof}) == pytest.approx(
        np.std(X, ddof=ddof), rel=1e-14)


def test_std_defaults_to_the_population_and_is_hand_checked() -> None:
    # 2, 4, 4, 4, 5, 5, 7, 9: mean 5, population variance 32/8 = 4 -> std 2
    assert call_function("std", {"x": [2, 4, 4, 4, 5, 5, 7, 9]}) == 2.0


def test_percentile_one_and_many_against_numpy() -> None:
    assert call_function("percentile", {"x": X, "q": 50}) == pytest.approx(np.median(X))
    got = call_function("percentile", {"x": X, "q": [0, 10, 90, 100]})
    assert got == pytest.approx(np.percentile(X, [0, 10, 90, 100]).tolist(), rel=1e-14)
    assert isinstance(got, list)
    lower = call_function("percentile", {"x": X, "q": 37.5, "method": "lower"})
    assert lower == np.percentile(X, 37.5, method="lower")


def test_rms_hand_computed_and_without_overflow() -> None:
    # 3, 4: sqrt((9 + 16) / 2) = sqrt(12.5)
    assert call_function("rms", {"x": [3, -4]}) == pytest.approx(12.5**0.5, rel=1e-15)
    assert call_function("rms", {"x": [0, 0]}) == 0.0
    # the squares would overflow: the function scales first
    assert call_function("rms", {"x": [1e200, -1e200]}) == pytest.approx(1e200)


def test_linear_trend_exact_line_and_against_scipy() -> None:
    t = [0.0, 1.0, 2.0, 5.0]
    line = call_function("linear_trend", {"t": t, "x": [2 * v + 1 for v in t]})
    assert line == {"slope": pytest.approx(2.0), "intercept": pytest.approx(1.0),
                    "r2": pytest.approx(1.0)}
    tt = np.arange(len(X), dtype=float)
    ref = stats.linregress(tt, X)
    got = call_function("linear_trend", {"t": tt.tolist(), "x": X})
    assert got["slope"] == pytest.approx(ref.slope, rel=1e-12)
    assert got["intercept"] == pytest.approx(ref.intercept, rel=1e-12)
    assert got["r2"] == pytest.approx(ref.rvalue**2, rel=1e-12)
    flat = call_function("linear_trend", {"t": [0, 1, 2], "x": [4, 4, 4]})
    assert flat == {"slope": 0.0, "intercept": 4.0, "r2": 1.0}


def _naive_hampel(x: list[float], k: int, threshold: float) -> list[int]:
    """The Hampel filter written out point by point (window cut short at the ends)."""
    out = []
    for i in range(len(x)):
        window = x[max(0, i - k):i + k + 1]
        med = float(np.median(window))
        mad = float(np.median([abs(v - med) for v in window]))
        if abs(x[i] - med) > threshold * 1.4826022185056018 * mad:
            out.append(i)
    return out


def test_remove_outliers_hampel_default() -> None:
    x = [1.0, 1.1, 0.9, 1.0, 25.0, 1.05, 0.95, 1.0, 1.02, -30.0, 0.98, 1.0]
    t = [float(i) for i in range(len(x))]
    got = call_function("remove_outliers", {"x": x, "t": t})
    assert got["removed"] == [4, 9] == _naive_hampel(x, 3, 3.0)
    assert got["x"] == [v for i, v in enumerate(x) if i not in (4, 9)]
    assert got["t"] == [v for i, v in enumerate(t) if i not in (4, 9)]


def test_remove_outliers_hampel_matches_the_naive_filter_on_noise() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=200)
    x[[5, 60, 61, 150, 199]] += [9, -12, 10, 8, 15]
    got = call_function("remove_outliers", {"x": x.tolist(), "half_window": 5,
                                            "threshold": 2.5})
    assert got["removed"] == _naive_hampel(x.tolist(), 5, 2.5)
    assert {5, 60, 150, 199} <= set(got["removed"])
    assert "t" not in got


def test_remove_outliers_zscore() -> None:
    # twenty zeros and one 100: mean 100/21, population std 100*sqrt(20)/21, so the
    # spike is (2000/21) / (100*sqrt(20)/21) = sqrt(20) = 4.47 standard deviations out
    # (Samuelson's bound sqrt(n - 1)); the zeros 1/sqrt(20) = 0.22
    x = [0.0] * 10 + [100.0] + [0.0] * 10
    got = call_function("remove_outliers", {"x": x, "method": "zscore"})
    assert got == {"x": [0.0] * 20, "removed": [10]}
    assert call_function("remove_outliers", {"x": x, "method": "zscore",
                                             "threshold": 4.47})["removed"] == [10]
    assert call_function("remove_outliers", {"x": x, "method": "zscore",
                                             "threshold": 4.48})["removed"] == []
    assert call_function("remove_outliers", {"x": [5, 5, 5], "method": "zscore"})[
        "removed"] == []
