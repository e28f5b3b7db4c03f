"""Errors of the scenario builder.

Tree::

    modellib.CodedError
    ├── ScenarioError           base of this package's errors
    │   ├── InvalidScenario     code ``invalid_scenario``: unknown port, a port fed twice, …
    │   ├── UnknownTemplate     code ``unknown_template``
    │   └── ScenarioRuntimeError code ``runtime_error``: a loop without solution, NaN, …
    ├── modellib.NotPermitted   code ``not_permitted``: a real-time run without steering
    └── modellib.LimitExceeded  code ``limit_exceeded``: a run larger than allowed

Errors of the model library (``unknown_model``, ``missing_argument``,
``invalid_argument``) pass through unchanged, with the scenario path.

:class:`RunStopped` is not an error: a run whose ``should_stop`` said yes ends
with it, and its caller answers ``status: "stopped"``.
"""

from __future__ import annotations

from modellib.errors import CodedError, LimitExceeded, NotPermitted

__all__ = ["ScenarioError", "InvalidScenario", "NotPermitted", "LimitExceeded",
           "UnknownTemplate", "ScenarioRuntimeError", "RunStopped"]


class ScenarioError(CodedError):
    """Base of the scenario builder's errors."""


class InvalidScenario(ScenarioError):
    code = "invalid_scenario"


class UnknownTemplate(ScenarioError):
    code = "unknown_template"


class ScenarioRuntimeError(ScenarioError):
    code = "runtime_error"


class RunStopped(Exception):  # noqa: N818  (an outcome, not an error)
    """A dynamic run was asked to stop (its ``should_stop`` said yes) at ``t``."""

    def __init__(self, t: float) -> None:
        super().__init__(f"stopped at t = {t:g} s")
        self.t = t
