"""Two-stream heat exchanger rated by the effectiveness-NTU method (steady state)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..base import Input, Model, Output, Param
from ..errors import ModelRuntimeError
from ..registry import register

__all__ = ["HeatExchanger", "effectiveness"]


def effectiveness(ntu: float, cr: float, arrangement: str) -> float:
    """Effectiveness of a counter- or parallel-flow exchanger (0 <= cr <= 1, ntu >= 0).

    Counter flow: ``(1 - exp(-NTU(1-Cr))) / (1 - Cr exp(-NTU(1-Cr)))``, and
    ``NTU/(1+NTU)`` at Cr = 1; parallel flow: ``(1 - exp(-NTU(1+Cr))) / (1+Cr)``.
    Written with ``expm1`` so that Cr close to 1 loses no digits.
    """
    if math.isinf(ntu):
        return 1.0 if arrangement == "counter" or cr == 0.0 else 1.0 / (1.0 + cr)
    if arrangement == "parallel":
        return -math.expm1(-ntu * (1.0 + cr)) / (1.0 + cr)
    if cr >= 1.0:
        return ntu / (1.0 + ntu)
    # 1 - Cr e^-a = (1 - Cr) + Cr (1 - e^-a): a sum of non-negative terms
    transferred = -math.expm1(-ntu * (1.0 - cr))
    return transferred / ((1.0 - cr) + cr * transferred)


@register
class HeatExchanger(Model):
    """Outlet temperatures of a counter- or parallel-flow heat exchanger.

    With C = m_dot * cp of each stream, C_min/C_max = Cr, NTU = UA/C_min::

        q         = eps(NTU, Cr) * C_min * (T_hot_in - T_cold_in)
        T_hot_out = T_hot_in - q / C_hot,   T_cold_out = T_cold_in + q / C_cold

    Constant cp, no heat loss to the surroundings, steady state (no states). A
    cold inlet hotter than the hot inlet simply gives a negative heat rate.

    Zero flows, as the limits of the formulas: a stream with no flow (C = 0,
    hence NTU -> infinity, Cr = 0, eps = 1) leaves at the inlet temperature of
    the other stream while the other stream is unchanged and q = 0; with both
    flows zero nothing is transferred: outlets = inlets, q = 0, effectiveness 0.
    Negative mass flows (reverse flow) are refused with a runtime error.
    """

    name = "HeatExchanger"
    description = (
        "Two-stream heat exchanger in counter-flow or parallel-flow arrangement with a given "
        "overall conductance UA, rated by the effectiveness-NTU method: from the inlet "
        "temperatures and mass flows of the hot and the cold stream it computes the "
        "effectiveness, the heat rate from hot to cold and both outlet temperatures at "
        "steady state, with constant specific heats and no losses to the surroundings."
    )
    reference = (
        "Effectiveness-NTU relations for parallel and counter flow (Table 11.3): F. P. "
        "Incropera, D. P. DeWitt, T. L. Bergman, A. S. Lavine, Fundamentals of Heat and Mass "
        "Transfer, 6th ed., Wiley 2007, sec. 11.4."
    )
    parameters = (
        Param("ua", "W/K", "overall heat transfer coefficient times area, UA",
              minimum=0.0, exclusive_minimum=True),
        Param("arrangement", "1", "flow arrangement of the two streams",
              type="choice", choices=("counter", "parallel"), default="counter"),
        Param("cp_hot", "J/kg.K", "specific heat of the hot stream", default=4186.0,
              minimum=0.0, exclusive_minimum=True),
        Param("cp_cold", "J/kg.K", "specific heat of the cold stream", default=4186.0,
              minimum=0.0, exclusive_minimum=True),
    )
    inputs = (
        Input("hot_inlet_temperature", "K", "temperature of the hot stream at its inlet",
              minimum=0.0, exclusive_minimum=True),
        Input("cold_inlet_temperature", "K", "temperature of the cold stream at its inlet",
              minimum=0.0, exclusive_minimum=True),
        Input("hot_mass_flow", "kg/s", "mass flow of the hot stream", minimum=0.0),
        Input("cold_mass_flow", "kg/s", "mass flow of the cold stream", minimum=0.0),
    )
    outputs = (
        Output("hot_outlet_temperature", "K", "temperature of the hot stream at its outlet"),
        Output("cold_outlet_temperature", "K", "temperature of the cold stream at its outlet"),
        Output("heat_rate", "W", "heat transferred from the hot to the cold stream"),
        Output("effectiveness", "1", "q / q_max = q / (C_min (T_hot_in - T_cold_in))"),
    )

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        p = self.p
        th_in = float(u["hot_inlet_temperature"])
        tc_in = float(u["cold_inlet_temperature"])
        m_hot = float(u["hot_mass_flow"])
        m_cold = float(u["cold_mass_flow"])
        for port, m in (("hot_mass_flow", m_hot), ("cold_mass_flow", m_cold)):
            if m < 0.0:
                raise ModelRuntimeError(
                    f"HeatExchanger input {port!r} must be >= 0 kg/s (reverse flow is not "
                    f"modelled), got {m:g}")
        c_hot = m_hot * p["cp_hot"]
        c_cold = m_cold * p["cp_cold"]
        c_min, c_max = min(c_hot, c_cold), max(c_hot, c_cold)
        if c_max == 0.0:
            return {"hot_outlet_temperature": th_in, "cold_outlet_temperature": tc_in,
                    "heat_rate": 0.0, "effectiveness": 0.0}
        cr = c_min / c_max
        ntu = p["ua"] / c_min if c_min > 0.0 else math.inf
        eps = effectiveness(ntu, cr, p["arrangement"])
        dt = th_in - tc_in
        q = eps * c_min * dt
        # eps * C_min/C * dt rather than q/C, so that a stream with C = 0 has a limit
        hot_share = 1.0 if c_hot == c_min else c_min / c_hot
        cold_share = 1.0 if c_cold == c_min else c_min / c_cold
        return {
            "hot_outlet_temperature": th_in - eps * hot_share * dt,
            "cold_outlet_temperature": tc_in + eps * cold_share * dt,
            "heat_rate": q,
            "effectiveness": eps,
        }
