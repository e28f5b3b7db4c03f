"""Three-phase induction motor in steady state: the per-phase equivalent circuit."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..base import Input, Model, Output, Param
from ..errors import InvalidArgument
from ..registry import register

_POSITIVE = {"minimum": 0.0, "exclusive_minimum": True}


@register
class InductionMotor(Model):
    name = "InductionMotor"
    description = (
        "Three-phase induction motor in sinusoidal steady state, star connected, from the "
        "per-phase equivalent circuit (R1 + jX1 in series with jXm in parallel with "
        "R2/s + jX2, everything referred to the stator) solved directly in complex "
        "impedances. The rotor branch is taken as the admittance s/(R2 + j s X2), so "
        "synchronous speed (s = 0) is the plain no-load point. Core losses are not "
        "modelled; friction, windage and core losses may be lumped in the constant "
        "mechanical_losses. Valid for motoring (0 < s < 1), braking (s > 1) and generating "
        "(s < 0)."
    )
    reference = (
        "IEEE Std 112 per-phase equivalent circuit, as in S. J. Chapman, Electric Machinery "
        "Fundamentals, 5th ed., McGraw-Hill 2012, secs. 6.4-6.5 (4th ed. 2005, secs. 7.4-7.5): "
        "P_AG = 3 I1^2 Re(Z_F), P_conv = (1 - s) P_AG, tau_ind = P_AG / w_sync."
    )
    parameters = (
        Param("stator_resistance", "Ohm", "stator resistance R1 per phase", minimum=0.0),
        Param("stator_reactance", "Ohm", "stator leakage reactance X1 per phase", minimum=0.0),
        Param("rotor_resistance", "Ohm", "rotor resistance R2 per phase referred to the stator",
              **_POSITIVE),
        Param("rotor_reactance", "Ohm",
              "rotor leakage reactance X2 per phase referred to the stator", minimum=0.0),
        Param("magnetizing_reactance", "Ohm", "magnetizing reactance Xm per phase", **_POSITIVE),
        Param("poles", "1", "number of poles (even)", type="integer", default=4, minimum=2),
        Param("frequency", "Hz", "supply frequency", default=50.0, **_POSITIVE),
        Param("line_voltage", "V", "line-to-line RMS supply voltage", default=400.0,
              **_POSITIVE),
        Param("mechanical_losses", "W",
              "friction, windage (and lumped core) losses, taken as constant", default=0.0,
              minimum=0.0),
    )
    inputs = (Input("speed", "rpm", "rotor speed"),)
    outputs = (
        Output("slip", "1", "slip s = (n_sync - n) / n_sync"),
        Output("torque", "N.m",
               "induced (electromagnetic) torque P_AG / w_sync; the shaft torque is lower by "
               "the mechanical losses"),
        Output("power", "W", "shaft output power P_conv - mechanical losses"),
        Output("current", "A", "RMS line current (equal to the phase current in star)"),
        Output("power_factor", "1",
               "displacement power factor cos(phi), lagging; negative when the machine "
               "returns power to the supply (generating)"),
        Output("efficiency", "1",
               "shaft power / electrical input power when motoring, electrical output / shaft "
               "input when generating, 0 otherwise"),
    )

    def check(self, path: str) -> None:
        poles = self.p["poles"]
        if poles % 2:
            raise InvalidArgument(
                f"{self.name} parameter 'poles' (number of poles) must be even, got {poles}",
                path=f"{path}.poles",
            )

    def synchronous_speed(self) -> float:
        """Synchronous speed in rpm, 120 f / poles."""
        return 120.0 * self.p["frequency"] / self.p["poles"]

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        p = self.p
        n_sync = self.synchronous_speed()
        w_sync = n_sync * math.pi / 30.0
        slip = (n_sync - float(u["speed"])) / n_sync

        r2, x2 = p["rotor_resistance"], p["rotor_reactance"]
        y_rotor = slip / complex(r2, slip * x2)  # 1 / (R2/s + jX2), 0 at s = 0
        z_f = 1.0 / (1.0 / complex(0.0, p["magnetizing_reactance"]) + y_rotor)
        z_in = complex(p["stator_resistance"], p["stator_reactance"]) + z_f
        v_phase = p["line_voltage"] / math.sqrt(3.0)
        i_line = v_phase / z_in

        current = abs(i_line)
        power_factor = z_in.real / abs(z_in)
        p_in = 3.0 * v_phase * current * power_factor
        p_airgap = 3.0 * current * current * z_f.real
        p_out = (1.0 - slip) * p_airgap - p["mechanical_losses"]
        if p_in > 0.0 and p_out > 0.0:
            efficiency = p_out / p_in
        elif p_in < 0.0 and p_out < 0.0:
            efficiency = p_in / p_out
        else:
            efficiency = 0.0
        return {
            "slip": float(slip),
            "torque": float(p_airgap / w_sync) + 0.0,  # no -0.0 at s = 0
            "power": float(p_out),
            "current": float(current),
            "power_factor": float(power_factor),
            "efficiency": float(efficiency),
        }
