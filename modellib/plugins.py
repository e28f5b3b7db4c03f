"""The operator's own models and functions: entry points and a model folder.

Two ways in, both chosen by the operator (never named by a message):

- installed distributions with entry points in the groups ``twinctl.models`` and
  ``twinctl.functions``: ``name = "package.module:Class"`` (a class is registered) or
  ``"package.module"`` (a module whose classes register themselves with
  :func:`modellib.register`); ``TWIN_PLUGINS`` names the distributions allowed
  (default: all installed);
- ``TWIN_MODEL_PATH``: folders of ``.py`` files, each imported once, whose models
  register themselves (``from modellib import Model, Param, Input, Output, State,
  register``).

A loaded model is like a built-in one (metadata, validation, ``describe``); its
``source`` says where it came from: ``plugin:<distribution>`` or
``plugin:<file name>``. What cannot be loaded — an import that fails, a name taken
by a built-in, a variable without a unit or a description, a unit the library does
not know — is skipped with the file or distribution, the model and what is wrong
(:class:`Skipped`), and the rest loads. :func:`model_set_digest` names the whole set
(built-in and loaded), so that a worker can tell it runs the models its ingress
checked against.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import units
from .base import Model, Variable
from .functions.base import Function
from .functions.registry import FUNCTIONS
from .registry import MODELS, NameTaken, Registry

__all__ = ["Skipped", "Loaded", "load_plugins", "check_metadata", "model_set_digest",
           "load_file", "MODEL_GROUP", "FUNCTION_GROUP"]

MODEL_GROUP = "twinctl.models"
FUNCTION_GROUP = "twinctl.functions"


@dataclass(frozen=True)
class Skipped:
    """What could not be loaded, where from, and why."""

    where: str
    """the file, or ``distribution (entry point value)``"""
    why: str
    name: str | None = None
    """the model or function, where known"""

    def describe(self) -> dict[str, str]:
        return {"where": self.where, "why": self.why, **({"name": self.name} if self.name
                                                        else {})}


@dataclass
class Loaded:
    """What a load added: name -> source, and what it skipped."""

    models: dict[str, str] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def describe(self) -> list[dict[str, str]]:
        return [s.describe() for s in self.skipped]


_loaded: dict[tuple[Any, ...], Loaded] = {}
"""the loads done in this process, by their arguments (each is done once)"""


def _variable_problems(var: Variable, where: str) -> list[str]:
    problems = []
    if not var.unit:
        problems.append(f"{where} {var.name!r} has no unit (write '1' for a pure number)")
    elif var.unit != "any":
        try:
            units.dimension(var.unit)
        except Exception as exc:  # noqa: BLE001  (an UnknownUnit, or pint's own)
            problems.append(f"{where} {var.name!r}: its unit {var.unit!r} is not one the "
                            f"units library knows ({getattr(exc, 'message', exc)})")
    if not var.description:
        problems.append(f"{where} {var.name!r} has no description")
    return problems


def check_metadata(cls: type[Any]) -> list[str]:
    """What a model's or function's declarations lack (empty: complete)."""
    problems = []
    declared = {"name": getattr(cls, "name", None),
                "description": getattr(cls, "description", None)}
    for attr, value in declared.items():
        if not isinstance(value, str) or not value:
            problems.append(f"it has no {attr}")
    if isinstance(cls, type) and issubclass(cls, Model):
        for kind, variables in (("parameter", cls.parameters), ("input", cls.inputs),
                                ("output", cls.outputs), ("state", cls.states),
                                ("discrete state", cls.discrete)):
            for var in variables:
                problems += _variable_problems(var, kind)
        if not cls.outputs:
            problems.append("it declares no output")
    return problems


def _register(registry: Registry[Any], cls: type[Any], source: str, where: str,
              loaded: Loaded, kind: str) -> None:
    """Register (or keep registered) a loaded class after its checks."""
    problems = check_metadata(cls)
    name = getattr(cls, "name", None)
    if problems:
        registry.unregister(str(name))
        loaded.skipped.append(Skipped(where, f"{kind} {name!r}: " + "; ".join(problems),
                                      str(name) if name else None))
        return
    try:
        registry.register(cls)
    except NameTaken as exc:
        loaded.skipped.append(Skipped(where, _taken(exc, kind), exc.name))
        return
    cls.source = source
    (loaded.models if kind == "model" else loaded.functions)[cls.name] = source


def _taken(exc: NameTaken, kind: str) -> str:
    owner = getattr(exc.taken, "source", "builtin")
    return (f"the {kind} name {exc.name!r} is taken by the {owner} {kind} of that name: "
            "rename it (a plugin never replaces a model)")


def _import(where: str, load: Any, loaded: Loaded) -> Any | None:
    try:
        return load()
    except NameTaken as exc:
        loaded.skipped.append(Skipped(where, _taken(exc, "model"), exc.name))
    except Exception as exc:  # noqa: BLE001  (a plugin's bug must not stop the controller)
        loaded.skipped.append(Skipped(where, f"it could not be imported: "
                                             f"{type(exc).__name__}: {exc}"))
    return None


def _new(before: dict[str, Any], registry: Registry[Any]) -> list[type[Any]]:
    return [cls for name, cls in registry.items().items() if before.get(name) is not cls]


def _adopt(where: str, source: str, obj: Any, before_m: dict[str, Any],
           before_f: dict[str, Any], loaded: Loaded) -> None:
    """Check and register what an import brought: the classes it registered itself, and
    ``obj`` (an entry point's class) if it is a model or a function."""
    found = {"model": _new(before_m, MODELS), "function": _new(before_f, FUNCTIONS)}
    if isinstance(obj, type) and issubclass(obj, Model) and obj not in found["model"]:
        found["model"].append(obj)
    if isinstance(obj, type) and issubclass(obj, Function) and obj not in found["function"]:
        found["function"].append(obj)
    for kind, registry in (("model", MODELS), ("function", FUNCTIONS)):
        for cls in found[kind]:
            if registry.items().get(str(getattr(cls, "name", ""))) is cls:
                registry.unregister(cls.name)  # (registered again once checked)
            _register(registry, cls, source, where, loaded, kind)


def load_file(path: Path, loaded: Loaded | None = None) -> Loaded:
    """Import one model file (its models register themselves); what it added."""
    loaded = loaded if loaded is not None else Loaded()
    before_m, before_f = MODELS.items(), FUNCTIONS.items()
    module_name = f"twinctl_models_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"

    def load() -> Any:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module

    global _digest
    _digest = None
    if _import(str(path), load, loaded) is None:  # (it may have registered part: undone)
        for registry, before in ((MODELS, before_m), (FUNCTIONS, before_f)):
            for cls in _new(before, registry):
                registry.unregister(cls.name)
        return loaded
    _adopt(str(path), f"plugin:{path.name}", None, before_m, before_f, loaded)
    if not _new(before_m, MODELS) and not _new(before_f, FUNCTIONS) and not any(
            s.where == str(path) for s in loaded.skipped):
        loaded.skipped.append(Skipped(str(path), "it defines no model or function (decorate "
                                                 "each class with @register)"))
    return loaded


def _entry_points(group: str, allow: Sequence[str] | None) -> Iterable[metadata.EntryPoint]:
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: (e.value, e.name)):
        dist = ep.dist.name if ep.dist is not None else "?"
        if allow is None or dist in allow:
            yield ep


def load_plugins(*, model_path: Sequence[Path] = (),
                 allow: Sequence[str] | None = None) -> Loaded:
    """Load the entry points of the allowed distributions and every ``.py`` file of the
    model folders, once per process for the same arguments; what was loaded and skipped."""
    global _digest
    key = (tuple(str(p) for p in model_path), None if allow is None else tuple(allow))
    if key in _loaded:
        return _loaded[key]
    _digest = None
    loaded = Loaded()
    for group in (MODEL_GROUP, FUNCTION_GROUP):
        for ep in _entry_points(group, allow):
            dist = ep.dist.name if ep.dist is not None else "?"
            where = f"{dist} ({ep.value})"
            before_m, before_f = MODELS.items(), FUNCTIONS.items()
            obj = _import(where, ep.load, loaded)
            if obj is not None:
                _adopt(where, f"plugin:{dist}", obj, before_m, before_f, loaded)
    for folder in model_path:
        for path in sorted(Path(folder).glob("*.py")):
            load_file(path, loaded)
    _loaded[key] = loaded
    return loaded


_digest: str | None = None


def model_set_digest() -> str:
    """A digest of every model and function now registered (names, sources, metadata):
    two processes with the same digest run the same library."""
    global _digest
    if _digest is not None:
        return _digest
    data = {"models": {n: {**c.describe(), "source": getattr(c, "source", "builtin")}
                       for n, c in sorted(MODELS.items().items())},
            "functions": {n: {**c.describe(), "source": getattr(c, "source", "builtin")}
                          for n, c in sorted(FUNCTIONS.items().items())}}
    text = json.dumps(data, sort_keys=True, default=str)
    _digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _digest
