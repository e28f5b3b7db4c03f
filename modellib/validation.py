"""Turning a marshmallow ValidationError into one error a person understands.

Every schema of twinctl (commands, scenarios, parameters, arguments) is marshmallow;
this module finds the first problem in the error tree and names it with a dotted
path, what was wrong and what would be right. Two walks:

* :func:`first_error`, for schema-shaped data (commands, scenarios): it walks the
  error tree beside the schema, into nested objects, lists and dicts;
* :func:`declared_error`, for a flat object of declared variables (a model's
  parameters, a function's arguments): unknown names, missing ones and invalid ones
  in a stable order, in the wording of the caller.

Both share the pieces here: :func:`is_missing`, :func:`flatten` and :func:`short`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields

from .errors import CodedError, InvalidArgument, MissingArgument, did_you_mean

__all__ = ["first_error", "declared_error", "StrictString", "describe_field", "flatten",
           "is_missing", "short", "MISSING"]

MISSING = "Missing data for required field"
"""marshmallow's message for a required field that is absent (without its period)."""


class StrictString(fields.String):
    """A JSON string only (marshmallow's String already refuses numbers)."""

    default_error_messages = {"invalid": "must be a string"}


def describe_field(field: fields.Field | None) -> str:
    """A few words of what a field expects, for messages."""
    if field is None:
        return "a value"
    names = {
        fields.String: "a string",
        fields.Float: "a number",
        fields.Integer: "a whole number",
        fields.Boolean: "true or false",
        fields.List: "a list",
        fields.Dict: "an object",
        fields.Nested: "an object",
    }
    for cls, text in names.items():
        if isinstance(field, cls):
            return text
    return "a value"


def _allowed(schema: Schema | None) -> list[str]:
    if schema is None:
        return []
    return sorted(f.data_key or name for name, f in schema.fields.items())


def _child(node: Any, key: str) -> tuple[Any, bool]:
    """Step from a schema/field into ``key``; return (node, is_container_item)."""
    if isinstance(node, Schema):
        for name, f in node.fields.items():
            if (f.data_key or name) == key:
                return f, False
        return None, False
    if isinstance(node, fields.Nested):
        schema = node.schema
        return _child(schema, key)
    if isinstance(node, fields.Dict):
        return node.value_field, True
    if isinstance(node, fields.List):
        return node.inner, True
    return None, False


def first_error(
    exc: ValidationError,
    schema: Schema,
    root: str,
    *,
    data: Any = None,
    unknown_code: type[CodedError] = InvalidArgument,
) -> CodedError:
    """The first problem in ``exc`` as a coded error with a dotted ``path``.

    Missing fields give ``missing_argument``, unknown fields ``unknown_code``
    (``invalid_argument`` by default), anything else ``invalid_argument``.
    """
    messages: Any = exc.normalized_messages()
    node: Any = schema
    path = root
    value: Any = data
    last_key = ""
    while isinstance(messages, dict) and messages:
        key = next(iter(messages))
        step, in_container = _child(node, str(key))
        parent_node = node
        if isinstance(node, fields.List):
            path = f"{path}[{key}]"
        else:
            path = f"{path}.{key}" if path else str(key)
        last_key = str(key)
        value = _get(value, key)
        messages = messages[key]
        if step is None and not in_container:
            allowed = _allowed(parent_node.schema if isinstance(parent_node, fields.Nested)
                               else parent_node if isinstance(parent_node, Schema) else None)
            hint = did_you_mean(last_key, allowed) if allowed else ""
            return unknown_code(f"{path}: unknown field {last_key!r}{hint}", path=path)
        if isinstance(parent_node, fields.Dict) and isinstance(messages, dict):
            # marshmallow files a Dict entry's errors under "key" and/or "value"
            if "key" in messages:
                text = " ".join(map(str, messages["key"]))
                return InvalidArgument(f"{path}: the name {last_key!r} {text}", path=path)
            messages = messages.get("value", messages)
        node = step
    text = " ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
    if is_missing(text):
        return MissingArgument(f"{path} is required: {describe_field(node)}", path=path)
    if "Unknown field" in text:
        return unknown_code(f"{path}: unknown field {last_key!r}", path=path)
    got = "" if value is None else f", got {short(value)}"
    return InvalidArgument(f"{path} {text.rstrip('.')}{got}", path=path)


def declared_error(
    exc: ValidationError,
    given: Mapping[Any, Any],
    *,
    path: str,
    declared_names: Iterable[str],
    unknown_first: bool,
    unknown: Callable[[str], str],
    missing: Callable[[str], str],
    invalid: Callable[[str, Any, Any], str],
) -> InvalidArgument | MissingArgument:
    """The first problem in ``exc``, raised by a flat schema of declared variables.

    ``given`` is the object that was loaded; the error's path is ``{path}.{name}``.
    Names are taken in a stable order: the declared ones in declaration order and
    the undeclared ones sorted, the undeclared first when ``unknown_first`` (a
    function's arguments: every undeclared key is named, whatever its type) and
    after the declared otherwise (a model's parameters: undeclared string keys
    only; any other key falls to the catch-all ``{path}: {messages}``).

    The wording is the caller's: ``unknown(name)`` for an undeclared name,
    ``missing(name)`` for a required one left out (a :class:`MissingArgument`) and
    ``invalid(name, messages, value)`` for one whose value was refused, with
    marshmallow's messages about it and the given value (None when absent).
    """
    messages = exc.normalized_messages()
    assert isinstance(messages, dict)
    declared = list(declared_names)
    for name in _report_order(messages, declared, unknown_first):
        where = f"{path}.{name}"
        if name not in declared:
            return InvalidArgument(unknown(name), path=where)
        if is_missing(messages[name]):
            return MissingArgument(missing(name), path=where)
        return InvalidArgument(invalid(name, messages[name], given.get(name)), path=where)
    return InvalidArgument(f"{path}: {messages}", path=path)


def _report_order(messages: dict[Any, Any], declared: list[str],
                  unknown_first: bool) -> list[str]:
    """The names of ``messages`` in the order :func:`declared_error` reports them."""
    known = [name for name in declared if name in messages]
    unknown = sorted(str(key) for key in messages if key not in declared
                     and (unknown_first or isinstance(key, str)))
    return [*unknown, *known] if unknown_first else [*known, *unknown]


def is_missing(messages: Any) -> bool:
    """True when marshmallow's ``messages`` about one field say it is required but absent."""
    return MISSING in flatten(messages)


def flatten(messages: Any, *, strip: str = "") -> str:
    """marshmallow's ``messages`` about one field as one line: a list's messages joined
    by spaces, those about list items as ``item 3: ...``; ``strip`` (such as ``"."``)
    taken off the end of each message."""
    if isinstance(messages, dict):
        return "; ".join(f"item {k}: {flatten(v, strip=strip)}" for k, v in messages.items())
    if isinstance(messages, list):
        return " ".join(flatten(m, strip=strip) for m in messages).rstrip(strip)
    return str(messages).rstrip(strip)


def _get(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        return value.get(key, value.get(str(key)))
    if isinstance(value, list):
        try:
            index = int(key)
        except (TypeError, ValueError):
            return None
        return value[index] if 0 <= index < len(value) else None
    return None


def short(value: Any) -> str:
    """``repr(value)``, cut to 40 characters for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
