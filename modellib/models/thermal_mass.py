"""Lumped thermal capacitance losing heat through a thermal resistance (first-order RC)."""

from __future__ import annotations

from collections.abc import Mapping

from ..base import Input, Model, Output, Param, State
from ..errors import ModelRuntimeError
from ..registry import register

__all__ = ["ThermalMass"]


@register
class ThermalMass(Model):
    """A body of uniform temperature (Biot number small) heated and cooled to ambient::

        C dT/dt   = heat_in - heat_loss
        heat_loss = (T - T_ambient) / R

    The time constant is R*C; the steady state T = T_ambient + R*heat_in. The
    initial temperature is the state's initial value (default 293.15 K).

    ``feedthrough`` is True: ``heat_loss`` depends on the input
    ``ambient_temperature`` at the same instant (``temperature`` itself depends
    on the state only).
    """

    name = "ThermalMass"
    description = (
        "Lumped thermal capacitance C at a uniform temperature, heated by a heat flow and "
        "losing heat to the ambient through a thermal resistance R (a first-order RC "
        "network with time constant R*C): outputs its temperature and the heat flow lost "
        "to the ambient."
    )
    reference = (
        "Lumped capacitance method, C dT/dt = q - (T - T_inf)/R_t: F. P. Incropera, "
        "D. P. DeWitt, T. L. Bergman, A. S. Lavine, Fundamentals of Heat and Mass Transfer, "
        "6th ed., Wiley 2007, sec. 5.1-5.3."
    )
    parameters = (
        Param("heat_capacity", "J/K", "heat capacity C = m*c of the body",
              minimum=0.0, exclusive_minimum=True),
        Param("thermal_resistance", "K/W", "thermal resistance R from the body to the ambient",
              minimum=0.0, exclusive_minimum=True),
    )
    inputs = (
        Input("heat_in", "W", "heat flow into the body (negative: cooling)", default=0.0),
        Input("ambient_temperature", "K", "temperature of the surroundings", default=293.15,
              minimum=0.0, exclusive_minimum=True),
    )
    outputs = (
        Output("temperature", "K", "temperature of the body"),
        Output("heat_loss", "W", "heat flow from the body to the ambient, (T - T_ambient)/R"),
    )
    states = (
        State("temperature", "K", "temperature of the body", default=293.15,
              minimum=0.0, exclusive_minimum=True),
    )
    # heat_loss reads the ambient temperature input: an algebraic path
    feedthrough = True

    def _loss(self, u: Mapping[str, float], temperature: float) -> float:
        ambient = float(u.get("ambient_temperature", 293.15))
        return (temperature - ambient) / float(self.p["thermal_resistance"])

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        temperature = float(x["temperature"])
        return {"temperature": temperature, "heat_loss": self._loss(u, temperature)}

    def derivatives(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        q_in = float(u.get("heat_in", 0.0))
        loss = self._loss(u, float(x["temperature"]))
        return {"temperature": (q_in - loss) / self.p["heat_capacity"]}

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        ambient = float(u.get("ambient_temperature", 293.15))
        q_in = float(u.get("heat_in", 0.0))
        temperature = ambient + self.p["thermal_resistance"] * q_in
        if temperature <= 0.0:
            raise ModelRuntimeError(
                f"ThermalMass has no physical steady state: a heat flow of {q_in:g} W would "
                f"hold it at {temperature:g} K, at or below absolute zero")
        return {"temperature": temperature}
