"""Sweeps over MQTT with real workers (a stack of 2 worker processes): the table equals
the single runs, seeded samples repeat, bad cases are refused before anything runs,
a failing case is its row, a stop returns the rows done, the case limit holds."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator

pytestmark = pytest.mark.integration

MAX_CASES = 500
EXAMPLES = Path(__file__).resolve().parent.parent / "twinctl" / "examples"


@pytest.fixture(scope="module")
def sweeps(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Orchestrator]:
    env = stack_env(redis_server, mqtt_server, TWIN_MAX_CASES=str(MAX_CASES))
    with running_stack(env, tmp_path_factory.mktemp("logs"), workers=2) as stack:
        s = stack.settings
        orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        yield orch
        orch.close()


def draining(stop: float = 60, step: float = 5) -> dict[str, Any]:
    """A tank draining through its outlet orifice: Torricelli, with a closed form."""
    return {"mode": "dynamic",
            "elements": {"tank": {"model": "Tank",
                                  "params": {"area": 1.0, "outlet_area": 0.01},
                                  "initial": {"level": 2.0}}},
            "outputs": ["tank.level"], "time": {"start": 0, "stop": stop, "step": step},
            "post": [{"function": "mean", "args": {"x": "tank.level"}, "as": "mean_level"}]}


def torricelli(t: float, area: float, outlet: float, h0: float) -> float:
    """h(t) = (sqrt(h0) - Cd a / A sqrt(g / 2) t)^2, Cd = 0.62 (the Tank's default)."""
    return float((np.sqrt(h0) - 0.62 * outlet / area * np.sqrt(9.80665 / 2) * t) ** 2)


def test_a_3x2_grid_gives_six_rows_equal_to_six_single_runs(sweeps: Orchestrator) -> None:
    grid = {"tank.area": [1.0, 1.5, 2.0], "tank.initial.level": [2.0, 3.0]}
    rid = new_id("grid")
    replies = sweeps.request({"id": rid, "cmd": "run", "scenario": draining(), "sweep": {
        "grid": grid, "collect": ["tank.level", "mean_level"],
        "objective": {"minimize": "tank.level"}}}, timeout=60)
    assert [r["seq"] for r in replies] == list(range(len(replies)))
    assert replies[0]["type"] == "ack" and replies[0]["queue"] == "twin.sweep"
    assert replies[0]["cases"] == 6
    assert [r["type"] for r in replies[1:-1]] == ["data"] * (len(replies) - 2)
    result = replies[-1]
    assert result["type"] == "result" and result["status"] == "ok", result
    assert result["columns"] == ["case", "tank.area", "tank.initial.level", "tank.level",
                                 "mean_level"]
    assert result["units"] == {"tank.area": "m2", "tank.initial.level": "m",
                               "tank.level": "m"}
    rows = result["rows"]
    cases = list(itertools.product(*grid.values()))  # the last path varies fastest
    assert [r[:3] for r in rows] == [[i, *c] for i, c in enumerate(cases)]
    assert result["failed"] == {}
    # the data replies carry the same rows, with their progress
    streamed = sorted((row for r in replies[1:-1] for row in r["rows"]), key=lambda r: r[0])
    assert streamed == rows
    assert replies[-2]["progress"]["total"] == 6
    assert max(r["progress"]["done"] for r in replies[1:-1]) == 6
    for row, (area, h0) in zip(rows, cases, strict=True):
        assert row[3] == pytest.approx(torricelli(60, area, 0.01, h0), rel=1e-4)
    # six single runs of the same cases give the same values
    for i, (area, h0) in enumerate(cases):
        single = draining()
        single["elements"]["tank"]["params"]["area"] = area
        single["elements"]["tank"]["initial"]["level"] = h0
        one = sweeps.request({"id": new_id("one"), "cmd": "run", "scenario": single},
                             timeout=30)[-1]
        assert rows[i][3] == one["values"]["tank.level"][-1]
        assert rows[i][4] == one["post"]["mean_level"]
    best = min(rows, key=lambda r: r[3])
    assert result["best"]["case"] == best[0]
    assert result["best"]["tank.level"] == best[3]
    assert result["best"]["objective"] == "minimize tank.level"
    assert result["stats"]["cases"] == 6 and result["stats"]["done"] == 6


def test_a_seeded_sample_gives_the_same_cases_twice(sweeps: Orchestrator) -> None:
    sweep = {"sample": {"n": 40, "seed": 7, "vars": {
        "tank.outlet_area": {"uniform": [0.004, 0.008]},
        "tank.initial.level": {"normal": [2.0, 0.1]}}}, "collect": ["tank.level"]}
    tables = []
    for _ in range(2):
        result = sweeps.request({"id": new_id("sample"), "cmd": "run",
                                 "scenario": draining(), "sweep": sweep}, timeout=60)[-1]
        assert result["status"] == "ok" and result["seed"] == 7
        tables.append(result["rows"])
    assert tables[0] == tables[1]
    rng = np.random.default_rng(7)  # the documented draw: each var in turn, n values
    outlet, level = rng.uniform(0.004, 0.008, 40), rng.normal(2.0, 0.1, 40)
    assert [r[1] for r in tables[0]] == outlet.tolist()
    assert [r[2] for r in tables[0]] == level.tolist()
    for row in tables[0]:
        assert row[3] == pytest.approx(torricelli(60, 1.0, row[1], row[2]), rel=1e-4)
    unseeded = sweeps.request({"id": new_id("sample"), "cmd": "run", "scenario": draining(),
                               "sweep": {**sweep, "sample": {**sweep["sample"], "seed": None}}},
                              timeout=60)[-1]
    assert isinstance(unseeded["seed"], int)  # chosen, and said, so it can be repeated


def test_a_bad_case_is_refused_before_anything_runs(sweeps: Orchestrator) -> None:
    rid = new_id("bad")
    replies = sweeps.request({"id": rid, "cmd": "run", "scenario": draining(), "sweep": {
        "cases": [{"tank.area": 1.0}, {"tank.area": 2.0}, {"tank.area": -1.0}]}})
    assert [r["type"] for r in replies] == ["error"]
    error = replies[0]
    assert error["code"] == "invalid_argument"
    assert error["path"] == "sweep.cases[2].tank.area"
    assert "must be > 0 m2" in error["message"] and "-1" in error["message"]
    jobs = sweeps.request({"id": new_id("jobs"), "cmd": "jobs"})[-1]["jobs"]
    assert rid not in {j["id"] for j in jobs}
    typo = sweeps.request({"id": new_id("bad"), "cmd": "run", "scenario": draining(),
                           "sweep": {"grid": {"tank.aera": [1.0]}}})[-1]
    assert typo["code"] == "invalid_argument" and typo["path"] == "sweep.grid.tank.aera"
    assert "did you mean 'area'" in typo["message"]


def test_a_case_that_fails_at_run_time_is_its_row_and_the_rest_succeed(
        sweeps: Orchestrator) -> None:
    command = json.loads((EXAMPLES / "pump_line_tank.json").read_text())
    rid = new_id("fails")
    replies = sweeps.request({"id": rid, "cmd": "run", "scenario": command["scenario"],
                              "sweep": {"grid": {"line.static_head": [4.0, 200.0, 30.0]},
                                        "collect": ["line.flow"]}}, timeout=60)
    result = replies[-1]
    assert result["type"] == "result" and result["status"] == "ok"
    rows = result["rows"]
    assert rows[1] == [1, 200.0, None]
    assert set(result["failed"]) == {"1"}
    assert result["failed"]["1"]["code"] == "runtime_error"
    assert "no solution" in result["failed"]["1"]["message"]
    assert rows[0][2] > rows[2][2] > 0  # more static head, less flow
    assert result["stats"]["failed"] == 1


def test_a_large_sweep_stopped_midway_returns_the_rows_done(sweeps: Orchestrator) -> None:
    rid = new_id("stop")
    scenario = draining(stop=600, step=10)
    scenario["elements"]["tank"]["params"]["outlet_area"] = 0.001  # empty after ~1000 s
    scenario["solver"] = {"max_step": 2.0}  # 300 solver steps a case: ~45 ms
    sweeps.send({"id": rid, "cmd": "run", "scenario": scenario, "sweep": {
        "grid": {"tank.area": [1.0 + k / 100 for k in range(MAX_CASES)]},
        "collect": ["tank.level"]}})
    sweeps.wait(lambda: sweeps.has(rid, "data"), 60, f"the first rows of {rid}")
    stopped = sweeps.request({"id": new_id("halt"), "cmd": "stop", "target": rid})
    assert stopped[-1]["status"] == "ok"
    replies = sweeps.wait_final(rid, timeout=60)
    result = replies[-1]
    assert result["type"] == "result" and result["status"] == "stopped", result
    rows = result["rows"]
    assert 0 < len(rows) < MAX_CASES
    assert result["stats"]["dropped"] == MAX_CASES - len(rows)
    for row in rows:
        assert row[2] == pytest.approx(torricelli(600, row[1], 0.001, 2.0), rel=1e-4)
    assert [r["seq"] for r in replies] == list(range(len(replies)))
    time.sleep(1.0)
    assert sweeps.finals(rid) == 1


def test_a_sweep_above_the_limit_is_refused_before_it_is_queued(sweeps: Orchestrator) -> None:
    rid = new_id("many")
    replies = sweeps.request({"id": rid, "cmd": "run", "scenario": draining(), "sweep": {
        "grid": {"tank.area": [1.0 + k for k in range(30)],
                 "tank.outlet_area": [0.001 * (k + 1) for k in range(20)]}}})
    assert [r["type"] for r in replies] == ["error"]
    assert replies[0]["code"] == "limit_exceeded"
    assert replies[0]["path"] == "sweep.grid"
    assert "600 cases" in replies[0]["message"] and str(MAX_CASES) in replies[0]["message"]


def test_a_realtime_sweep_is_refused(sweeps: Orchestrator) -> None:
    scenario = {**draining(), "mode": "realtime", "realtime": {"speed": 1.0}, "post": []}
    error = sweeps.request({"id": new_id("rt"), "cmd": "run", "scenario": scenario,
                            "sweep": {"grid": {"tank.area": [1.0, 2.0]}}})[-1]
    assert error["code"] == "invalid_argument" and error["path"] == "scenario.mode"


def test_a_templates_scenario_can_be_swept_with_values_in_units(sweeps: Orchestrator) -> None:
    rid = new_id("tpl")
    replies = sweeps.request({"id": rid, "cmd": "run", "template": "tank_draining",
                              "args": {"stop": 60, "step": 10}, "sweep": {
                                  "cases": [{"tank.initial.level": {"value": 150, "unit": "cm"}},
                                            {"tank.initial.level": 2.5}],
                                  "collect": ["tank.level"]}}, timeout=60)
    result = replies[-1]
    assert result["status"] == "ok", result
    assert [r[:2] for r in result["rows"]] == [[0, 1.5], [1, 2.5]]  # in the unit it names
    assert result["units"]["tank.initial.level"] == "m"
    jobs = sweeps.request({"id": new_id("jobs"), "cmd": "jobs"})[-1]["jobs"]
    assert rid not in {j["id"] for j in jobs}  # ended with its result
    levels = [r[2] for r in result["rows"]]
    assert levels[0] < 1.5 and levels[1] < 2.5 and levels[0] < levels[1]
