"""The two limits that keep one small command from holding a worker for its whole time
limit or for ever (ingress/limits.py, ingress/plans.py, the real-time loop):

- the solver steps a ``solver.max_step`` imposes on a run, within ``TWIN_MAX_STEPS``
  (path ``scenario.solver.max_step``);
- the wall-clock length of a real-time run, within ``TWIN_MAX_REALTIME_S``: a longer
  ``time.stop`` is refused (path ``scenario.time.stop``), an open-ended run is stopped by
  its loop and its Celery time limits follow the cap.

Unit tests on plain objects; tests/test_e2e_runlimits.py runs the same over MQTT.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from common.settings import SettingsError, load_settings
from ingress.commands import Command
from ingress.errors import LimitExceeded
from ingress.limits import check_max_step, check_realtime_length, solver_steps
from ingress.plans import Planner, realtime_limits
from ingress.policy import Policy
from instances import SHIPPED_INSTANCES, InstanceLibrary
from modellib.errors import CodedError
from scenario_builder import check_scenario, run_realtime
from tasks import queues
from tests.test_realtime import Clock, Recorder

LIMIT = 10_000_000


def scenario(mode: str = "dynamic", max_step: Any = None, speed: float | None = None,
             **time: Any) -> Any:
    sc: dict[str, Any] = {
        "mode": mode,
        "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
        "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"], "time": time}
    if max_step is not None:
        sc["solver"] = {"max_step": max_step}
    if speed is not None:
        sc["realtime"] = {"speed": speed}
    return check_scenario(sc)


def refused(check: Callable[[], None]) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        check()
    assert info.value.code == "limit_exceeded"
    return info.value


def smallest_max_step(message: str) -> float:
    found = re.search(r"make solver\.max_step at least (\S+) s", message)
    assert found, message
    return float(found.group(1))


# ----- solver.max_step ------------------------------------------------------------------

def test_a_tiny_max_step_over_a_long_span_is_refused_with_what_would_fit() -> None:
    sc = scenario(max_step=1e-3, start=0, stop=1e5, step=1000)  # 101 rows, 1e8 solver steps
    exc = refused(lambda: check_max_step(sc, LIMIT))
    assert exc.as_reply()["path"] == "scenario.solver.max_step"
    assert exc.as_reply()["limit"] == LIMIT
    msg = exc.message
    assert "solver.max_step = 0.001 s" in msg and "100000 s" in msg  # the max_step, the span
    assert "at least 100000000 solver steps" in msg  # the steps it implies
    assert f"at most {LIMIT} steps" in msg and "TWIN_MAX_STEPS" in msg  # the limit
    assert smallest_max_step(msg) == 0.01  # what would fit
    check_max_step(scenario(max_step=0.01, start=0, stop=1e5, step=1000), LIMIT)  # just fits


def test_the_bound_is_exact_at_the_limit() -> None:
    check_max_step(scenario(max_step=0.5, start=0, stop=500, step=1), 1000)  # 1000 steps
    exc = refused(lambda: check_max_step(scenario(max_step=0.5, start=0, stop=500.5, step=1),
                                         1000))
    assert "at least 1001 solver steps" in exc.message
    # a span starting elsewhere counts from time.start
    check_max_step(scenario(max_step=0.5, start=1e4, stop=1e4 + 500, step=1), 1000)
    assert solver_steps(0.3, 0.1) == 3  # 2.9999999999999996 is 3 steps, not 4
    assert solver_steps(1e308, 5e-324) > 10**18  # beyond counting: refused by any limit


@pytest.mark.parametrize(("stop", "limit"), [(99_999.7, 7), (1e5, 10**7), (3.3, 1000),
                                            (12_345.678, 999), (1e300, 10**12)])
def test_the_max_step_the_message_advises_is_accepted(stop: float, limit: int) -> None:
    exc = refused(lambda: check_max_step(scenario(max_step=stop / limit / 3, start=0,
                                                  stop=stop, step=stop / 2), limit))
    fit = smallest_max_step(exc.message)
    assert stop / limit <= fit <= stop / limit * 1.01
    check_max_step(scenario(max_step=fit, start=0, stop=stop, step=stop / 2), limit)


def test_a_huge_number_of_steps_is_shown_bounded() -> None:
    exc = refused(lambda: check_max_step(
        scenario(max_step=5e-324, start=0, stop=1e300, step=1e299), LIMIT))
    assert "more than 1000000000000000 solver steps" in exc.message


def test_the_bound_applies_to_real_time_runs_with_a_stop_only() -> None:
    exc = refused(lambda: check_max_step(
        scenario("realtime", max_step=1e-6, start=0, stop=100, step=0.1), LIMIT))
    assert exc.path == "scenario.solver.max_step" and "at least 100000000 solver" in exc.message
    # open-ended: no span to measure (its wall-clock length is TWIN_MAX_REALTIME_S's)
    check_max_step(scenario("realtime", max_step=1e-6, start=0, step=0.1), LIMIT)
    check_max_step(scenario(start=0, stop=1e5, step=1000), LIMIT)  # no max_step: no bound
    static = check_scenario({"elements": {"lag": {"model": "FirstOrderLag",
                                                  "params": {"time_constant": 1}}},
                             "inputs": {"lag.u": 1.0}, "solver": {"max_step": 1e-9}})
    check_max_step(static, 1)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1e-3", True])
def test_the_schema_refuses_max_steps_that_are_not_positive_numbers(bad: Any) -> None:
    with pytest.raises(CodedError) as info:
        scenario(max_step=bad, start=0, stop=10, step=1)
    assert info.value.path == "scenario.solver.max_step"


# ----- TWIN_MAX_REALTIME_S --------------------------------------------------------------

def test_the_setting_defaults_to_a_day_and_zero_means_no_cap() -> None:
    assert load_settings({}).max_realtime_s == 86_400
    s = load_settings({"TWIN_MAX_REALTIME_S": "0"})
    assert s.max_realtime_s == 0 and load_settings(s.to_env()).max_realtime_s == 0
    assert load_settings({"TWIN_MAX_REALTIME_S": "3"}).to_env()["TWIN_MAX_REALTIME_S"] == "3"
    with pytest.raises(SettingsError) as info:
        load_settings({"TWIN_MAX_REALTIME_S": "-1"})
    assert str(info.value).startswith("TWIN_MAX_REALTIME_S='-1': must be between 0 and")


def test_a_real_time_run_longer_than_the_cap_is_refused() -> None:
    sc = scenario("realtime", start=0, stop=10, step=0.1)
    exc = refused(lambda: check_realtime_length(sc, 5))
    assert exc.as_reply()["path"] == "scenario.time.stop"
    assert exc.as_reply()["limit"] == 5
    msg = exc.message
    assert "10 s of wall-clock time" in msg and "at most 5 s" in msg
    assert "TWIN_MAX_REALTIME_S" in msg and "time.stop at most 5 " in msg
    assert "open-ended run (no time.stop) is stopped after 5 s" in msg
    # the length is wall-clock time: at speed 2, 10 s of simulated time last 5 s
    check_realtime_length(scenario("realtime", speed=2.0, start=0, stop=10, step=0.1), 5)
    exc = refused(lambda: check_realtime_length(
        scenario("realtime", speed=0.5, start=100, stop=103, step=0.1), 5))
    assert "6 s of wall-clock time" in exc.message and "time.stop at most 102.5 " in exc.message
    check_realtime_length(sc, 10)  # exactly the cap
    check_realtime_length(sc, 0)  # 0: no cap
    check_realtime_length(scenario("realtime", start=0, step=0.1), 5)  # open-ended: capped
    check_realtime_length(scenario(start=0, stop=1e5, step=1), 5)  # not real-time


def test_the_time_limits_of_an_open_ended_run_follow_the_cap() -> None:
    open_ended = scenario("realtime", start=0, step=0.1)
    capped = realtime_limits(open_ended.time, open_ended.realtime, 3)
    assert capped == {"soft_time_limit": 63, "time_limit": 63 + queues.HARD_MARGIN_S}
    day = realtime_limits(open_ended.time, open_ended.realtime, 86_400)
    assert day["soft_time_limit"] == int(86_400 * 1.1 + 60)
    assert realtime_limits(open_ended.time, open_ended.realtime, 0)["soft_time_limit"] == (
        queues.OPEN_ENDED_S)  # no cap: none
    with_stop = scenario("realtime", speed=2.0, start=0, stop=100, step=0.1)
    assert realtime_limits(with_stop.time, with_stop.realtime, 3)["soft_time_limit"] == 115


def test_an_open_ended_loop_ends_as_stopped_before_the_first_tick_past_the_cap() -> None:
    clock = Clock()
    rec = Recorder(clock)
    sc = scenario("realtime", start=0, step=0.1)  # publishes every 10 ticks by default
    result = run_realtime(sc, rec, max_wall_s=1.0, clock=clock, sleep=clock.sleep)
    assert result["status"] == "stopped" and result["capped"] is True
    t, _ = rec.rows()
    assert result["rows"] == len(t) == 10 and t[-1] == pytest.approx(0.9)  # released < 1 s
    assert clock.now - 100.0 == pytest.approx(0.9)  # never past the cap
    # a loop that fell behind ends at its first tick starting after the cap
    clock = Clock()
    rec = Recorder(clock, {3: 2.0})  # tick 3's work takes 2 s
    result = run_realtime(sc, rec, max_wall_s=1.0, clock=clock, sleep=clock.sleep)
    assert result["status"] == "stopped" and result["capped"] and result["rows"] == 4
    # a run that ends first is not capped
    clock = Clock()
    result = run_realtime(scenario("realtime", start=0, stop=0.5, step=0.1), Recorder(clock),
                          max_wall_s=1.0, clock=clock, sleep=clock.sleep)
    assert result["status"] == "completed" and "capped" not in result


def plan_run(raw: dict[str, Any], **env: str) -> Any:
    """The job a ``run`` of ``raw`` would queue (the planner's checks, nothing sent)."""
    s = load_settings(env)
    planner = Planner(s, Policy.from_settings(s), InstanceLibrary(SHIPPED_INSTANCES),
                      None, None, None, None, lambda: None)  # (not used by a plan's checks)
    return planner._run(Command("r-1", "run", {"scenario": raw}))  # noqa: SLF001


def test_the_planner_checks_both_and_hands_the_cap_to_an_open_ended_run() -> None:
    raw = scenario(max_step=1e-3, start=0, stop=1e5, step=1000).to_data()
    exc = refused(lambda: plan_run(raw))
    assert exc.as_reply()["path"] == "scenario.solver.max_step"
    plan_run({**raw, "solver": {"max_step": 0.01}})
    rt = scenario("realtime", start=0, stop=10, step=0.1).to_data()
    exc = refused(lambda: plan_run(rt, TWIN_MAX_REALTIME_S="5"))
    assert exc.as_reply()["path"] == "scenario.time.stop"
    job = plan_run(rt, TWIN_MAX_REALTIME_S="10")
    assert "max_wall_s" not in job.kwargs  # it ends at its time.stop
    open_ended = {**rt, "time": {"start": 0, "step": 0.1}}
    job = plan_run(open_ended, TWIN_MAX_REALTIME_S="3")
    assert job.kwargs["max_wall_s"] == 3
    assert job.options == {"soft_time_limit": 63, "time_limit": 63 + queues.HARD_MARGIN_S}
    job = plan_run(open_ended, TWIN_MAX_REALTIME_S="0")  # no cap: until `stop`
    assert "max_wall_s" not in job.kwargs
    assert job.options["soft_time_limit"] == queues.OPEN_ENDED_S
