"""CoolingTower: a model of the operator's own, for twinctl (see docs/authoring.md).

The basin of a cooling tower, well mixed: the fill cools the hot water towards the
wet-bulb temperature with an effectiveness ``e`` (the tower's "approach"), and the
basin of volume ``V`` mixes what falls into it:

    T_out = T_in - e (T_in - T_wb)            (water leaving the fill)
    V dT/dt = q (T_out - T)                    (the basin, well mixed)
    duty = rho c q (T_in - T_out)              (heat the tower rejects)

At steady state T = T_out. Reference: the effectiveness (e-NTU) view of a counterflow
cooling tower, e.g. Kroger, "Air-cooled heat exchangers and cooling towers" (2004),
ch. 4; here e is a given parameter, not computed from the tower's NTU.

This package is the worked example of docs/authoring.md: its entry point (group
``twinctl.models``, in pyproject.toml) names the class, so installing the package
next to twinctl is all a controller needs (TWIN_PLUGINS may restrict which
distributions it loads). Check it with ``twinctl check-model
twinctl_cooling_tower:CoolingTower``.
"""

from __future__ import annotations

from collections.abc import Mapping

from modellib import Input, Model, Output, Param, State

RHO_C = 998.0 * 4182.0
"""volumetric heat capacity of water at 20 degC, J/(m3 K)"""


class CoolingTower(Model):
    name = "CoolingTower"
    description = ("Cooling-tower basin, well mixed: the fill cools the water towards "
                   "the wet-bulb temperature with effectiveness e; the basin mixes it.")
    reference = "effectiveness model of a counterflow cooling tower (Kroger 2004, ch. 4)"
    parameters = (
        Param("volume", "m3", "water volume V of the basin", default=20.0,
              minimum=0.0, exclusive_minimum=True),
        Param("effectiveness", "1", "fill effectiveness e = (T_in - T_out) / (T_in - T_wb)",
              default=0.6, minimum=0.0, maximum=1.0),
    )
    inputs = (
        Input("t_in", "K", "temperature of the hot water entering the fill",
              default=308.15),
        Input("flow", "m3/s", "water flow through the tower", default=0.05, minimum=0.0),
        Input("t_wb", "K", "wet-bulb temperature of the air", default=293.15),
    )
    outputs = (
        Output("temperature", "K", "basin (cold water) temperature"),
        Output("duty", "W", "heat rejected to the air"),
    )
    states = (
        State("temperature", "K", "basin water temperature", default=300.15),
    )
    feedthrough = True  # duty depends on the inputs at the same instant

    def _t_out(self, u: Mapping[str, float]) -> float:
        return u["t_in"] - self.p["effectiveness"] * (u["t_in"] - u["t_wb"])

    def derivatives(self, t: float, u: Mapping[str, float],
                    x: Mapping[str, float]) -> dict[str, float]:
        return {"temperature": u["flow"] * (self._t_out(u) - x["temperature"])
                / self.p["volume"]}

    def steady_state(self, t: float, u: Mapping[str, float],
                     x: Mapping[str, float]) -> dict[str, float]:
        return {"temperature": self._t_out(u)}

    def output(self, t: float, u: Mapping[str, float],
               x: Mapping[str, float]) -> dict[str, float]:
        return {"temperature": x["temperature"],
                "duty": RHO_C * u["flow"] * (u["t_in"] - self._t_out(u))}
