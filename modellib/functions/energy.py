"""Energy from power, and efficiency."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.integrate import trapezoid

from ..errors import ModelRuntimeError
from .base import Function, Returns, Series
from .registry import register


@register
class Integrate(Function):
    name = "integrate"
    description = (
        "Integral of x over t by the trapezoidal rule (exact for a piecewise linear "
        "series), such as energy from power: W over s gives J."
    )
    reference = "trapezoidal rule, as scipy.integrate.trapezoid"
    arguments = (
        Series("t", "s", "the times of the values, strictly increasing", min_length=2,
               increasing=True),
        Series("x", "any", "the values to integrate, a rate such as power in W",
               min_length=2),
    )
    aligned = ("t", "x")
    returns = Returns("unit of x times s (W -> J)", "the integral")

    def run(self, t: np.ndarray, x: np.ndarray) -> float:
        return float(trapezoid(x, t))


@register
class Efficiency(Function):
    name = "efficiency"
    description = (
        "Efficiency: sum(output) / sum(input), or with t the ratio of their integrals "
        "over t (trapezoidal rule), the energy efficiency from power series. "
        "Not clipped to 0..1: values above 1 point at a measurement problem."
    )
    reference = "energy efficiency = useful energy out / energy in (ISO 50001 vocabulary)"
    arguments = (
        Series("output", "any", "the useful output, power or energy, in the unit of input",
               scalar=True),
        Series("input", "any", "the input, power or energy, in the unit of output",
               scalar=True),
        Series("t", "s", "times of the samples: integrate both over t instead of summing",
               optional=True, min_length=2, increasing=True),
    )
    aligned = ("output", "input", "t")
    returns = Returns("1", "the ratio output / input")

    def run(self, output: np.ndarray, input: np.ndarray, t: np.ndarray | None) -> Any:  # noqa: A002
        if t is None:
            out, into, how = float(np.sum(output)), float(np.sum(input)), "sums to"
        else:
            out, into = float(trapezoid(output, t)), float(trapezoid(input, t))
            how = "integrates to"
        if into == 0.0:
            raise ModelRuntimeError(
                f"efficiency is undefined: the input {how} 0 (output {how} {out:g})")
        return out / into
