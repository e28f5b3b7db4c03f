"""Energy from power and efficiency, against the trapezoidal rule and hand values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import trapezoid

from modellib.functions import call_function


def test_integrate_is_exact_for_a_linear_series() -> None:
    # the trapezoidal rule is exact for a piecewise-linear integrand:
    # P = 100 + 10 t W over 0..10 s -> 1000 + 500 = 1500 J
    t = [0.0, 2.0, 3.0, 7.5, 10.0]
    assert call_function("integrate", {"t": t, "x": [100 + 10 * v for v in t]}) == \
        pytest.approx(1500.0, rel=1e-15)


def test_integrate_against_scipy_on_a_curve() -> None:
    t = np.linspace(0, np.pi, 101)
    x = np.sin(t)
    got = call_function("integrate", {"t": t.tolist(), "x": x.tolist()})
    assert got == pytest.approx(float(trapezoid(x, t)), rel=1e-14)
    assert got == pytest.approx(2.0, rel=2e-4)  # the exact integral of sin over 0..pi


def test_efficiency_ratio_of_sums_and_of_integrals() -> None:
    assert call_function("efficiency", {"output": [8, 9], "input": [10, 10]}) == 0.85
    assert call_function("efficiency", {"output": 72, "input": 80}) == 0.9
    # with t: integrals; out 0..2 s: (0 + 2)/2*2 = 2 J, in: 4 J constant power 2 W
    got = call_function("efficiency", {"output": [0, 1, 2], "input": [2, 2, 2],
                                       "t": [0, 1, 2]})
    assert got == pytest.approx(0.5)
    # uneven steps: a plain ratio of sums would differ from the energy ratio
    t = [0.0, 1.0, 10.0]
    got = call_function("efficiency", {"output": [1, 1, 9], "input": [10, 10, 10], "t": t})
    assert got == pytest.approx(trapezoid([1, 1, 9], t) / trapezoid([10, 10, 10], t))
