"""Sweeps as a library (scenario_builder.sweeps) and how the ingress cuts them into
chunks (ingress.limits, ingress.jobspec): cases, checks with their paths, one case's
scenario, collected values, the best case. No broker or queue here."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from ingress import limits
from ingress.jobspec import SweepJob, chunk_task_id, task_id
from modellib.errors import InvalidArgument, LimitExceeded
from scenario_builder import check_scenario, run_scenario
from scenario_builder.sweeps import Sweep, apply_case, best_case, parse_sweep, run_case
from tasks import queues
from tasks.sweeps import sweep_chunk


def tank_and_lag() -> dict[str, Any]:
    """A draining tank (Torricelli: a closed form) beside a first-order lag with an
    unconnected input (u), so that a case can set a parameter, a state and an input."""
    return {"mode": "dynamic",
            "elements": {"tank": {"model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01},
                                  "initial": {"level": 2.0}},
                         "lag": {"model": "FirstOrderLag", "params": {"time_constant": 10.0}}},
            "inputs": {"lag.u": 1.0},
            "outputs": ["tank.level", "lag.y"], "time": {"start": 0, "stop": 30, "step": 1},
            "post": [{"function": "mean", "args": {"x": "tank.level"}, "as": "mean_level"}]}


@pytest.fixture(scope="module")
def sc() -> Any:
    return check_scenario(tank_and_lag())


def refused(data: Any, sc: Any, max_cases: int = 1000) -> InvalidArgument:
    with pytest.raises((InvalidArgument, LimitExceeded)) as caught:
        parse_sweep(data, sc, max_cases=max_cases)
    return caught.value  # type: ignore[return-value]


def test_a_grid_is_the_product_with_the_last_path_fastest(sc: Any) -> None:
    sweep = parse_sweep({"grid": {"tank.area": [1.0, 2.0], "lag.u": [0, 1, 2]}}, sc,
                        max_cases=6)
    assert sweep.cases == [[1.0, 0], [1.0, 1], [1.0, 2], [2.0, 0], [2.0, 1], [2.0, 2]]
    assert [t.kind for t in sweep.targets] == ["param", "input"]
    assert sweep.columns == ["case", "tank.area", "lag.u", "tank.level", "lag.y", "mean_level"]
    assert sweep.units == {"tank.area": "m2", "lag.u": "1", "tank.level": "m", "lag.y": "1"}


def test_a_case_sets_a_parameter_a_state_and_an_input_and_shares_the_rest(sc: Any) -> None:
    sweep = parse_sweep({"cases": [{"tank.area": 2.0, "tank.initial.level": 3.0,
                                    "lag.u": 5.0}]}, sc, max_cases=1)
    one = apply_case(sc, sweep.targets, sweep.cases[0])
    assert one.elements["tank"].model.p["area"] == 2.0
    assert one.elements["tank"].initial == {"level": 3.0}
    assert sc.elements["tank"].model.p["area"] == 1.0  # the checked scenario is untouched
    assert sc.elements["tank"].initial == {"level": 2.0}
    assert one.elements["lag"] is sc.elements["lag"]  # not made again
    assert one.order is sc.order and one.feeds is sc.feeds
    level, y, mean = run_case(sc, sweep, sweep.cases[0])
    exact = (np.sqrt(3.0) - 0.62 * 0.01 / 2.0 * np.sqrt(9.80665 / 2) * 30) ** 2
    assert level == pytest.approx(exact, rel=1e-4)
    assert y == pytest.approx(5.0 * (1 - np.exp(-30 / 10)), rel=1e-4)


def test_a_case_gives_what_the_same_single_run_gives(sc: Any) -> None:
    sweep = parse_sweep({"grid": {"tank.outlet_area": [0.005, 0.02]}}, sc, max_cases=2)
    for values in sweep.cases:
        data = tank_and_lag()
        data["elements"]["tank"]["params"]["outlet_area"] = values[0]
        single = run_scenario(data)
        assert run_case(sc, sweep, values) == [single["values"]["tank.level"][-1],
                                               single["values"]["lag.y"][-1],
                                               single["post"]["mean_level"]]


def test_values_with_units_are_converted(sc: Any) -> None:
    sweep = parse_sweep({"grid": {"tank.area": [{"value": 20000, "unit": "cm2"}],
                                  "tank.initial.level": [{"value": 150, "unit": "cm"}]}},
                        sc, max_cases=1)
    assert sweep.cases == [[pytest.approx(2.0), pytest.approx(1.5)]]  # the table's units
    one = apply_case(sc, sweep.targets, sweep.cases[0])
    assert one.elements["tank"].model.p["area"] == pytest.approx(2.0)
    assert one.elements["tank"].initial["level"] == pytest.approx(1.5)


@pytest.mark.parametrize(("sweep", "path", "said"), [
    ({"grid": {"tank.area": [1.0, -2.0]}}, "sweep.grid.tank.area[1]", "must be > 0 m2"),
    ({"grid": {"tank.area": [1.0], "lag.time_constant": [1.0, 0.0]}},
     "sweep.grid.lag.time_constant[1]", "must be > 0"),
    ({"cases": [{"tank.area": 1.0}, {"tank.area": "big"}]}, "sweep.cases[1].tank.area",
     "tank.area"),
    ({"cases": [{"tank.area": 1.0}, {"tank.outlet_area": 0.1}]}, "sweep.cases[1].tank.area",
     "lacks 'tank.area'"),
    ({"grid": {"tank.aera": [1.0]}}, "sweep.grid.tank.aera", "did you mean 'area'"),
    ({"grid": {"tnak.area": [1.0]}}, "sweep.grid.tnak.area", "no element 'tnak'"),
    ({"grid": {"tank.initial.lvl": [1.0]}}, "sweep.grid.tank.initial.lvl", "no state 'lvl'"),
    ({"grid": {"tank.level": [1.0]}}, "sweep.grid.tank.level", "no parameter or input"),
    ({"grid": {"tank.area": [{"value": 1, "unit": "K"}]}}, "sweep.grid.tank.area[0].unit",
     "cannot be converted"),
    ({"grid": {"lag.u": [1.0, float("nan")]}}, "sweep.grid.lag.u[1]", "finite"),
    ({"grid": {"tank.area": []}}, "sweep.grid.tank.area", "non-empty list"),
    ({"sample": {"n": 50, "seed": 3, "vars": {"tank.area": {"normal": [0.1, 1.0]}}}},
     "sweep.sample.vars.tank.area", "drawn for case"),
    ({"sample": {"n": 5, "vars": {"tank.area": {"uniform": [2.0, 1.0]}}}},
     "sweep.sample.vars.tank.area.uniform", "must be below high"),
    ({"sample": {"n": 0, "vars": {"tank.area": {"uniform": [1.0, 2.0]}}}}, "sweep.sample.n",
     "whole number"),
    ({"sample": {"n": 5, "vars": {"tank.area": {"beta": [1.0, 2.0]}}}},
     "sweep.sample.vars.tank.area", "one distribution"),
    ({"grid": {"tank.area": [1.0]}, "collect": ["tank.lvl"]}, "sweep.collect[0]",
     "did you mean 'tank.level'"),
    ({"grid": {"tank.area": [1.0]}, "objective": {"minimize": "lag.y2"}},
     "sweep.objective.minimize", "not collected"),
    ({"grid": {"tank.area": [1.0]}, "objective": {"best": "lag.y"}}, "sweep.objective",
     "minimize"),
    ({"grid": {"tank.area": [1.0]}, "cases": [{"tank.area": 1.0}]}, "sweep", "exactly one"),
    ({"grids": {"tank.area": [1.0]}}, "sweep.grids", "did you mean 'grid'"),
])
def test_a_bad_sweep_is_refused_with_the_path_of_what_is_wrong(
        sc: Any, sweep: dict[str, Any], path: str, said: str) -> None:
    exc = refused(sweep, sc)
    assert exc.path == path, exc.message
    assert said in exc.message, exc.message


def test_a_connected_input_cannot_be_swept() -> None:
    data = tank_and_lag()
    data["elements"]["first"] = {"model": "FirstOrderLag", "params": {"time_constant": 1.0}}
    data["connections"] = [{"from": "first.y", "to": "lag.u"}]
    data["inputs"] = {"first.u": 1.0}
    exc = refused({"grid": {"lag.u": [1.0]}}, check_scenario(data))
    assert exc.path == "sweep.grid.lag.u" and "connected from 'first.y'" in exc.message


def test_too_many_cases_are_refused_before_any_is_made(sc: Any) -> None:
    huge = {"grid": {"tank.area": list(range(1, 1001)), "lag.u": list(range(1000)),
                     "tank.outlet_area": [0.01] * 1000}}  # 10^9 cases
    started = time.perf_counter()
    exc = refused(huge, sc, max_cases=10_000)
    assert time.perf_counter() - started < 1.0
    assert isinstance(exc, LimitExceeded) and exc.path == "sweep.grid"
    assert "1000000000 cases" in exc.message and "TWIN_MAX_CASES = 10000" in exc.message


def test_a_seeded_sample_is_numpys_draw_in_the_order_given(sc: Any) -> None:
    data = {"sample": {"n": 20, "seed": 11, "vars": {"tank.area": {"uniform": [1.0, 2.0]},
                                                    "lag.u": {"normal": [0.0, 3.0]}}}}
    a, b = parse_sweep(data, sc, max_cases=20), parse_sweep(data, sc, max_cases=20)
    assert a.cases == b.cases and a.seed == 11
    rng = np.random.default_rng(11)
    assert a.cases == np.column_stack([rng.uniform(1.0, 2.0, 20),
                                       rng.normal(0.0, 3.0, 20)]).tolist()
    chosen = parse_sweep({"sample": {k: v for k, v in data["sample"].items() if k != "seed"}},
                         sc, max_cases=20)
    assert isinstance(chosen.seed, int)


def test_the_best_case_minimizes_or_maximizes_and_skips_failed_rows(sc: Any) -> None:
    sweep = parse_sweep({"grid": {"tank.area": [1.0, 2.0, 3.0]}, "collect": ["tank.level"],
                         "objective": {"maximize": "tank.level"}}, sc, max_cases=3)
    rows = [[0, 1.0, 0.5], [1, 2.0, None], [2, 3.0, 0.9]]
    assert best_case(sweep, rows) == {"case": 2, "tank.area": 3.0, "tank.level": 0.9,
                                      "objective": "maximize tank.level"}
    low = Sweep(sweep.targets, sweep.cases, sweep.collect, ("minimize", "tank.level"))
    assert best_case(low, rows)["case"] == 0  # type: ignore[index]
    assert best_case(low, [[1, 2.0, None]]) is None
    assert Sweep.from_data(json.loads(json.dumps(sweep.to_data()))) == sweep


def test_a_sweep_is_cut_into_chunks_that_spread_and_stay_cheap(sc: Any) -> None:
    assert limits.sweep_chunk_size(sc, 2000) == 125  # 16 chunks: tiny cases
    assert limits.sweep_chunk_size(sc, 5) == 5  # (~2.6 ms a case: one chunk is enough)
    assert limits.sweep_chunk_size(sc, 100_000) == 392  # at most ~1 s of work
    slow = check_scenario({**tank_and_lag(), "time": {"start": 0, "stop": 36000, "step": 1}})
    assert limits.sweep_chunk_size(slow, 200) == 1  # ~1.8 s of estimated work a case
    assert limits.sweep_chunk_size(slow, 2000) == 8  # but at most 256 chunks
    assert limits.sweep_table_rows(5, 10_000, 1 << 20) == 4096  # half a message at most


def test_a_sweep_job_names_each_chunk_and_keeps_what_sends_it_again(sc: Any) -> None:
    sweep = parse_sweep({"grid": {"tank.area": [1.0 + k for k in range(10)]}}, sc,
                        max_cases=10)
    job = SweepJob(sweep_chunk, queues.SWEEP, ("s-1", "c1", "twin/c1/reply/s-1", sc.to_data()),
                   {"summary": "sweep of 10 case(s), dynamic", "correlation": None},
                   sweep.to_data(), 4)
    assert job.chunks == 3 and job.total == 10
    last = job.chunk(2)
    assert last.args[4]["cases"] == [[9.0], [10.0]]
    assert last.kwargs | {"summary": ""} == {"summary": "", "correlation": None, "chunk": 2,
                                             "first": 8, "total": 10, "chunks": 3}
    assert last.task_id == chunk_task_id("c1", "s-1", 2) != task_id("c1", "s-1")
    assert len({job.chunk(k).task_id for k in range(3)}) == 3
    shown = last.shown()["argsrepr"]
    assert shown.startswith("('s-1', 'c1', 'twin/c1/reply/s-1', <sweep chunk 3 of 3: "
                            "cases 8-9 of 10")
    again = SweepJob.from_spec(job.spec())
    assert again.chunk(1).args == job.chunk(1).args and again.size == 4
