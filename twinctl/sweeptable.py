"""A sweep as a person sees it: its table from the replies, as CSV or as a plot.

Plain functions on command and reply dicts; no console and no network.

- :func:`is_sweep`, :func:`sweep_size`: whether a command is a sweep, and how many
  cases it has (for a progress bar; None where only the controller can tell);
- :func:`collect_table`: the table from the ``result`` (its ``rows``) or, when it was
  streamed or never came, from the ``data`` replies (each case once, by case);
- :func:`write_table_csv`, :func:`plot_table`: the table to CSV (a header with units)
  or to a PNG: a collected value against a swept path, one line per value of a
  second swept path (matplotlib's Agg backend).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runs import as_floats, csv_cell

__all__ = ["SweepTable", "is_sweep", "sweep_size", "swept_paths", "collect_table",
           "write_table_csv", "plot_choice", "plot_table", "PlotChoiceError"]


@dataclass
class SweepTable:
    """A sweep's table: columns (``case``, swept paths, collected names), rows by case."""

    columns: list[str]
    rows: list[list[Any]]
    swept: list[str] = field(default_factory=list)
    """the swept paths (the columns between ``case`` and the collected values)"""
    failed: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] | None = None

    @property
    def collected(self) -> list[str]:
        return self.columns[1 + len(self.swept):]


def is_sweep(command: dict[str, Any]) -> bool:
    return command.get("cmd") == "run" and isinstance(command.get("sweep"), dict)


def sweep_size(command: dict[str, Any]) -> int | None:
    """The number of cases a sweep command asks for, where the command says it."""
    sweep = command.get("sweep")
    if not isinstance(sweep, dict):
        return None
    if isinstance(sweep.get("grid"), dict):
        n = 1
        for values in sweep["grid"].values():
            n *= len(values) if isinstance(values, list) else 0
        return n or None
    if isinstance(sweep.get("cases"), list):
        return len(sweep["cases"]) or None
    sample = sweep.get("sample")
    count = sample.get("n") if isinstance(sample, dict) else None
    return count if isinstance(count, int) and count > 0 else None


def swept_paths(command: dict[str, Any] | None) -> list[str]:
    """The paths a sweep command sets, in the table's order."""
    sweep = (command or {}).get("sweep")
    if not isinstance(sweep, dict):
        return []
    if isinstance(sweep.get("grid"), dict):
        return [str(k) for k in sweep["grid"]]
    cases = sweep.get("cases")
    if isinstance(cases, list) and cases and isinstance(cases[0], dict):
        return [str(k) for k in cases[0]]
    sample = sweep.get("sample")
    if isinstance(sample, dict) and isinstance(sample.get("vars"), dict):
        return [str(k) for k in sample["vars"]]
    return []


def collect_table(replies: list[dict[str, Any]], command: dict[str, Any] | None = None
                  ) -> SweepTable | None:
    """The sweep's table from its replies (any order), or None if they hold none."""
    result = next((r for r in replies if r.get("type") == "result"
                   and isinstance(r.get("columns"), list)), None)
    data = [r for r in replies if r.get("type") == "data" and isinstance(r.get("rows"), list)]
    columns: list[str] | None = None
    if result is not None:
        columns = [str(c) for c in result["columns"]]
    elif data and isinstance(data[0].get("columns"), list):
        columns = [str(c) for c in data[0]["columns"]]
    if columns is None:
        return None
    if result is not None and isinstance(result.get("rows"), list):
        rows = [list(r) for r in result["rows"]]
    else:
        by_case: dict[Any, list[Any]] = {}
        for reply in data:
            for row in reply["rows"]:
                if isinstance(row, list) and row:
                    by_case.setdefault(row[0], list(row))
        rows = [by_case[k] for k in sorted(by_case, key=lambda c: (not isinstance(c, int), c))]
    failed: dict[str, Any] = {}
    for reply in data:
        if isinstance(reply.get("failed"), dict):
            failed.update(reply["failed"])
    if result is not None and isinstance(result.get("failed"), dict):
        failed.update(result["failed"])
    swept = [p for p in swept_paths(command) if p in columns]
    best = result.get("best") if result is not None else None
    return SweepTable(columns, rows, swept, failed, best if isinstance(best, dict) else None)


def write_table_csv(path: str | Path, table: SweepTable,
                    units: dict[str, str] | None = None) -> int:
    """Write the table as CSV, one row per case (a header with each column's unit where
    known, ``pump.speed [rpm]``); the number of rows written."""
    units = units or {}
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([f"{c} [{units[c]}]" if units.get(c) else c for c in table.columns])
        for row in table.rows:
            out.writerow([csv_cell(v) for v in row])
    return len(table.rows)


class PlotChoiceError(ValueError):
    """The table has no such column to plot (or nothing swept to plot against)."""


def plot_choice(table: SweepTable, x: str | None, y: str | None) -> tuple[str, str, str | None]:
    """(x, y, lines): the swept path on the x axis (default the first), the collected
    value plotted (default the objective's, else the first), and the second swept path
    whose values make one line each (the first other swept path, if any)."""
    if not table.swept:
        raise PlotChoiceError("the sweep has no swept column to plot against")
    if not table.collected:
        raise PlotChoiceError("the sweep collected no value to plot")
    x = x or table.swept[0]
    if x not in table.swept:
        raise PlotChoiceError(f"--plot-x {x!r} is not a swept path ({', '.join(table.swept)})")
    objective = str((table.best or {}).get("objective", "")).partition(" ")[2]
    y = y or (objective if objective in table.collected else table.collected[0])
    if y not in table.collected:
        raise PlotChoiceError(f"--plot-y {y!r} is not a collected value "
                              f"({', '.join(table.collected)})")
    lines = next((p for p in table.swept if p != x), None)
    return x, y, lines


def plot_table(path: str | Path, table: SweepTable, *, title: str, x: str | None = None,
               y: str | None = None, units: dict[str, str] | None = None) -> tuple[str, str]:
    """Draw a collected value against a swept path (:func:`plot_choice`) into ``path``;
    the best case is marked. Returns (x, y)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y, lines = plot_choice(table, x, y)
    units = units or {}
    cx, cy = table.columns.index(x), table.columns.index(y)
    groups: dict[Any, list[list[Any]]] = {}
    cl = table.columns.index(lines) if lines else None
    for row in table.rows:
        groups.setdefault(row[cl] if cl is not None else None, []).append(row)
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for key, rows in groups.items():
        rows = sorted(rows, key=lambda r: (math.inf if not isinstance(r[cx], int | float)
                                           else r[cx]))
        label = None if lines is None else f"{lines} = {csv_cell(key)}" + (
            f" {units[lines]}" if units.get(lines) else "")
        ax.plot(as_floats([r[cx] for r in rows]), as_floats([r[cy] for r in rows]),
                marker="o", markersize=3, label=label)
    if table.best is not None and x in table.best and y in table.best:
        ax.plot(as_floats([table.best[x]]), as_floats([table.best[y]]), marker="*",
                markersize=14, linestyle="none", color="black",
                label=f"best: case {table.best.get('case')}")
    ax.set_xlabel(f"{x} [{units[x]}]" if units.get(x) else x)
    ax.set_ylabel(f"{y} [{units[y]}]" if units.get(y) else y)
    ax.grid(True, alpha=0.3)
    if lines is not None or table.best is not None:
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(title)
    fig.savefig(str(path), dpi=100)
    return x, y
