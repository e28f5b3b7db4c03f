"""Check and run a scenario given as JSON-able data: what ingress and workers call."""

from __future__ import annotations

from typing import Any

from modellib.errors import UnknownFunction

from .errors import NotPermitted
from .graph import Scenario, build_scenario
from .static import solve_static

__all__ = ["check_scenario", "run_scenario", "SUPPORTED_MODES"]

SUPPORTED_MODES = ("static",)


def check_scenario(data: Any) -> Scenario:
    """Everything that can be known before a run: raise a coded error on the first problem."""
    scenario = build_scenario(data)
    if scenario.mode not in SUPPORTED_MODES:
        raise NotPermitted(
            f"mode {scenario.mode!r} is not available in this version of the controller; "
            f"use one of: {', '.join(SUPPORTED_MODES)}",
            path="scenario.mode",
        )
    for i, call in enumerate(scenario.post):
        # the function library is not part of this version yet: name it honestly
        raise UnknownFunction(
            f"no function {call['function']!r}: this controller's function library is empty",
            path=f"scenario.post[{i}].function",
        )
    return scenario


def run_scenario(data: Any) -> dict[str, Any]:
    """Check and run a scenario; return the fields of its ``result`` reply."""
    scenario = check_scenario(data)
    return {"status": "ok", **solve_static(scenario)}
