"""``post``: function-library calls on a scenario's results.

An argument whose value is a string naming a port of the scenario
(``"pump.power"``) is replaced by that port's result — a number in static mode,
a series in dynamic mode; ``"t"`` is the time column where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modellib.errors import did_you_mean
from modellib.functions import call_function, get_function

from .errors import InvalidScenario
from .graph import Scenario

__all__ = ["check_post", "run_post"]


def _port_refs(args: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in args.items() if isinstance(v, str) and "." in v}


def check_post(scenario: Scenario, path: str = "scenario.post") -> None:
    """Unknown functions, references to unknown ports and repeated names fail here."""
    names: set[str] = set()
    returned = {f"{e}.{p}" for e, p in scenario.outputs}
    for i, call in enumerate(scenario.post):
        get_function(call["function"], path=f"{path}[{i}].function")
        for arg, ref in _port_refs(call["args"]).items():
            if ref not in returned:
                raise InvalidScenario(
                    f"{path}[{i}].args.{arg}: {ref!r} is not among the scenario's outputs"
                    f"{did_you_mean(ref, returned)}; add it to scenario.outputs",
                    path=f"{path}[{i}].args.{arg}",
                )
        name = call.get("as_") or call["function"]
        if name in names:
            raise InvalidScenario(
                f"{path}[{i}]: two post results are called {name!r}; give each an 'as' name",
                path=f"{path}[{i}].as",
            )
        names.add(name)


def run_post(
    scenario: Scenario, values: Mapping[str, Any], t: Any = None, path: str = "scenario.post"
) -> dict[str, Any]:
    """Run every ``post`` call on ``values`` (and ``t``); answers by their ``as`` name."""
    out: dict[str, Any] = {}
    for i, call in enumerate(scenario.post):
        args = dict(call["args"])
        for arg, value in args.items():
            if isinstance(value, str) and value in values:
                args[arg] = values[value]
            elif value == "t" and t is not None:
                args[arg] = t
        out[call.get("as_") or call["function"]] = call_function(
            call["function"], args, path=f"{path}[{i}].args")
    return out
