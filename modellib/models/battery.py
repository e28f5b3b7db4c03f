"""Battery: Thevenin equivalent circuit (one RC pair) with state of charge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..base import Input, Model, Output, Param, State
from ..errors import InvalidArgument, ModelRuntimeError
from ..registry import register

_POSITIVE = {"minimum": 0.0, "exclusive_minimum": True}


@register
class Battery(Model):
    name = "Battery"
    description = (
        "Battery cell or pack as a Thevenin equivalent circuit: an open-circuit voltage "
        "OCV(soc), interpolated linearly in a table and held flat beyond its ends, in series "
        "with an ohmic resistance r0 and one polarisation RC pair (r1, c1). Coulomb counting "
        "gives d soc/dt = -I/(3600 capacity) and the RC voltage follows "
        "dv1/dt = I/c1 - v1/(r1 c1); the terminal voltage is OCV(soc) - v1 - r0 I. Positive "
        "current discharges. The state of charge is not limited: stop the run before it "
        "leaves 0..1."
    )
    reference = (
        "G. L. Plett, Battery Management Systems, Vol. I: Battery Modeling, Artech House 2015, "
        "ch. 2 (equivalent-circuit cell models); X. Hu, S. Li, H. Peng, A comparative study "
        "of equivalent circuit models for Li-ion batteries, J. Power Sources 198 (2012) "
        "359-367 (the Thevenin model)."
    )
    parameters = (
        Param("capacity", "A.h", "charge capacity", **_POSITIVE),
        Param("r0", "Ohm", "ohmic (series) resistance", minimum=0.0),
        Param("r1", "Ohm", "polarisation resistance of the RC pair", **_POSITIVE),
        Param("c1", "F", "polarisation capacitance of the RC pair", **_POSITIVE),
        Param("ocv_soc", "1",
              "state-of-charge breakpoints of the open-circuit voltage curve, strictly "
              "increasing within 0..1", type="vector"),
        Param("ocv_voltage", "V",
              "open-circuit voltage at each breakpoint of ocv_soc (same length)",
              type="vector"),
    )
    inputs = (Input("current", "A", "terminal current, positive when discharging"),)
    states = (
        State("soc", "1", "state of charge (1 = full, 0 = empty)", default=1.0,
              minimum=0.0, maximum=1.0),
        State("v1", "V", "voltage across the RC pair", default=0.0),
    )
    outputs = (
        Output("voltage", "V", "terminal voltage OCV(soc) - v1 - r0*I"),
        Output("soc", "1", "state of charge"),
        Output("power", "W", "power delivered at the terminals, voltage*current "
               "(negative while charging)"),
    )

    def __init__(self, params: Mapping[str, Any] | None = None, *,
                 path: str = "params") -> None:
        super().__init__(params, path=path)
        self._soc = np.asarray(self.p["ocv_soc"], dtype=float)
        self._ocv = np.asarray(self.p["ocv_voltage"], dtype=float)

    def check(self, path: str) -> None:
        soc, volts = self.p["ocv_soc"], self.p["ocv_voltage"]
        if len(soc) != len(volts):
            raise InvalidArgument(
                f"{path}.ocv_soc and {path}.ocv_voltage must have the same length (one "
                f"voltage per breakpoint), got {len(soc)} and {len(volts)}",
                path=f"{path}.ocv_soc",
            )
        for i, value in enumerate(soc):
            if not 0.0 <= value <= 1.0:
                raise InvalidArgument(
                    f"{path}.ocv_soc[{i}] must be within 0..1, got {value:g}",
                    path=f"{path}.ocv_soc",
                )
            if i and value <= soc[i - 1]:
                raise InvalidArgument(
                    f"{path}.ocv_soc must increase strictly, but item {i} ({value:g}) follows "
                    f"{soc[i - 1]:g}",
                    path=f"{path}.ocv_soc",
                )
        for i, value in enumerate(volts):
            if value < 0.0:
                raise InvalidArgument(
                    f"{path}.ocv_voltage[{i}] must be >= 0 V, got {value:g}",
                    path=f"{path}.ocv_voltage",
                )

    def ocv(self, soc: float) -> float:
        """Open-circuit voltage at ``soc``: linear between breakpoints, flat beyond."""
        return float(np.interp(soc, self._soc, self._ocv))

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        current, soc = float(u["current"]), float(x["soc"])
        voltage = self.ocv(soc) - float(x["v1"]) - self.p["r0"] * current
        return {"voltage": voltage, "soc": soc, "power": voltage * current}

    def derivatives(
        self, t: float, u: Mapping[str, float], x: Mapping[str, float]
    ) -> dict[str, float]:
        p = self.p
        current = u["current"]
        return {
            "soc": float(-current / (3600.0 * p["capacity"])),
            "v1": float(current / p["c1"] - x["v1"] / (p["r1"] * p["c1"])),
        }

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        # Only a battery at rest has one: the state of charge moves with any current.
        if u["current"] != 0.0:
            raise ModelRuntimeError(
                f"{self.name} has no steady state at a non-zero current "
                f"({u['current']:g} A): its state of charge keeps changing; run it in "
                "dynamic mode"
            )
        return {**x0, "v1": 0.0}
