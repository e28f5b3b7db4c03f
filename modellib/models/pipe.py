"""Straight pipe: Darcy-Weisbach friction with the Colebrook-White friction factor."""

from __future__ import annotations

import math
from collections.abc import Mapping

from scipy import optimize

from ..base import G, Input, Model, Output, Param
from ..errors import ModelRuntimeError
from ..registry import register

__all__ = ["Pipe", "colebrook", "friction_factor", "RE_CRITICAL"]

RE_CRITICAL = 2300.0
"""Reynolds number below which the flow is taken as laminar (f = 64/Re)."""

COLEBROOK_TOL = 1e-10
"""Relative step of 1/sqrt(f) at which the Newton iteration of Colebrook-White stops."""

_LN10 = math.log(10.0)


def colebrook(re: float, relative_roughness: float) -> float:
    """Darcy friction factor f of the Colebrook-White equation.

    ``1/sqrt(f) = -2 log10(eps/(3.7 D) + 2.51/(Re sqrt(f)))``, solved for
    x = 1/sqrt(f) by Newton's method from Haaland's explicit approximation until
    the step is below 1e-10 relative (the equation is concave increasing in x, so
    Newton converges monotonically after the first step, quadratically: the
    result is exact to rounding).
    """
    if not re > 0.0:
        raise ModelRuntimeError(f"Colebrook-White needs a positive Reynolds number, got {re:g}")
    a = relative_roughness / 3.7
    b = 2.51 / re
    # Haaland (1983) as the starting point
    x = -1.8 * math.log10(6.9 / re + a ** 1.11)
    for _ in range(100):
        arg = a + b * x
        if arg <= 0.0 or x <= 0.0:
            x = 1.0
            arg = a + b
        residual = x + 2.0 * math.log10(arg)
        step = residual / (1.0 + 2.0 * b / (_LN10 * arg))
        x -= step
        if abs(step) <= COLEBROOK_TOL * abs(x):
            return 1.0 / (x * x)
    raise ModelRuntimeError(
        f"Colebrook-White did not converge at Re = {re:g}, eps/D = {relative_roughness:g}")


def friction_factor(re: float, relative_roughness: float) -> float:
    """Darcy friction factor: 64/Re below :data:`RE_CRITICAL`, Colebrook-White from it on."""
    if re < RE_CRITICAL:
        return 64.0 / re
    return colebrook(re, relative_roughness)


@register
class Pipe(Model):
    """Flow through a pipe for a given inlet head (steady, incompressible, no states).

    Head balance, with v the mean velocity and Re = rho |v| D / mu::

        head = static_head + (f(Re) * length/diameter + minor_loss) * v |v| / (2 g)

    Friction factor: laminar ``f = 64/Re`` for Re < 2300 (Hagen-Poiseuille),
    Colebrook-White from Re = 2300 on (no separate transition-zone law).

    Laminar/turbulent switch: at the critical velocity v_c (Re = 2300) the
    Colebrook factor is higher than 64/Re, so the loss h(v) is strictly
    increasing but jumps up at v_c from h_lam(v_c) to h_turb(v_c). The model
    inverts h(v) for v; for a head loss inside that jump no velocity satisfies the
    balance, and the flow is held at the critical flow (Re = 2300) — the limit
    from both sides. The flow is thus a continuous, non-decreasing (strictly
    increasing outside the jump) function of the head, which is what the static
    solver's root finders need; the head balance closes to rounding everywhere
    outside that band. Laminar: closed form of the quadratic in v. Turbulent:
    ``scipy.optimize.brentq`` on h(v) - head_loss between v_c and a doubling upper
    bracket, to rounding precision.

    Reverse flow: for head < static_head the flow runs backwards (outlet to
    inlet) with the same resistance: flow, velocity and head_loss are negative and
    mirror the forward case exactly; ``reynolds`` is the magnitude |Re|.
    """

    name = "Pipe"
    description = (
        "Straight circular pipe of given length, diameter and roughness, with lumped minor "
        "losses and a static head (outlet elevation and pressure head above the inlet): "
        "from the head at its inlet it computes the steady volume flow through the "
        "Darcy-Weisbach equation with the Colebrook-White friction factor (64/Re in laminar "
        "flow below Re = 2300), and reports the mean velocity, the Reynolds number and the "
        "friction head loss. A head below the static head drives the flow backwards."
    )
    reference = (
        "Darcy-Weisbach head loss with the friction factor of C. F. Colebrook, 'Turbulent "
        "flow in pipes, with particular reference to the transition region between the "
        "smooth and rough pipe laws', J. Inst. Civil Eng. 11 (1939) 133-156; laminar "
        "f = 64/Re (Hagen-Poiseuille); L. F. Moody, 'Friction factors for pipe flow', "
        "Trans. ASME 66 (1944) 671-684."
    )
    parameters = (
        Param("length", "m", "length of the pipe", minimum=0.0, exclusive_minimum=True),
        Param("diameter", "m", "inner diameter D", minimum=0.0, exclusive_minimum=True),
        Param("roughness", "m", "absolute wall roughness eps", minimum=0.0),
        Param("static_head", "m", "head to be overcome at zero flow: outlet elevation and "
              "pressure head above the inlet", default=0.0),
        Param("minor_loss", "1", "sum of the minor loss coefficients K of fittings, "
              "entrance and exit", default=0.0, minimum=0.0),
        Param("density", "kg/m3", "density of the liquid", default=998.0,
              minimum=0.0, exclusive_minimum=True),
        Param("viscosity", "Pa.s", "dynamic viscosity of the liquid", default=1.0e-3,
              minimum=0.0, exclusive_minimum=True),
    )
    inputs = (
        Input("head", "m", "head available at the inlet of the pipe"),
    )
    outputs = (
        Output("flow", "m3/s", "volume flow from inlet to outlet (negative: reverse flow)"),
        Output("velocity", "m/s", "mean velocity in the pipe (negative: reverse flow)"),
        Output("reynolds", "1", "Reynolds number rho*|v|*D/mu"),
        Output("head_loss", "m", "friction and minor head loss, head - static_head"),
    )

    # ----- the friction law -------------------------------------------------
    def reynolds_of(self, v: float) -> float:
        p = self.p
        return float(p["density"] * abs(v) * p["diameter"] / p["viscosity"])

    def loss_of(self, v: float) -> float:
        """Head loss (m) at mean velocity ``v`` (m/s) on the full friction law, odd in v."""
        if v == 0.0:
            return 0.0
        p = self.p
        f = friction_factor(self.reynolds_of(v), p["roughness"] / p["diameter"])
        k = f * p["length"] / p["diameter"] + p["minor_loss"]
        return float(k * v * abs(v) / (2.0 * G))

    def _laminar_velocity(self, loss: float) -> float:
        """Root v >= 0 of c1 v + c2 v^2 = loss (laminar law, c1 from Hagen-Poiseuille)."""
        p = self.p
        c1 = float(32.0 * p["viscosity"] * p["length"]
                   / (p["density"] * G * p["diameter"] ** 2))
        c2 = float(p["minor_loss"]) / (2.0 * G)
        return 2.0 * loss / (c1 + math.sqrt(c1 * c1 + 4.0 * c2 * loss))

    def velocity_of(self, loss: float) -> float:
        """Mean velocity (m/s) at which the head loss is ``loss`` (m); odd in ``loss``."""
        if loss < 0.0:
            return -self.velocity_of(-loss)
        if loss == 0.0:
            return 0.0
        p = self.p
        v_crit = float(RE_CRITICAL * p["viscosity"] / (p["density"] * p["diameter"]))
        rel = float(p["roughness"] / p["diameter"])
        k_turb = colebrook(RE_CRITICAL, rel) * p["length"] / p["diameter"] + p["minor_loss"]
        loss_turb_crit = k_turb * v_crit * v_crit / (2.0 * G)
        laminar = self._laminar_velocity(loss)
        if laminar < v_crit:
            return laminar
        if loss <= loss_turb_crit:
            return v_crit  # inside the laminar/turbulent jump: held at Re = 2300

        def residual(v: float) -> float:
            k = colebrook(self.reynolds_of(v), rel) * p["length"] / p["diameter"]
            return float((k + p["minor_loss"]) * v * v / (2.0 * G) - loss)

        hi = 2.0 * v_crit
        for _ in range(2000):
            if residual(hi) > 0.0:
                break
            hi *= 2.0
        else:  # pragma: no cover - unreachable for finite heads
            raise ModelRuntimeError(f"Pipe found no flow for a head loss of {loss:g} m")
        return float(optimize.brentq(residual, v_crit, hi, xtol=1e-300, rtol=1e-15,
                                     maxiter=500))

    # ----- equations --------------------------------------------------------
    def output(self, t: float, u: Mapping[str, float], x: Mapping[str, float]) -> dict[str, float]:
        head = float(u["head"])
        if not math.isfinite(head):
            raise ModelRuntimeError(f"Pipe got a non-finite inlet head ({head})")
        loss = head - self.p["static_head"]
        v = self.velocity_of(loss)
        area = math.pi * self.p["diameter"] ** 2 / 4.0
        return {"flow": v * area, "velocity": v, "reynolds": self.reynolds_of(v),
                "head_loss": loss}
