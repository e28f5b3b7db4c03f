"""Named scenario templates: JSON files with declared arguments.

A template file (``scenario_builder/templates/<name>.json``)::

    {"name": "pump_to_tank", "description": "...",
     "args": {"speed": {"unit": "rpm", "description": "...", "default": 1450,
                        "minimum": 0}},
     "scenario": {... "inputs": {"pump.speed": "$speed"} ...}}

Every string ``"$arg"`` in the scenario is replaced by the argument's value
(a number, or for ``"type": "series"`` a number or a ``{"t", "v"}`` series, or
for ``"type": "string"`` a string such as an instance id).
"""

from __future__ import annotations

import copy
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from modellib.errors import InvalidArgument, MissingArgument, did_you_mean

from .errors import UnknownTemplate

__all__ = ["TEMPLATES_DIR", "templates", "describe_templates", "expand_template"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@cache
def templates() -> dict[str, dict[str, Any]]:
    """Every shipped template, by name (read once)."""
    out = {}
    for path in sorted(TEMPLATES_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out[data["name"]] = data
    return out


def describe_templates() -> dict[str, dict[str, Any]]:
    return {name: {"name": name, "description": t["description"], "args": t["args"],
                   "mode": t["scenario"].get("mode", "static")}
            for name, t in templates().items()}


def _arg_value(name: str, spec: dict[str, Any], value: Any, path: str) -> Any:
    kind = spec.get("type", "number")
    where = f"{path}.{name}"
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidArgument(f"{where} must be a string ({spec['description']})",
                                  path=where)
        return value
    if kind == "series" and isinstance(value, dict):
        return value  # checked as a scenario input series afterwards
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        expect = "a number or a series {\"t\": [...], \"v\": [...]}" if kind == "series" \
            else "a finite number"
        raise InvalidArgument(f"{where} must be {expect} in {spec.get('unit', '1')}, "
                              f"got {json.dumps(value)[:40]}", path=where)
    lo, hi = spec.get("minimum"), spec.get("maximum")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = " and ".join(t for t in (f">= {lo}" if lo is not None else "",
                                          f"<= {hi}" if hi is not None else "") if t)
        raise InvalidArgument(f"{where} ({spec['description']}) must be {bounds} "
                              f"{spec.get('unit', '')}, got {value:g}".rstrip(), path=where)
    return value


def _substitute(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, str) and node.startswith("$") and node[1:] in values:
        return values[node[1:]]
    if isinstance(node, dict):
        return {k: _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    return node


def expand_template(name: Any, args: Any, *, path: str = "args",
                    name_path: str = "template") -> dict[str, Any]:
    """The scenario of template ``name`` with ``args`` filled in; coded errors with paths."""
    known = templates()
    if not isinstance(name, str) or name not in known:
        raise UnknownTemplate(f"no template {name!r}{did_you_mean(name, known)}",
                              path=name_path)
    tpl = known[name]
    if not isinstance(args, dict):
        raise InvalidArgument(f"{path} must be an object of argument values", path=path)
    declared: dict[str, dict[str, Any]] = tpl["args"]
    for key in args:
        if key not in declared:
            raise InvalidArgument(
                f"template {name!r} has no argument {key!r}{did_you_mean(key, declared)}",
                path=f"{path}.{key}")
    values = {}
    for key, spec in declared.items():
        if key in args:
            values[key] = _arg_value(key, spec, args[key], path)
        elif "default" in spec:
            values[key] = spec["default"]
        else:
            raise MissingArgument(
                f"template {name!r} needs argument {key!r} ({spec['description']}, in "
                f"{spec.get('unit', '1')})", path=f"{path}.{key}")
    return _substitute(copy.deepcopy(tpl["scenario"]), values)
