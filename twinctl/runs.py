"""A run as a person sees it: what a command will do, and the series its replies carry.

Plain functions on command and reply dicts (as they travel over MQTT); no
console and no network, so each is tested without a controller.

- :func:`run_span`, :func:`output_units`: a command's mode and simulated time
  span (for a progress bar), and the units of its outputs (from the model library);
- :func:`collect_series`: the series of a run from its ``data`` replies and its
  ``result`` (a dynamic result's ``t``/``values`` columns, or a streamed or
  realtime run's chunks); a static result's values as one row;
- :func:`write_csv`, :func:`plot_series`: that series to CSV, or to a PNG
  (matplotlib's Agg backend: one subplot per unit).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Series", "Span", "StaticPlotError", "as_floats", "as_number", "collect_series", "csv_cell",
    "output_units",
    "result_units",
    "plot_series", "run_span", "write_csv",
]


# ----- what a command will do ---------------------------------------------------
@dataclass(frozen=True)
class Span:
    """A command's mode (``None``: not a run) and simulated time span (``stop`` may be open)."""

    mode: str | None
    start: float = 0.0
    stop: float | None = None

    @property
    def timed(self) -> bool:
        return self.mode in ("dynamic", "realtime")


def _scenario(command: dict[str, Any]) -> dict[str, Any] | None:
    """The scenario a ``run`` command asks for (a template is expanded locally), or None."""
    if command.get("cmd") != "run":
        return None
    if isinstance(command.get("scenario"), dict):
        scenario: dict[str, Any] = command["scenario"]
        return scenario
    if "template" in command:
        try:
            from scenario_builder import expand_template

            return expand_template(command["template"], command.get("args", {}))
        except Exception:  # noqa: BLE001  (the controller will say what is wrong)
            return None
    return None


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def run_span(command: dict[str, Any]) -> Span:
    """Mode and ``time.start``/``time.stop`` of a ``run`` command (``Span(None)`` otherwise)."""
    scenario = _scenario(command)
    if scenario is None:
        return Span(None)
    mode = scenario.get("mode", "static")
    raw_time = scenario.get("time")
    time: dict[str, Any] = raw_time if isinstance(raw_time, dict) else {}
    start = as_number(time.get("start", 0.0))
    return Span(mode if isinstance(mode, str) else None,
                0.0 if start is None else start, as_number(time.get("stop")))


def output_units(command: dict[str, Any]) -> dict[str, str]:
    """``{"element.port": unit}`` for the output ports of a run's elements, from the
    local model library (used to group a plot's curves; empty where unknown)."""
    scenario = _scenario(command)
    elements = scenario.get("elements") if scenario else None
    if not isinstance(elements, dict):
        return {}
    try:
        from modellib import describe_models

        models = describe_models()
    except Exception:  # noqa: BLE001  (units only label a plot)
        return {}
    units: dict[str, str] = {}
    for name, element in elements.items():
        model = models.get(str(element.get("model"))) if isinstance(element, dict) else None
        for port in (model or {}).get("outputs", []):
            units[f"{name}.{port['name']}"] = str(port.get("unit", ""))
    return units


def result_units(reply: dict[str, Any]) -> dict[str, str]:
    """``{"element.port": unit}`` as a run's ``result`` says them (the scenario's
    ``units`` applied), or empty."""
    found = reply.get("units") if reply.get("type") == "result" else None
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items() if isinstance(v, str)}


# ----- the series of a run ------------------------------------------------------
@dataclass
class Series:
    """Columns of a run's result: ``t`` and one list per output (``t`` is None for a
    static result, whose columns then hold one value each)."""

    t: list[float] | None
    values: dict[str, list[Any]]

    @property
    def rows(self) -> int:
        if self.t is not None:
            return len(self.t)
        return 1 if self.values else 0


def _seq(reply: dict[str, Any]) -> float:
    seq = reply.get("seq")
    return seq if isinstance(seq, int) else math.inf


def collect_series(replies: Iterable[dict[str, Any]]) -> Series | None:
    """The series of a run from its replies (any order; sorted by ``seq``).

    ``data`` replies (``t`` and ``values`` columns, chunked or realtime) come
    first, then a dynamic ``result``'s own ``t``/``values``; an output missing
    from some chunk is padded with None. A static result (``values`` of single
    numbers) gives one row with ``t`` None. None when there is nothing to collect.
    """
    ordered = sorted(replies, key=_seq)
    t: list[float] = []
    columns: dict[str, list[Any]] = {}

    def extend(times: Any, values: Any) -> None:
        if not isinstance(times, list):
            return
        n = len(times)
        values = values if isinstance(values, dict) else {}
        for name, column in values.items():
            if name not in columns:
                columns[name] = [None] * len(t)
            part = column if isinstance(column, list) else [column] * n
            columns[name].extend((part + [None] * n)[:n])
        for name, column in columns.items():
            if name not in values:
                column.extend([None] * n)
        t.extend(times)

    result = None
    for reply in ordered:
        if reply.get("type") == "data":
            extend(reply.get("t"), reply.get("values"))
        elif reply.get("type") == "result":
            result = reply
            break
    if result is not None and isinstance(result.get("t"), list):
        extend(result["t"], result.get("values"))
    if t or columns:
        return Series(t, columns)
    values = result.get("values") if result is not None else None
    if isinstance(values, dict) and values:
        return Series(None, {name: [value] for name, value in values.items()})
    return None


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str | bool):
        return str(value)
    return json.dumps(value)


def write_csv(path: str | Path, series: Series, units: dict[str, str] | None = None) -> int:
    """Write ``series`` as CSV (``t`` then one column per output; a static result: one
    row of values, no ``t``); the header names each column with its unit where known
    (``tank.level [m]``, ``t [s]``); return the number of data rows written."""
    names = list(series.values)
    units = units or {}
    header = [f"{name} [{units[name]}]" if units.get(name) else name for name in names]
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        if series.t is None:
            out.writerow(header)
            out.writerow([csv_cell(series.values[name][0]) for name in names])
            return 1
        out.writerow(["t [s]", *header])
        for i, t in enumerate(series.t):
            out.writerow([csv_cell(t), *(csv_cell(series.values[name][i]) for name in names)])
    return len(series.t)


def as_floats(values: Sequence[Any]) -> list[float]:
    out = []
    for value in values:
        number = as_number(value)
        out.append(math.nan if number is None else number)
    return out


class StaticPlotError(ValueError):
    """A static result has no time series to plot."""


def plot_series(path: str | Path, series: Series, *, title: str,
                units: dict[str, str] | None = None) -> None:
    """Draw ``series`` against time into ``path`` (PNG, or SVG/PDF by the suffix) with
    matplotlib's Agg backend: one subplot per unit (outputs of unknown unit get one
    each), x = time in s, ``title`` on top. A static series raises :class:`StaticPlotError`."""
    if series.t is None:
        raise StaticPlotError("a static result has one value per output, not a time series: "
                              "there is nothing to plot (--csv writes the values)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    units = units or {}
    groups: dict[str, list[str]] = {}
    for name in series.values:
        unit = units.get(name)
        groups.setdefault(f"[{unit}]" if unit else name, []).append(name)
    if not groups:
        groups = {"": []}
    fig = Figure(figsize=(9.0, 1.0 + 2.4 * len(groups)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    t = as_floats(series.t)
    for ax, (label, names) in zip(axes, groups.items(), strict=True):
        for name in names:
            ax.plot(t, as_floats(series.values[name]), label=name)
        ax.set_ylabel(label if label.startswith("[") or not names else names[0])
        ax.grid(True, alpha=0.3)
        if names:
            ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("time [s]")
    fig.suptitle(title)
    fig.savefig(str(path), dpi=100)
