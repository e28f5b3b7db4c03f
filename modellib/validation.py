"""Turning a marshmallow ValidationError into one error a person understands.

Every schema of twinctl (commands, scenarios, parameters) is marshmallow; this
module walks the error tree beside the schema to the first problem and names it
with a dotted path, what was wrong and what would be right.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields

from .errors import CodedError, InvalidArgument, MissingArgument, did_you_mean

__all__ = ["first_error", "StrictString", "describe_field"]


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
    if "Missing data for required field" in text:
        return MissingArgument(f"{path} is required: {describe_field(node)}", path=path)
    if "Unknown field" in text:
        return unknown_code(f"{path}: unknown field {last_key!r}", path=path)
    got = "" if value is None else f", got {_short(value)}"
    return InvalidArgument(f"{path} {text.rstrip('.')}{got}", path=path)


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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
