"""Control valve for liquids, sized by its flow coefficient Kv (IEC 60534-2-1)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..base import Input, Model, Output, Param
from ..registry import register

__all__ = ["Valve", "DP_REF", "DENSITY_REF"]

DP_REF = 1.0e5
"""Pressure drop at which Kv is defined, Pa (1 bar)."""
DENSITY_REF = 1000.0
"""Density of the reference water of IEC 60534, kg/m3 (rho_0)."""


@register
class Valve(Model):
    """Non-choked turbulent liquid flow through a control valve.

    IEC 60534-2-1, incompressible non-choked turbulent flow, with N1 = 1 for Kv
    in m3/h and dp in bar and the piping geometry factor Fp = 1::

        Q [m3/h] = Kv * f(opening) * sqrt((|dp| / 1 bar) / (rho / 1000 kg/m3))
        flow [m3/s] = sign(dp) * Q / 3600

    Inherent characteristic f (IEC 60534-2-4): linear ``f = opening``; equal
    percentage ``f = R**(opening - 1)`` with R the rangeability. The ideal equal
    percentage curve does not close: at opening 0 it still passes Kvs/R (the
    lower end of the controllable range, as the standard defines it) — a tight
    shut-off is not modelled. The opening is clamped to [0, 1] (the valve's
    stops). Choked flow (cavitation, flashing) and the reducer factor Fp are not
    modelled: valid while dp stays below the choked pressure drop.
    """

    name = "Valve"
    description = (
        "Control valve for a liquid, characterised by its flow coefficient Kvs (m3/h of "
        "water at 1 bar pressure drop, fully open) and an inherent linear or "
        "equal-percentage characteristic: the volume flow follows Q = Kv*f(opening)*"
        "sqrt(dp/(rho/rho_water)) for non-choked turbulent flow, and reverses with the "
        "pressure drop."
    )
    reference = (
        "IEC 60534-2-1:2011 (harmonised with ANSI/ISA-75.01.01-2012), Industrial-process "
        "control valves - Flow capacity - Sizing equations for fluid flow under installed "
        "conditions: incompressible fluids, non-choked turbulent flow, N1 = 1 for Kv in m3/h "
        "and dp in bar; inherent characteristics: IEC 60534-2-4:2009."
    )
    parameters = (
        Param("kv", "m3/h", "flow coefficient Kvs at full opening: m3/h of water at 1 bar "
              "pressure drop", minimum=0.0, exclusive_minimum=True),
        Param("characteristic", "1", "inherent flow characteristic",
              type="choice", choices=("linear", "equal_percentage"), default="linear"),
        Param("rangeability", "1", "rangeability R of the equal-percentage characteristic, "
              "f = R^(opening-1)", default=50.0, minimum=1.0, exclusive_minimum=True),
        Param("density", "kg/m3", "density of the liquid", default=998.0,
              minimum=0.0, exclusive_minimum=True),
    )
    inputs = (
        Input("opening", "1", "valve travel, 0 closed to 1 fully open (clamped to 0..1)",
              minimum=0.0, maximum=1.0),
        Input("dp", "Pa", "pressure drop across the valve, inlet minus outlet"),
    )
    outputs = (
        Output("flow", "m3/s", "volume flow through the valve, in the direction of dp"),
    )

    def relative_kv(self, opening: float) -> float:
        """Kv/Kvs at ``opening`` (clamped to 0..1) from the inherent characteristic."""
        h = min(max(float(opening), 0.0), 1.0)
        if self.p["characteristic"] == "equal_percentage":
            return float(self.p["rangeability"] ** (h - 1.0))
        return h

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        dp = float(u["dp"])
        kv = self.p["kv"] * self.relative_kv(u["opening"])
        q_m3h = kv * math.sqrt((abs(dp) / DP_REF) / (self.p["density"] / DENSITY_REF))
        return {"flow": math.copysign(q_m3h / 3600.0, dp)}
