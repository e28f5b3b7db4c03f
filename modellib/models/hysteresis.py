"""On/off controller with hysteresis, switched by events at two thresholds."""

from __future__ import annotations

from collections.abc import Mapping

from ..base import Discrete, Input, Model, Output, Param
from ..errors import InvalidArgument
from ..registry import register


@register
class HysteresisController(Model):
    name = "HysteresisController"
    description = (
        "On/off (bang-bang) controller with hysteresis between two thresholds low < high. "
        "With on_when = 'below' it switches on when the measurement falls to low and off "
        "when it rises to high (a pump filling a tank, a heater); with on_when = 'above' "
        "it switches on when the measurement rises to high and off when it falls to low "
        "(a cooler, a drain pump). Between the thresholds it keeps its state. The state "
        "'on' changes only at events: the single event function 'switch' is the distance "
        "of the measurement to the threshold that would end the current state, and "
        "on_event flips the state where it crosses zero. The output is on_value or "
        "off_value by state (feedthrough false). The initial state is the scenario's "
        "initial 'on' (default 0, off), corrected at t0 in every mode for the initial "
        "measurement (consistent_state): outside the band the thresholds decide (for "
        "on_when = 'below': on below low, off above high), inside it the given state "
        "stands."
    )
    reference = (
        "On-off control with hysteresis: K. J. Astrom and R. M. Murray, Feedback Systems, "
        "2nd ed., Princeton University Press 2021, ch. 1 (on-off control); threshold "
        "semantics as Modelica Standard Library 4.0, Modelica.Blocks.Logical.Hysteresis "
        "(uLow, uHigh) and OnOffController."
    )
    parameters = (
        Param("low", "any", "lower threshold (below it the measurement counts as low)"),
        Param("high", "any", "upper threshold, greater than low"),
        Param("on_value", "any", "output while on", default=1.0),
        Param("off_value", "any", "output while off", default=0.0),
        Param("on_when", "1", "'below': switch on when the measurement falls to low, off "
              "when it rises to high; 'above': on at high, off at low",
              type="choice", choices=("below", "above"), default="below"),
    )
    inputs = (Input("measurement", "any", "the measured value compared to the thresholds"),)
    outputs = (Output("output", "any", "on_value while on, off_value while off"),)
    discrete = (
        Discrete("on", "1", "1 while the controller is on, 0 while off", default=0.0,
                 minimum=0.0, maximum=1.0),
    )
    feedthrough = False

    def check(self, path: str) -> None:
        if not self.p["low"] < self.p["high"]:
            raise InvalidArgument(
                f"{self.name} parameter 'high' must be greater than low "
                f"({self.p['low']:g}), got {self.p['high']:g}",
                path=f"{path}.high",
            )

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        on = x["on"] >= 0.5
        return {"output": float(self.p["on_value"] if on else self.p["off_value"])}

    def _end_threshold(self, on: bool) -> float:
        """The threshold whose crossing ends the current state."""
        below = self.p["on_when"] == "below"
        return float(self.p["high"] if on == below else self.p["low"])

    def event_functions(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        return {"switch": float(u["measurement"]) - self._end_threshold(x["on"] >= 0.5)}

    def on_event(
        self, name: str, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        if name != "switch":
            return {}
        return {"on": 0.0 if x["on"] >= 0.5 else 1.0}

    def consistent_state(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        """``x`` with 'on' corrected for the measurement in ``u``.

        Outside the band the state is what the thresholds say (for on_when = 'below':
        on below low, off above high); inside [low, high] the given state is kept.
        """
        m = float(u["measurement"])
        on = x.get("on", 0.0) >= 0.5
        below = self.p["on_when"] == "below"
        if m < self.p["low"]:
            on = below
        elif m > self.p["high"]:
            on = not below
        return {**x, "on": 1.0 if on else 0.0}

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        """The initial state, corrected by :meth:`consistent_state` for the inputs."""
        return self.consistent_state(t, u, x0)
