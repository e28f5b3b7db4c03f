"""The function library: computations an orchestrator calls on its own data
(``{"cmd": "call", "function": "mean", "args": {"x": [1, 2, 3]}}``) or that a
scenario's ``post`` runs on simulation results.

Importing this package registers every function module in it. Arguments are
checked before a run (``missing_argument`` / ``invalid_argument`` with the path
of the argument, such as ``args.x``); numerical failures during a run become
``runtime_error``. Results are JSON-able: a number, a list of numbers or an
object of those.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import Argument, Function, Returns
from .registry import describe_functions, function_names, get_function, register

__all__ = [
    "call_function", "check_call", "get_function", "describe_functions", "function_names",
    "register", "Function", "Argument", "Returns",
]

_SKIP = {"base", "registry"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _SKIP:
        importlib.import_module(f"{__name__}.{_info.name}")


def call_function(
    name: str, args: Any, *, path: str = "args", function_path: str | None = None
) -> Any:
    """Run function ``name`` on ``args`` (an object of argument values); a JSON-able result.

    ``path`` is where ``args`` sits in the caller's message: errors about an
    argument carry ``{path}.{argument}``. An unknown function name carries
    ``function_path``, by default the sibling ``function`` of ``path`` (``args`` ->
    ``function``, ``scenario.post[0].args`` -> ``scenario.post[0].function``).
    ``args`` may be None for no arguments.

    Raises UnknownFunction, MissingArgument, InvalidArgument or ModelRuntimeError.
    """
    function = check_call(name, args, path=path, function_path=function_path)
    return function.call(args, path=path)


def check_call(
    name: str, args: Any, *, path: str = "args", function_path: str | None = None
) -> type[Function]:
    """Everything :func:`call_function` checks before running, without running.

    For a front end that refuses a bad call before queueing it; raises the same
    errors as :func:`call_function` would before the run, returns the function.
    """
    where = _sibling(path, "function") if function_path is None else function_path
    function = get_function(name, path=where)
    function.load_args(args, path=path)
    return function


def _sibling(path: str, name: str) -> str:
    head, dot, _ = path.rpartition(".")
    return f"{head}{dot}{name}"
