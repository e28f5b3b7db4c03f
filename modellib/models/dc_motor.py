"""Separately excited / permanent-magnet DC motor: armature circuit and rotor inertia."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..base import Input, Model, Output, Param, State
from ..registry import register

_POSITIVE = {"minimum": 0.0, "exclusive_minimum": True}


@register
class DCMotor(Model):
    name = "DCMotor"
    description = (
        "Separately excited or permanent-magnet DC motor with constant field: the armature "
        "circuit L di/dt = V - R i - k w and the rotor J dw/dt = k i - b w - T_load, where the "
        "torque constant k (N.m/A) equals the back-emf constant (V.s/rad) in SI units. "
        "Outputs depend on the states only (the armature inductance and the rotor inertia "
        "filter every input), and the steady state is solved in closed form."
    )
    reference = (
        "G. F. Franklin, J. D. Powell, A. Emami-Naeini, Feedback Control of Dynamic Systems, "
        "7th ed., Pearson 2015, sec. 2.3 (models of electromechanical systems: the DC motor); "
        "also K. Ogata, Modern Control Engineering, 5th ed., Prentice Hall 2010."
    )
    parameters = (
        Param("resistance", "Ohm", "armature resistance R", **_POSITIVE),
        Param("inductance", "H", "armature inductance L", **_POSITIVE),
        Param("torque_constant", "N.m/A",
              "torque constant k, equal to the back-emf constant in V.s/rad", **_POSITIVE),
        Param("inertia", "kg.m2", "moment of inertia J of the rotor and the coupled load",
              **_POSITIVE),
        Param("friction", "N.m.s", "viscous friction coefficient b", default=0.0, minimum=0.0),
    )
    inputs = (
        Input("voltage", "V", "armature terminal voltage"),
        Input("load_torque", "N.m", "load torque opposing the rotation", default=0.0),
    )
    states = (
        State("current", "A", "armature current", default=0.0),
        State("speed", "rad/s", "angular speed of the rotor", default=0.0),
    )
    outputs = (
        Output("current", "A", "armature current"),
        Output("speed", "rad/s", "angular speed of the rotor"),
        Output("speed_rpm", "rpm", "rotor speed in revolutions per minute"),
        Output("torque", "N.m", "electromagnetic torque k*i (before friction and load)"),
        Output("power", "W",
               "mechanical power converted, electromagnetic torque times speed k*i*w "
               "(before friction losses)"),
    )
    feedthrough = False

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        k = self.p["torque_constant"]
        current, speed = float(x["current"]), float(x["speed"])
        torque = k * current
        return {
            "current": current,
            "speed": speed,
            "speed_rpm": speed * 30.0 / math.pi,
            "torque": torque,
            "power": torque * speed,
        }

    def derivatives(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        p = self.p
        k = p["torque_constant"]
        current, speed = x["current"], x["speed"]
        load = u.get("load_torque", 0.0)
        di = (u["voltage"] - p["resistance"] * current - k * speed) / p["inductance"]
        dw = (k * current - p["friction"] * speed - load) / p["inertia"]
        return {"current": float(di), "speed": float(dw)}

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        # 0 = V - R i - k w and 0 = k i - b w - T: a 2x2 linear system whose determinant
        # R b + k^2 is positive because R > 0 and k > 0.
        p = self.p
        r, k, b = p["resistance"], p["torque_constant"], p["friction"]
        volts, load = u["voltage"], u.get("load_torque", 0.0)
        det = r * b + k * k
        return {
            **x0,
            "current": float((b * volts + k * load) / det),
            "speed": float((k * volts - r * load) / det),
        }
