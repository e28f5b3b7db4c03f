"""The model and function library reference (``docs/models.md``), made from the
libraries' own metadata, so the documentation cannot drift from the code.

    python -m modellib.docs > docs/models.md     (or: twinctl docs)
"""

from __future__ import annotations

from typing import Any

from .functions import describe_functions
from .registry import describe_models

__all__ = ["library_markdown"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _bounds(var: dict[str, Any]) -> str:
    parts = []
    if "minimum" in var:
        parts.append(f">= {_cell(var['minimum'])}")
    if "exclusive_minimum" in var:
        parts.append(f"> {_cell(var['exclusive_minimum'])}")
    if "maximum" in var:
        parts.append(f"<= {_cell(var['maximum'])}")
    if "choices" in var:
        parts.append("one of " + ", ".join(f"`{c}`" for c in var["choices"]))
    return " and ".join(parts)


def _variables(title: str, rows: list[dict[str, Any]], with_default: bool) -> list[str]:
    if not rows:
        return []
    head = "| name | unit | description |" + (" default | bounds |" if with_default else "")
    rule = "|---|---|---|" + ("---|---|" if with_default else "")
    out = [f"**{title}**", "", head, rule]
    for v in rows:
        line = f"| `{v['name']}` | {_cell(v['unit'])} | {_cell(v['description'])} |"
        if with_default:
            default = "optional" if v.get("optional") else _cell(v.get("default", "required"))
            if v.get("type") not in (None, "number"):
                default = f"{default} ({v['type']})"
            line += f" {default} | {_bounds(v)} |"
        out.append(line)
    return [*out, ""]


def library_markdown() -> str:
    """The whole reference as Markdown."""
    models = describe_models()
    functions = describe_functions()
    lines = [
        "# Model and function library",
        "",
        "Generated from the libraries' own metadata by `python -m modellib.docs`; "
        "a test fails when this file is stale. Units are SI unless a variable says "
        "otherwise; `1` means dimensionless.",
        "",
        f"{len(models)} models, {len(functions)} functions.",
        "",
        "## Models",
        "",
        *[f"- [{name}](#{name.lower()})" for name in models],
        "",
    ]
    for name, meta in models.items():
        lines += [f"### {name}", "", _cell(meta["description"]), ""]
        if meta.get("reference"):
            lines += [f"*Reference:* {_cell(meta['reference'])}", ""]
        lines += [f"*Direct feed-through:* {'yes' if meta['feedthrough'] else 'no'}", ""]
        lines += _variables("Parameters", meta["parameters"], True)
        lines += _variables("Inputs", meta["inputs"], True)
        lines += _variables("Outputs", meta["outputs"], False)
        lines += _variables("Continuous states", meta["states"], True)
        lines += _variables("Discrete states", meta.get("discrete_states", []), True)
    lines += ["## Functions", ""]
    for name, meta in functions.items():
        lines += [f"### {name}", "", _cell(meta.get("description")), ""]
        if meta.get("reference"):
            lines += [f"*Reference:* {_cell(meta['reference'])}", ""]
        args = meta.get("arguments", [])
        if args:
            lines += ["| argument | unit | description | default |", "|---|---|---|---|"]
            for a in args:
                default = "required" if a.get("required") else _cell(a.get("default"))
                lines.append(f"| `{a['name']}` | {_cell(a.get('unit'))} | "
                             f"{_cell(a.get('description'))} | {default} |")
            lines.append("")
        returns = meta.get("returns")
        if returns:
            lines += [f"*Returns:* {_cell(returns.get('description'))} "
                      f"({_cell(returns.get('unit'))})", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(library_markdown(), end="")
