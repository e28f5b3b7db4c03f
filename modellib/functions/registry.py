"""The function registry: function classes by name."""

from __future__ import annotations

from typing import Any

from ..errors import UnknownFunction, did_you_mean
from ..registry import Registry
from .base import Function

__all__ = ["register", "get_function", "function_names", "describe_functions"]

def _unknown_function(name: object, known: dict[str, Any], *,
                      path: str | None) -> UnknownFunction:
    if not isinstance(name, str):
        return UnknownFunction(
            f"a function name must be a string, got {name!r}; "
            f"known functions: {', '.join(sorted(known))}",
            path=path,
            name=name,
        )
    hint = did_you_mean(name, known)
    if "did you mean" not in hint:
        hint = f" (known functions: {', '.join(sorted(known))})"
    return UnknownFunction(f"no function {name!r}{hint}", path=path, name=name)


FUNCTIONS: Registry[type[Function]] = Registry(_unknown_function)
register = FUNCTIONS.register
get_function = FUNCTIONS.get
function_names = FUNCTIONS.names
describe_functions = FUNCTIONS.describe
