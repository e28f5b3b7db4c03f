"""Scenario builder: a scenario as JSON → a checked graph of model instances → a solution.

A plain library on top of :mod:`modellib`: no MQTT, Celery or Redis here.
"""

from .dynamic import simulate
from .errors import (
    InvalidScenario,
    LimitExceeded,
    NotPermitted,
    RunStopped,
    ScenarioError,
    ScenarioRuntimeError,
    UnknownTemplate,
)
from .graph import Scenario, build_scenario
from .realtime import Poll, Steering, run_realtime, settable_inputs
from .run import SUPPORTED_MODES, check_scenario, run_scenario
from .static import solve_static
from .templates import describe_templates, expand_template

__all__ = [
    "InvalidScenario", "NotPermitted", "RunStopped", "ScenarioError", "ScenarioRuntimeError",
    "Scenario", "build_scenario", "check_scenario", "run_scenario", "solve_static",
    "SUPPORTED_MODES", "simulate", "LimitExceeded", "UnknownTemplate", "describe_templates",
    "expand_template", "Poll", "Steering", "run_realtime", "settable_inputs",
]
