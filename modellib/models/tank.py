"""Open vertical cylindrical tank draining through a bottom orifice (Torricelli's law)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from ..base import G, Input, Model, Output, Param, State
from ..errors import ModelRuntimeError
from ..registry import register

_SQRT_2G = math.sqrt(2.0 * G)


@register
class Tank(Model):
    """Level of an open vertical cylinder filled by ``inflow`` and emptied by an orifice.

    Equations (pure functions of t, u, x and the parameters)::

        outflow      = Cd * a * sqrt(2 g max(level, 0))         Torricelli with Cd
        d(level)/dt  = (inflow - outflow) / A
                       but 0 when level <= 0 and inflow < outflow   (cannot go below empty)
        volume       = A * level

    The outputs report ``max(level, 0)``, so a solver that overshoots the empty
    tank by a rounding error never shows a negative level or volume; the event
    function ``dry`` uses the raw state so that the crossing can be located.
    ``height`` (optional) only bounds the steady state and adds the event
    ``full``; the model does not spill: above ``height`` the level keeps rising.

    The equations are numpy expressions, so the engine evaluates many tanks in
    one call (``vectorized``): parameters, inputs and states may be arrays.
    """

    name = "Tank"
    description = (
        "Open vertical cylindrical tank of cross-section A with a sharp bottom orifice of "
        "area a: the level rises with the inflow and falls with the orifice outflow "
        "Cd*a*sqrt(2*g*level) (Torricelli's law with a discharge coefficient), never "
        "below empty; outputs the level, the outflow and the stored volume, and signals "
        "the events 'dry' (level reaches zero) and, when a height is given, 'full'."
    )
    reference = (
        "Torricelli's law v = sqrt(2*g*h) from the Bernoulli equation with the orifice "
        "discharge coefficient Cd: F. M. White, Fluid Mechanics, 7th ed., McGraw-Hill 2011, "
        "ch. 3 (Bernoulli equation) and ch. 6 (orifice meters)."
    )
    parameters = (
        Param("area", "m2", "cross-section A of the tank",
              minimum=0.0, exclusive_minimum=True),
        Param("outlet_area", "m2", "area a of the outlet orifice",
              minimum=0.0, exclusive_minimum=True),
        Param("discharge_coefficient", "1", "orifice discharge coefficient Cd",
              default=0.62, minimum=0.0, exclusive_minimum=True, maximum=1.0),
        Param("height", "m", "height of the tank wall, for the 'full' event and the "
              "overflow check of the steady state (optional)",
              optional=True, minimum=0.0, exclusive_minimum=True),
    )
    inputs = (
        Input("inflow", "m3/s", "volume flow into the tank (negative: withdrawal by a pump)",
              default=0.0),
    )
    outputs = (
        Output("level", "m", "liquid level above the orifice"),
        Output("outflow", "m3/s", "volume flow out through the orifice"),
        Output("volume", "m3", "volume of liquid in the tank"),
    )
    states = (
        State("level", "m", "liquid level above the orifice", default=0.0, minimum=0.0),
    )
    feedthrough = False

    vectorized = True

    def _outflow(self, level: Any) -> Any:
        """Cd a sqrt(2 g level) of a level already clipped at 0."""
        coef = self.__dict__.get("_coef")
        if coef is None:  # (once per element, or per batch of elements)
            p = self.p
            coef = self.__dict__["_coef"] = (
                p["discharge_coefficient"] * p["outlet_area"] * _SQRT_2G)
        return coef * np.sqrt(level)

    def output(self, t: float, u: Mapping[str, Any], x: Mapping[str, Any]) -> dict[str, Any]:
        level = np.maximum(x["level"], 0.0)
        return _plain({"level": level, "outflow": self._outflow(level),
                       "volume": self.p["area"] * level})

    def outputs_named(self, names: Collection[str], t: float, u: Mapping[str, Any],
                      x: Mapping[str, Any]) -> dict[str, Any]:
        level = x["level"]
        if not (type(level) is np.ndarray and level.size and level.min() >= 0.0):
            level = np.maximum(level, 0.0)  # (else the states themselves: no copy)
        out = {"level": level}
        if "outflow" in names:
            out["outflow"] = self._outflow(level)
        if "volume" in names:
            out["volume"] = self.p["area"] * level
        return _plain(out)

    def derivatives(self, t: float, u: Mapping[str, Any], x: Mapping[str, Any]) -> dict[str, Any]:
        level = x["level"]
        net = u.get("inflow", 0.0) - self._outflow(np.maximum(level, 0.0))
        rate = net / self.p["area"]
        if np.min(level) <= 0.0:  # cannot go below empty: no fall while dry and more
            rate = np.where((level <= 0.0) & (net < 0.0), 0.0, rate)  # leaves than enters
        return _plain({"level": rate})

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        inflow = float(u.get("inflow", 0.0))
        if inflow < 0.0:
            raise ModelRuntimeError(
                f"Tank has no steady state for a negative inflow ({inflow:g} m3/s): "
                "the tank empties and stays dry while more is withdrawn than flows in")
        p = self.p
        level = (inflow / (p["discharge_coefficient"] * p["outlet_area"])) ** 2 / (2.0 * G)
        height = p["height"]
        if height is not None and level > height:
            raise ModelRuntimeError(
                f"Tank overflows: the steady level for an inflow of {inflow:g} m3/s is "
                f"{level:g} m, above the tank height of {height:g} m")
        return {"level": level}

    def event_functions(
        self, t: float, u: Mapping[str, Any], x: Mapping[str, Any]
    ) -> dict[str, Any]:
        level = x["level"]
        height = self.p["height"]
        events: dict[str, Any] = {"dry": _plain_value(level)}
        if height is not None and not np.all(np.isnan(height)):
            events["full"] = _plain_value(height - level)
        return events


def _plain_value(value: Any) -> Any:
    """A Python float for a scalar, the array itself for vectorized evaluation."""
    if type(value) is np.ndarray and value.ndim:
        return value
    return float(value)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain_value(v) for k, v in values.items()}
