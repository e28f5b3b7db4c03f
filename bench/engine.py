"""Engine benchmark: a chain of N coupled tanks, our dynamic engine against a
hand-written numpy/scipy ``solve_ivp`` of the same ODE, in the same run.

Tank 1 is fed a constant inflow; tank i+1 is fed by the outflow of tank i:

    dh_i/dt = (q_{i-1} - Cd a sqrt(2 g max(h_i, 0))) / A ,   q_0 = inflow

Both integrate with RK45, rtol 1e-6, atol 1e-9, over 10 000 output steps (1000 for
N = 1000); both return the levels at every output time. The table gives the median of
``--runs`` timings of each and the largest difference between their levels.

Then a plant of mixed models (pumps, lines, tanks, valves, controllers), timed by part.

    python bench/engine.py [--runs 7] [--units 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import machine, report  # noqa: E402
from scenario_builder import check_scenario, run_scenario  # noqa: E402

G = 9.80665
AREA, OUTLET, CD, INFLOW = 2.0, 0.004, 0.62, 0.01
STOP = 2000.0


def initial(n: int) -> np.ndarray:
    return np.linspace(2.0, 0.5, n)


def scenario(n: int, steps: int) -> dict[str, Any]:
    h0 = initial(n)
    elements = {f"t{i}": {"model": "Tank", "params": {"area": AREA, "outlet_area": OUTLET,
                                                      "discharge_coefficient": CD},
                          "initial": {"level": float(h0[i])}} for i in range(n)}
    return {
        "mode": "dynamic",
        "elements": elements,
        "connections": [{"from": f"t{i}.outflow", "to": f"t{i + 1}.inflow"}
                        for i in range(n - 1)],
        "inputs": {"t0.inflow": INFLOW},
        "outputs": [f"t{i}.level" for i in range(n)],
        "time": {"start": 0.0, "stop": STOP, "step": STOP / steps},
        "solver": {"method": "RK45", "rtol": 1e-6, "atol": 1e-9},
    }


def hand_written(n: int, steps: int) -> np.ndarray:
    k = CD * OUTLET * np.sqrt(2 * G)

    def rhs(t: float, h: np.ndarray) -> np.ndarray:
        q = k * np.sqrt(np.maximum(h, 0.0))
        inflow = np.empty_like(h)
        inflow[0] = INFLOW
        inflow[1:] = q[:-1]
        dh = (inflow - q) / AREA
        return np.where((h <= 0.0) & (dh < 0.0), 0.0, dh)

    t_eval = np.linspace(0.0, STOP, steps + 1)
    sol = solve_ivp(rhs, (0.0, STOP), initial(n), t_eval=t_eval, method="RK45",
                    rtol=1e-6, atol=1e-9)
    assert sol.success, sol.message
    return sol.y


LAST: dict[str, Any] = {}


def ours(n: int, steps: int) -> dict[str, Any]:
    """The whole run as the worker does it: check, build, integrate, outputs."""
    result = run_scenario(scenario(n, steps))
    LAST.update(result["stats"])
    return result


def levels(result: dict[str, Any], n: int) -> np.ndarray:
    return np.array([result["values"][f"t{i}.level"] for i in range(n)])


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


# ----- a plant of mixed models ---------------------------------------------------------
def _instance(name: str) -> dict[str, Any]:
    data = json.loads((ROOT / "instances" / "default" / f"{name}.json").read_text())
    return dict(data["params"])


def plant(units: int, stop: float = 300.0, step: float = 1.0) -> dict[str, Any]:
    """``units`` copies of a pumping unit, 7 elements each: an on/off level controller
    (HysteresisController) switching a pump (CentrifugalPump, P-101) between 1450 and
    1000 rpm (below ~920 rpm it no longer lifts the line's 12 m) that feeds a tank
    (Tank, T-1) through a line (Pipe, L-7: the pump and line are an algebraic loop,
    solved at every evaluation), and a discrete PI controller (PIDController, 1 s)
    setting a valve (Valve, V-1) that fills a second tank."""
    pump, line, tank, valve = (_instance(i) for i in ("P-101", "L-7", "T-1", "V-1"))
    elements: dict[str, Any] = {}
    connections: list[dict[str, str]] = []
    inputs: dict[str, Any] = {}
    for u in range(units):
        elements.update({
            f"ctl{u}": {"model": "HysteresisController", "params": {
                "low": 1.0, "high": 2.0, "on_value": 1450.0, "off_value": 1000.0}},
            f"pump{u}": {"model": "CentrifugalPump", "params": pump},
            f"line{u}": {"model": "Pipe", "params": line},
            f"tank{u}": {"model": "Tank", "params": tank,
                         "initial": {"level": 0.5 + 0.02 * (u % 50)}},
            f"pid{u}": {"model": "PIDController", "params": {
                "kp": 0.5, "ki": 0.05, "sample_time": 1.0, "output_min": 0.0,
                "output_max": 1.0}},
            f"valve{u}": {"model": "Valve", "params": valve},
            f"store{u}": {"model": "Tank", "params": tank, "initial": {"level": 0.2}},
        })
        connections += [
            {"from": f"tank{u}.level", "to": f"ctl{u}.measurement"},
            {"from": f"ctl{u}.output", "to": f"pump{u}.speed"},
            {"from": f"pump{u}.head", "to": f"line{u}.head"},
            {"from": f"line{u}.flow", "to": f"pump{u}.flow"},
            {"from": f"line{u}.flow", "to": f"tank{u}.inflow"},
            {"from": f"store{u}.level", "to": f"pid{u}.measurement"},
            {"from": f"pid{u}.output", "to": f"valve{u}.opening"},
            {"from": f"valve{u}.flow", "to": f"store{u}.inflow"},
        ]
        inputs.update({f"pid{u}.setpoint": 1.0, f"valve{u}.dp": 2.0e5})
    return {"mode": "dynamic", "elements": elements, "connections": connections,
            "inputs": inputs, "outputs": [f"tank{u}.level" for u in range(units)]
            + [f"store{u}.level" for u in range(units)],
            "time": {"start": 0.0, "stop": stop, "step": step}}


def parts(sc: dict[str, Any], runs: int) -> dict[str, float]:
    """Medians (ms) of the whole run and of its parts: the check (parse, models,
    graph), the engine's time (build, integration, outputs) and its outputs alone."""
    whole, check, solve, outputs = [], [], [], []
    for _ in range(runs):
        dt, _ = timed(check_scenario, sc)
        check.append(dt * 1000)
        dt, result = timed(run_scenario, sc)
        whole.append(dt * 1000)
        solve.append(result["stats"]["solve_ms"])
        outputs.append(result["stats"]["outputs_ms"])
        LAST.update(result["stats"])
    return {k: statistics.median(v) for k, v in
            (("whole", whole), ("check", check), ("solve", solve), ("outputs", outputs))}


CASES = ((1, 10_000), (10, 10_000), (100, 10_000), (1000, 1000))
"""(tanks, output steps) of the chain: the issue's N = 100 over 10 000 steps and
N = 1000 over 1000"""
TARGETS = {100: 1.5, 1000: 2.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--units", type=int, default=5, help="units of the mixed plant (7 "
                    "elements each)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for n, steps in CASES:
        ours(n, steps)  # warm-up (imports, caches)
        t_ours, t_hand, t_check, t_integ, t_out = [], [], [], [], []
        diff = 0.0
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            dt, result = timed(ours, n, steps)
            t_ours.append(dt)
            t_integ.append((LAST["solve_ms"] - LAST["outputs_ms"]) / 1000)
            t_out.append(LAST["outputs_ms"] / 1000)
            dt, _ = timed(check_scenario, scenario(n, steps))
            t_check.append(dt)
            dt, b = timed(hand_written, n, steps)
            t_hand.append(dt)
            diff = max(diff, float(np.max(np.abs(levels(result, n) - b))))
        o, h, c, i, w = (statistics.median(v) * 1000
                         for v in (t_ours, t_hand, t_check, t_integ, t_out))
        rows.append((n, steps, o, c, i, w, h, o / h, diff))
        print(f"N={n} ({steps} steps): ours {o:.1f} ms (check {c:.1f}, engine less outputs "
              f"{i:.1f}, outputs {w:.1f}), hand-written {h:.1f} ms, ratio {o / h:.2f}, "
              f"max |dh| {diff:.1e} m", flush=True)
    sc = plant(args.units)
    ours_plant = parts(sc, max(3, args.runs // 2))
    n_el = len(sc["elements"])
    print(f"mixed plant, {n_el} elements: {ours_plant}, {LAST}", flush=True)

    def verdict(n: int, ratio: float) -> str:
        goal = TARGETS.get(n)
        return "" if goal is None else (f" (target <= {goal:g}x: "
                                        f"{'met' if ratio <= goal else 'not met'})")

    lines = [
        "## Dynamic engine (`bench/engine.py`)",
        "",
        f"Machine: {machine()}. A chain of N tanks (tank i feeds tank i+1) over {STOP:g} s, "
        f"RK45 with rtol 1e-6 and atol 1e-9 in both; medians of {args.runs} interleaved "
        "runs. \"Ours\" is the whole `run_scenario` as a worker runs it (the check: parse, "
        "models, graph; the engine: build, integration, outputs); \"hand-written\" a numpy "
        "right-hand side given to `solve_ivp` directly, returning its states. Targets: "
        "ours <= 1.5x at N = 100 (10 000 steps), <= 2x at N = 1000 (1000 steps); the check "
        "<= 10 us per element.",
        "",
        "| N tanks | steps | ours, whole (ms) | check (ms) | check per element (us) "
        "| engine less outputs (ms) | outputs (ms) | hand-written (ms) | ratio | "
        "max level difference (m) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {n} | {st} | {o:.1f} | {c:.2f} | {c / n * 1000:.1f} | {i:.1f} | {w:.1f} "
          f"| {h:.1f} | {o / h:.2f}x{verdict(n, o / h)} | {d:.1e} |"
          for n, st, o, c, i, w, h, _, d in rows],
        "",
        "\"Engine less outputs\" is the build of the engine and the integration "
        "(`stats.solve_ms - stats.outputs_ms`); \"outputs\" the output ports recorded at "
        "every output time, computed once over all times for a vectorized model and only "
        "for the ports asked for (`Model.outputs_named`). Before this version (the "
        "issue's measurement): 4.6x at N = 100 and 18x at N = 1000, the check ~150 us per "
        "element. What stays above the hand-written code: the check (the scenario as "
        "data: every element's parameters validated, every connection's ports looked up, "
        "the graph's components; the hand-written code has no scenario to check: a third "
        "of the time at N = 1000), the engine's build (the signal vector and the blocks "
        "from a thousand element objects, ~3 ms at N = 1000), and per evaluation of the "
        "right-hand side ~10-20 us of Python around the vectorized model (the staged "
        "evaluation, the dicts of ports, the event function of the tanks' `dry` event "
        "checked after every step). Going further would mean compiling a vectorized "
        "scenario into one numpy function, which the staged engine does not do.",
        "",
        f"A plant of mixed models: {args.units} pumping units of 7 elements "
        f"({n_el} elements: on/off level controller, pump and line in an algebraic loop "
        "solved at every evaluation, tank, discrete PI controller sampled every second, "
        f"valve, second tank), {sc['time']['stop']:g} s at {sc['time']['step']:g} s, "
        f"medians of {max(3, args.runs // 2)} runs (no hand-written baseline: the loop "
        "solver and the events are the engine's):",
        "",
        "| elements | whole (ms) | check (ms) | engine less outputs (ms) | outputs (ms) "
        "| segments | events | rhs evaluations |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {n_el} | {ours_plant['whole']:.0f} | {ours_plant['check']:.1f} "
        f"| {ours_plant['solve'] - ours_plant['outputs']:.0f} | {ours_plant['outputs']:.1f} "
        f"| {LAST['segments']} | {LAST['events']} | {LAST['rhs_evaluations']} |",
        "",
        "Its time is the per-element Python calls of the models that are not vectorized "
        "(pump, pipe, controllers, valve: each evaluated on its own, inside the loop "
        "solver's iterations) and one restart of the integrator per sample instant; "
        "three quarters of it (profiled) is the Pipe's own solve for its flow (`brentq` "
        "over the Colebrook equation, ~110 us a call), called in every iteration of "
        "every pump-line loop at every evaluation: the model library's matter (an "
        "explicit friction factor, or the loop's Jacobian), not the engine's.",
    ]
    text = "\n".join(lines)
    report("engine", text, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
