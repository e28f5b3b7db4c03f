"""Check and run a scenario given as JSON-able data: what ingress and workers call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .alarms import batch_events
from .dynamic import check_rows, simulate
from .errors import NotPermitted
from .graph import Scenario, build_scenario
from .post import check_post, run_post
from .schema import MODES
from .static import solve_static

__all__ = ["check_scenario", "run_scenario", "run_checked", "SUPPORTED_MODES"]

SUPPORTED_MODES = MODES
"""The run modes (the scenario schema refuses any other)."""


def check_scenario(data: Any) -> Scenario:
    """Everything that can be known before a run: raise a coded error on the first problem."""
    scenario = build_scenario(data)
    if scenario.mode == "dynamic":
        assert scenario.time is not None  # required in dynamic mode by build_scenario
        check_rows(scenario.time)
    check_post(scenario)
    return scenario


def run_scenario(data: Any, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Check and run a static or dynamic scenario; return the fields of its ``result``
    reply. (A real-time run needs steering: :func:`scenario_builder.realtime.run_realtime`.)"""
    return run_checked(check_scenario(data), should_stop)


def run_checked(scenario: Scenario, should_stop: Callable[[], bool] | None = None
                ) -> dict[str, Any]:
    """Run a checked static or dynamic scenario: the fields of its ``result`` reply."""
    if scenario.mode == "realtime":
        raise NotPermitted("a realtime scenario runs through run_realtime, with steering",
                           path="scenario.mode")
    if scenario.mode == "dynamic":
        result = simulate(scenario, should_stop)
        if scenario.post:
            result["post"] = run_post(scenario, result["values"], result["t"])
    else:
        result = solve_static(scenario)
        if scenario.post:
            result["post"] = run_post(scenario, result["values"])
    if scenario.alarms:
        result["alarms"] = alarm_events(scenario, result)
    return {"status": "ok", **result, "units": scenario.units_shown()}


def alarm_events(scenario: Scenario, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The raised and cleared events of the scenario's alarm rules in a run's result,
    each with its rule's priority and a message (the value with its unit)."""
    events = batch_events(scenario.alarms, result.get("t"),
                          {**result.get("values", {}), **result.get("post", {})})
    rules = {rule.name: rule for rule in scenario.alarms}
    shown = scenario.units_shown()
    for event in events:
        rule = rules[event["alarm"]]
        event["priority"] = rule.priority
        event["message"] = rule.describe(event["value"], shown.get(rule.on, ""), event["event"])
    return events
