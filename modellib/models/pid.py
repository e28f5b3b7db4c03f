"""Discrete PID controller, parallel form, with anti-windup by clamping the integral."""

from __future__ import annotations

from collections.abc import Mapping

from ..base import Discrete, Input, Model, Output, Param
from ..errors import InvalidArgument, ModelRuntimeError
from ..registry import register


@register
class PIDController(Model):
    name = "PIDController"
    description = (
        "Sampled PID controller in parallel form, u = kp*e + I + D with e = setpoint - "
        "measurement, updated every sample_time seconds and held between samples "
        "(zero-order hold): the integral term advances by backward Euler, I_k = I_(k-1) + "
        "ki*T*e_k, the derivative term is a backward difference of the measurement "
        "(D_k = -kd*(y_k - y_(k-1))/T, no kick on set-point steps) or of the error, and is "
        "zero at the first sample. The output is clipped to [output_min, output_max]; "
        "anti-windup by clamping (conditional integration): while the output is pushed "
        "against a limit, the integral is advanced only up to the value at which the "
        "unclipped output reaches that limit, and never moved back by the limit, so the "
        "output leaves saturation as soon as the error changes sign. Reverse action: give "
        "negative gains. The output is the held discrete state, so there is no algebraic "
        "path from the inputs (feedthrough false)."
    )
    reference = (
        "Parallel PID form, backward-difference discretisation and integrator windup with "
        "conditional integration / clamping: K. J. Astrom and T. Hagglund, Advanced PID "
        "Control, ISA 2006, ch. 3 (sec. 3.5 windup; computer implementation); K. J. Astrom and "
        "R. M. Murray, Feedback Systems, 2nd ed., Princeton University Press 2021, ch. 11 "
        "(PID control: integral windup, implementation)."
    )
    parameters = (
        Param("kp", "1", "proportional gain (output units per input unit)", default=1.0),
        Param("ki", "1/s", "integral gain (output units per input unit and second)",
              default=0.0),
        Param("kd", "s", "derivative gain (output units per input unit, times seconds)",
              default=0.0),
        Param("sample_time", "s", "time T between two updates of the output",
              minimum=0.0, exclusive_minimum=True),
        Param("output_min", "any", "lower limit of the output (none if left out)",
              optional=True),
        Param("output_max", "any", "upper limit of the output (none if left out)",
              optional=True),
        Param("derivative_on", "1", "signal the derivative term acts on: the measurement "
              "(no derivative kick on set-point steps) or the error",
              type="choice", choices=("measurement", "error"), default="measurement"),
        Param("anti_windup", "1", "clamp the integral while the output is saturated "
              "(false: plain integration, the integral winds up)",
              type="boolean", default=True),
    )
    inputs = (
        Input("setpoint", "any", "set point r"),
        Input("measurement", "any", "measured value y of the controlled variable"),
    )
    outputs = (
        Output("output", "any", "controller output, held between samples (zero-order hold)"),
    )
    discrete = (
        Discrete("integral", "any",
                 "integral term I = sum of ki*T*e over the samples, in output units",
                 default=0.0),
        Discrete("previous", "any", "measurement (derivative_on=measurement) or error "
                 "(derivative_on=error) at the previous sample", default=0.0),
        Discrete("output", "any", "output computed at the last sample and held since",
                 default=0.0),
        Discrete("started", "1", "0 before the first sample, 1 after it; while 0 the "
                 "derivative term is zero (no kick from the initial 'previous')",
                 default=0.0),
    )
    feedthrough = False

    def check(self, path: str) -> None:
        lo, hi = self.p["output_min"], self.p["output_max"]
        if lo is not None and hi is not None and not lo < hi:
            raise InvalidArgument(
                f"{self.name} parameter 'output_max' must be greater than output_min "
                f"({lo:g}), got {hi:g}",
                path=f"{path}.output_max",
            )

    def sample_time(self) -> float | None:
        return float(self.p["sample_time"])

    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        return {"output": float(x["output"])}

    def update(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        p = self.p
        T = float(p["sample_time"])  # noqa: N806
        lo, hi = p["output_min"], p["output_max"]
        measurement = float(u["measurement"])
        error = float(u["setpoint"]) - measurement
        on_measurement = p["derivative_on"] == "measurement"
        current = measurement if on_measurement else error
        if x.get("started", 0.0):
            slope = (current - float(x["previous"])) / T
            derivative = p["kd"] * (-slope if on_measurement else slope)
        else:
            derivative = 0.0
        proportional = p["kp"] * error
        integral = float(x["integral"])
        step = p["ki"] * T * error
        candidate = integral + step
        unclipped = proportional + candidate + derivative
        if p["anti_windup"] and hi is not None and unclipped > hi and step > 0.0:
            # advance the integral at most to where the output reaches the limit
            candidate = max(integral, hi - proportional - derivative)
        elif p["anti_windup"] and lo is not None and unclipped < lo and step < 0.0:
            candidate = min(integral, lo - proportional - derivative)
        out = proportional + candidate + derivative
        if hi is not None:
            out = min(out, hi)
        if lo is not None:
            out = max(out, lo)
        return {"integral": candidate, "previous": current, "output": out, "started": 1.0}

    def steady_state(
        self, t: float, u: Mapping[str, float], x0: Mapping[str, float]
    ) -> dict[str, float]:
        """Where :meth:`update` comes to rest for constant inputs ``u``.

        The derivative term is zero at rest. The integral stays at its initial value
        ``I0`` when it does not move (``ki = 0``, P/PD control with its proportional
        offset, or zero error), and the output is ``clip(kp*e + I0)``. With integral
        action and a non-zero error, the integral runs until the anti-windup holds it at
        the limit the error pushes towards, so the output rests at that limit; without
        such a limit (or with ``anti_windup`` false) it runs away and there is no steady
        state: :class:`ModelRuntimeError`. The steady state of a loop with integral
        action has zero error and an integral only the plant determines; it cannot be
        found from the controller's inputs alone, so static mode needs ki = 0 there.
        """
        p = self.p
        lo, hi = p["output_min"], p["output_max"]
        measurement = float(u["measurement"])
        error = float(u["setpoint"]) - measurement
        current = measurement if p["derivative_on"] == "measurement" else error
        integral = float({**self.initial_state(), **x0}["integral"])
        proportional = p["kp"] * error
        drift = p["ki"] * error
        if drift > 0.0 and p["anti_windup"] and hi is not None:
            integral = max(integral, hi - proportional)
        elif drift < 0.0 and p["anti_windup"] and lo is not None:
            integral = min(integral, lo - proportional)
        elif drift != 0.0:
            raise ModelRuntimeError(
                f"{self.name} with integral action (ki = {p['ki']:g} 1/s) has no steady "
                f"state at a non-zero error (setpoint - measurement = {error:g}): its integral "
                "keeps changing and no output limit stops it; give ki = 0 for static mode "
                "or simulate the loop in time"
            )
        out = proportional + integral
        if hi is not None:
            out = min(out, hi)
        if lo is not None:
            out = max(out, lo)
        return {**x0, "integral": integral, "previous": current, "output": out,
                "started": 1.0}
