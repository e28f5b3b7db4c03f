"""Centrifugal pump: quadratic head curve scaled by the affinity laws."""

from __future__ import annotations

from collections.abc import Mapping

from ..base import G, Input, Model, Output, Param
from ..registry import register


@register
class CentrifugalPump(Model):
    name = "CentrifugalPump"
    description = (
        "Centrifugal pump with a quadratic head curve H = H0*(n/n_rated)^2 - k*Q^2 "
        "(affinity laws) and a constant hydraulic efficiency."
    )
    reference = (
        "Affinity laws and hydraulic power P = rho*g*Q*H/eta: Karassik et al., "
        "Pump Handbook, 4th ed., McGraw-Hill 2008, ch. 2."
    )
    parameters = (
        Param("rated_speed", "rpm", "speed at which the shut-off head is given",
              minimum=0.0, exclusive_minimum=True),
        Param("shutoff_head", "m", "head H0 at zero flow and rated speed",
              minimum=0.0, exclusive_minimum=True),
        Param("curve_coefficient", "s2/m5", "k in H = H0*(n/n_rated)^2 - k*Q^2", minimum=0.0),
        Param("efficiency", "1", "hydraulic efficiency", minimum=0.0, maximum=1.0,
              exclusive_minimum=True),
        Param("density", "kg/m3", "density of the liquid", default=998.0,
              minimum=0.0, exclusive_minimum=True),
    )
    inputs = (
        Input("speed", "rpm", "shaft speed"),
        Input("flow", "m3/s", "volume flow through the pump"),
    )
    outputs = (
        Output("head", "m", "head added to the liquid"),
        Output("power", "W", "shaft power rho*g*Q*H/eta"),
    )

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        p = self.p
        ratio = u["speed"] / p["rated_speed"]
        flow = u["flow"]
        head = p["shutoff_head"] * ratio * ratio - p["curve_coefficient"] * flow * flow
        power = p["density"] * G * flow * head / p["efficiency"]
        return {"head": head, "power": power}
