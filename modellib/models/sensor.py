"""First-order sensor lag."""

from __future__ import annotations

from collections.abc import Mapping

from ..base import Input, Model, Output, Param, State
from ..registry import register


@register
class FirstOrderLag(Model):
    name = "FirstOrderLag"
    description = (
        "First-order lag tau dy/dt = K u - y, the usual model of a sensor (thermocouple, "
        "filtered transducer) or of any process whose step response is a single exponential: "
        "after a step the output covers 63.2 % of the way to K u in one time constant. The "
        "output is the state, so the block has no direct feedthrough."
    )
    reference = (
        "K. Ogata, Modern Control Engineering, 5th ed., Prentice Hall 2010, sec. 5-3 "
        "(first-order systems: unit-step response 1 - exp(-t/T))."
    )
    parameters = (
        Param("time_constant", "s", "time constant tau", minimum=0.0, exclusive_minimum=True),
        Param("gain", "1", "steady-state gain K", default=1.0),
    )
    inputs = (Input("u", "1", "measured quantity (sensor input)"),)
    states = (State("y", "1", "lagged value (sensor reading)", default=0.0),)
    outputs = (Output("y", "1", "lagged value (sensor reading)"),)
    feedthrough = False

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        return {"y": float(x["y"])}

    def derivatives(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        p = self.p
        return {"y": float((p["gain"] * u["u"] - x["y"]) / p["time_constant"])}

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        return {**x0, "y": float(self.p["gain"] * u["u"])}
