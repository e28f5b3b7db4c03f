"""Sweep benchmark: cases per second over MQTT on 1 and 2 worker processes, beside a
plain loop.

Two sweeps, each a seeded ``sample``:

* small: 2 000 cases of a draining tank (one element, one state, 61 output rows, a
  few ms each): the per-case overhead shows;
* large: 200 cases of pump, pipe and tank (an algebraic loop solved at every
  evaluation, 120 s, ~70 ms each): the spread over the workers shows.

"Ours" is the whole path: the sweep sent over MQTT to a real stack (ingress, one
Celery worker with 1 or 2 pool processes, its own Redis and Mosquitto), from the
send to the ``result`` at the orchestrator, every ``data`` reply on the way. The
baseline is the floor of the per-case cost: the same cases run in a plain loop in
this process, each by :func:`scenario_builder.run_scenario` on the scenario with the
case's values written in (no broker, no queue, no Redis). Each figure is the median
of ``--runs`` runs; the ratios are of medians taken in the same run of the script.

    python bench/sweep.py [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import fresh_stack, machine, report  # noqa: E402
from instances import SHIPPED_INSTANCES, InstanceLibrary  # noqa: E402
from scenario_builder import check_scenario, expand_template, run_scenario  # noqa: E402
from scenario_builder.sweeps import parse_sweep  # noqa: E402
from tests.orchestrator import Orchestrator  # noqa: E402

TARGET_SPEEDUP = 1.8
TARGET_OVERHEAD = 1.3


def small() -> tuple[dict[str, Any], dict[str, Any]]:
    scenario = {"mode": "dynamic",
                "elements": {"tank": {"model": "Tank",
                                      "params": {"area": 1.0, "outlet_area": 0.005},
                                      "initial": {"level": 2.0}}},
                "outputs": ["tank.level"], "time": {"start": 0, "stop": 60, "step": 1}}
    sweep = {"sample": {"n": 2000, "seed": 1, "vars": {
        "tank.area": {"uniform": [0.5, 2.0]}, "tank.initial.level": {"uniform": [1.0, 3.0]}}}}
    return scenario, sweep


def large() -> tuple[dict[str, Any], dict[str, Any]]:
    scenario = expand_template("pump_to_tank", {"stop": 120})
    sweep = {"sample": {"n": 200, "seed": 2, "vars": {
        "pump.speed": {"uniform": [1200, 1500]}, "tank.initial.level": {"uniform": [0.5, 1.5]}}},
        "collect": ["tank.level", "mean_power"]}
    return scenario, sweep


def plain_loop(scenario: dict[str, Any], sweep: dict[str, Any]) -> float:
    """Seconds to run every case by run_scenario, one after the other, in this process."""
    library = InstanceLibrary(Path(tempfile.mkdtemp(prefix="twinctl-bench-")) / "instances",
                              seed=SHIPPED_INSTANCES)
    resolved = library.resolve(scenario)
    checked = parse_sweep(sweep, check_scenario(resolved), max_cases=10**6)
    started = time.perf_counter()
    for values in checked.cases:
        data = copy.deepcopy(resolved)
        for target, value in zip(checked.targets, values, strict=True):
            el = data["elements"][target.element]
            if target.kind == "param":
                el.setdefault("params", {})[target.name] = value
            elif target.kind == "initial":
                el.setdefault("initial", {})[target.name] = value
            else:
                data.setdefault("inputs", {})[target.path] = value
        run_scenario(data)
    return time.perf_counter() - started


def over_mqtt(orch: Orchestrator, scenario: dict[str, Any], sweep: dict[str, Any]) -> float:
    """Seconds from sending the sweep to its ``result`` at the orchestrator."""
    rid = f"bench-{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    orch.send({"id": rid, "cmd": "run", "scenario": scenario, "sweep": sweep})
    orch.wait(lambda: orch.finals(rid) > 0, 1800, f"the result of {rid}")
    took = time.perf_counter() - started
    result = orch.replies(rid)[-1]
    if result.get("type") != "result" or result.get("status") != "ok" or result["failed"]:
        raise SystemExit(f"the sweep did not succeed: {str(result)[:500]}")
    return took


def ours(workers: int, cases: dict[str, tuple[dict[str, Any], dict[str, Any]]],
         runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    with fresh_stack(f"bench-sweep-{workers}", workers=workers, realtime=0) as (stack, host,
                                                                                 port):
        s = stack.settings
        orch = Orchestrator(host, port, s.mqtt_prefix, s.controller_id)
        try:
            warm_scenario, warm_sweep = cases["small"]
            over_mqtt(orch, warm_scenario, {"sample": {**warm_sweep["sample"], "n": 50}})
            for _ in range(runs):
                for name, (scenario, sweep) in cases.items():
                    times[name].append(over_mqtt(orch, scenario, sweep))
                    print(f"  {workers} worker(s), {name}: {times[name][-1]:.2f} s", flush=True)
        finally:
            orch.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cases = {"small": small(), "large": large()}
    sizes = {"small": 2000, "large": 200}
    plain: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (scenario, sweep) in cases.items():
            plain[name].append(plain_loop(scenario, sweep))
            print(f"  plain loop, {name}: {plain[name][-1]:.2f} s", flush=True)
    one = ours(1, cases, args.runs)
    two = ours(2, cases, args.runs)
    med = statistics.median
    lines = [
        "## Sweeps (`bench/sweep.py`)",
        "",
        f"{machine()}; median of {args.runs} runs each, all in one run of the script. "
        "Ours: the sweep over MQTT to a real stack (its own Redis and Mosquitto), send to "
        "`result`; plain loop: the same cases by `run_scenario` one after the other in "
        "one process (no broker, no queue).",
        "",
        "| sweep | cases | plain loop | ours, 1 worker | ours, 2 workers | 1 worker / plain "
        f"(goal ≤ {TARGET_OVERHEAD}x) | 1 → 2 workers (goal ≥ {TARGET_SPEEDUP}x) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in cases:
        p, a, b = med(plain[name]), med(one[name]), med(two[name])
        overhead, speedup = a / p, a / b
        lines.append(
            f"| {name} | {sizes[name]} | {p:.2f} s ({sizes[name] / p:.0f}/s) | {a:.2f} s "
            f"({sizes[name] / a:.0f}/s) | {b:.2f} s ({sizes[name] / b:.0f}/s) | "
            f"{overhead:.2f}x {'met' if overhead <= TARGET_OVERHEAD else 'NOT met'} | "
            f"{speedup:.2f}x {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'} |")
    lines += ["", "Runs (s): " + "; ".join(
        f"{name}: plain {', '.join(f'{x:.2f}' for x in plain[name])} / 1 worker "
        f"{', '.join(f'{x:.2f}' for x in one[name])} / 2 workers "
        f"{', '.join(f'{x:.2f}' for x in two[name])}" for name in cases) + "."]
    report("sweep", "\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
