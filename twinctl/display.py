"""What ``twinctl`` shows a person on the console: a run's progress, readable replies,
the model library and the controllers' status as tables.

Every function here works on plain reply dicts (as they arrive over MQTT) and
writes only to the console it is given, so each is tested without a controller.

- :class:`RunProgress`: a rich progress bar (dynamic, realtime until ``time.stop``)
  or a spinner with the simulated time and rows (open-ended realtime), driven by
  the replies;
- :func:`error_line`, :func:`print_reply`, :func:`print_description`,
  :func:`status_table`: the readable forms of replies, ``describe`` and ``status``.

The series themselves (CSV, plot) are :mod:`twinctl.runs`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .runs import Series, Span, as_floats, as_number, csv_cell

__all__ = [
    "RunProgress", "SweepProgress", "error_line", "make_console", "print_description",
    "print_reply", "status_table", "SHOWN_ROWS", "alarm_line", "alarms_table",
]

SHOWN_ROWS = 20
"""A sweep's table on the console shows at most this many rows (--csv writes them all)."""


# ----- progress -----------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


class RunProgress:
    """A run's progress on ``console`` (stderr), driven by its replies.

    With a ``time.stop``: a bar of simulated time from ``time.start`` to
    ``time.stop``. Without (an open-ended realtime run): a spinner with the
    simulated time and the rows so far. Use as a context manager; :meth:`update`
    with each reply (thread-safe: rich's Progress takes a lock).
    """

    def __init__(self, span: Span, console: Console) -> None:
        self.span = span
        self.rows = 0
        self.t: float | None = None
        self.state = "sent"
        total = None if span.stop is None else max(span.stop - span.start, 0.0)
        columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("{task.description:<10}")]
        if total is not None:
            columns += [BarColumn(), TaskProgressColumn(),
                        TextColumn(f"t = {{task.fields[t]}} / {_fmt(span.stop)} s")]
        else:
            columns += [TextColumn("t = {task.fields[t]} s")]
        columns += [TextColumn("{task.fields[rows]} rows"), TimeElapsedColumn()]
        # stdout stays ours: replies printed there must not be routed to stderr
        self.progress = Progress(*columns, console=console, redirect_stdout=False,
                                 redirect_stderr=False)
        self.task = self.progress.add_task(self.state, total=total, t="-", rows=0)

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    @property
    def total(self) -> float | None:
        return self.progress.tasks[0].total

    @property
    def completed(self) -> float:
        return self.progress.tasks[0].completed

    def _advance_to(self, times: Any) -> None:
        if isinstance(times, list) and times:
            self.rows += len(times)
            last = as_number(times[-1])
            if last is not None:
                self.t = last

    def update(self, reply: dict[str, Any]) -> None:
        kind = reply.get("type")
        finished = False
        if kind == "ack":
            self.state = f"queued on {reply['queue']}" if reply.get("queue") else "queued"
        elif kind == "data":
            self.state = "running"
            self._advance_to(reply.get("t"))
        elif kind == "result":
            self._advance_to(reply.get("t"))
            self.state = str(reply.get("status", "done"))
            finished = self.state in ("ok", "completed")
        elif kind == "error":
            self.state = f"error {reply.get('code', '')}".strip()
        fields: dict[str, Any] = {"description": self.state, "t": _fmt(self.t), "rows": self.rows}
        total = self.total
        if total is not None:
            if finished:
                fields["completed"] = total
            elif self.t is not None:
                fields["completed"] = min(max(self.t - self.span.start, 0.0), total)
        self.progress.update(self.task, **fields)


class SweepProgress:
    """A sweep's progress on ``console`` (stderr): a bar of cases done, from the
    ``progress`` of its ``data`` replies (``total`` from the command where it says)."""

    def __init__(self, total: int | None, console: Console) -> None:
        self.done = 0
        self.state = "sent"
        columns: list[ProgressColumn] = [
            SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(),
            TaskProgressColumn(), TextColumn("{task.completed:.0f} / {task.fields[of]} cases"),
            TimeElapsedColumn()]
        self.progress = Progress(*columns, console=console, redirect_stdout=False,
                                 redirect_stderr=False)
        self.task = self.progress.add_task(self.state, total=total, of=total or "?")

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def update(self, reply: dict[str, Any]) -> None:
        kind = reply.get("type")
        fields: dict[str, Any] = {}
        if kind == "ack":
            self.state = "queued"
            if isinstance(reply.get("cases"), int):
                fields.update(total=reply["cases"], of=reply["cases"])
        elif kind == "data" and isinstance(reply.get("progress"), dict):
            self.state = "running"
            progress = reply["progress"]
            if isinstance(progress.get("done"), int):
                self.done = max(self.done, progress["done"])
            if isinstance(progress.get("total"), int):
                fields.update(total=progress["total"], of=progress["total"])
        elif kind == "result":
            self.state = str(reply.get("status", "done"))
            stats = _dict(reply.get("stats"))
            self.done = max(self.done, int(stats.get("done", 0)))
        elif kind == "error":
            self.state = f"error {reply.get('code', '')}".strip()
        self.progress.update(self.task, description=self.state, completed=self.done, **fields)


# ----- readable replies -------------------------------------------------------
def make_console(file: IO[str] | None = None, *, stderr: bool = False) -> Console:
    """A console on ``file`` (stdout) or stderr; not a terminal: no colour, and the width
    from ``COLUMNS`` or 160, so piped tables are not squeezed to 80 columns."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    width = None
    if not stream.isatty():
        width = int(os.environ.get("COLUMNS", "0") or 0) or 160
    return Console(file=stream, width=width, highlight=False, markup=False)


def error_line(reply: dict[str, Any]) -> str:
    """``error <code> at <path>: <message>`` (+ the hint), on one line."""
    where = f" at {reply['path']}" if reply.get("path") else ""
    line = f"error {reply.get('code')}{where}: {reply.get('message')}"
    if reply.get("hint"):
        line += f" (hint: {reply['hint']})"
    return " ".join(line.split())


def _short(value: Any, limit: int = 120) -> str:
    text = csv_cell(value) if not isinstance(value, float) else f"{value:.6g}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary_table(series: Series, units: dict[str, str]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("output")
    table.add_column("unit")
    if series.t is None:
        table.add_column("value", justify="right")
        for name, column in series.values.items():
            table.add_row(Text(name), Text(units.get(name, "")), Text(_short(column[0])))
        return table
    for head in ("first", "last", "min", "max"):
        table.add_column(head, justify="right")
    for name, column in series.values.items():
        numbers = [v for v in as_floats(column) if not math.isnan(v)]
        row = [f"{numbers[0]:.6g}", f"{numbers[-1]:.6g}", f"{min(numbers):.6g}",
               f"{max(numbers):.6g}"] if numbers else ["-"] * 4
        table.add_row(Text(name), Text(units.get(name, "")), *(Text(c) for c in row))
    return table


def print_reply(reply: dict[str, Any], console: Console, *, series: Series | None = None,
                units: dict[str, str] | None = None, err: Console | None = None) -> None:
    """One reply for a person: an error as one line (on ``err``), an ack or a data chunk as
    one line, a run's result as a table of its outputs, anything else as indented JSON."""
    kind = reply.get("type")
    if kind == "error":
        (err or console).print(Text(error_line(reply)), soft_wrap=True)
        return
    if kind == "ack":
        queue = f": queued on {reply['queue']}" if reply.get("queue") else ""
        console.print(Text(f"ack {reply.get('id')}{queue}"))
        return
    if kind == "alarm":
        console.print(Text(alarm_line(reply)), soft_wrap=True)
        return
    if kind == "data" and isinstance(reply.get("progress"), dict):
        rows = _list(reply.get("rows"))
        progress = reply["progress"]
        console.print(Text(f"data chunk {reply.get('chunk')}: {len(rows)} case(s), "
                           f"{progress.get('done')} of {progress.get('total')} done"))
        return
    if kind == "result" and isinstance(reply.get("columns"), list):
        _print_sweep_result(reply, console)
        return
    if kind == "data":
        raw_times = reply.get("t")
        times: list[Any] = raw_times if isinstance(raw_times, list) else []
        chunk = f" chunk {reply['chunk']}" if "chunk" in reply else ""
        span = (f", t = {_fmt(as_number(times[0]))} … {_fmt(as_number(times[-1]))} s"
                if times else "")
        console.print(Text(f"data{chunk}: {len(times)} rows{span}"))
        return
    if kind == "result" and series is not None:
        head = f"result {reply.get('id')}: {reply.get('status', 'ok')}"
        if series.t:
            head += (f", {len(series.t)} rows, t = {_fmt(as_number(series.t[0]))} … "
                     f"{_fmt(as_number(series.t[-1]))} s")
        console.print(Text(head))
        console.print(_summary_table(series, units or {}))
        for event in _list(reply.get("alarms")):
            console.print(Text(alarm_line(event)), soft_wrap=True)
        for key in ("post", "stats"):
            if isinstance(reply.get(key), dict) and reply[key]:
                items = ", ".join(f"{k} = {_short(v, 60)}" for k, v in reply[key].items())
                console.print(Text(f"{key}: {items}"), soft_wrap=True)
        if reply.get("warnings"):
            console.print(Text(f"warnings: {'; '.join(map(str, reply['warnings']))}"),
                          soft_wrap=True)
        return
    console.print(Text(json.dumps(reply, indent=2)), soft_wrap=True)


def alarm_line(event: dict[str, Any]) -> str:
    """``alarm <name> <event> at t = … s [<state>, <priority>]: <message>`` on one line
    (a live alarm message, or an event of a run's result)."""
    at = f" at t = {_fmt(as_number(event.get('t')))} s" if as_number(event.get("t")) is not None \
        else ""
    tags = ", ".join(str(event[k]) for k in ("state", "priority") if event.get(k))
    text = f"alarm {event.get('alarm')} {event.get('event')}{at}"
    text += f" [{tags}]" if tags else ""
    return text + (f": {event['message']}" if event.get("message") else "")


def alarms_table(alarms: list[dict[str, Any]]) -> Table:
    """The live alarms (the ``alarms`` command's result) as a table."""
    table = Table(show_edge=False, pad_edge=False)
    for head in ("source", "alarm", "state", "priority", "value", "limit", "since", "message"):
        table.add_column(head, justify="right" if head in ("value", "limit") else "left")
    for a in alarms:
        since = as_number(a.get("since"))
        shown = "" if since is None else datetime.fromtimestamp(since).strftime("%H:%M:%S")
        table.add_row(*(Text(str(v)) for v in (
            a.get("source", ""), a.get("alarm", ""), a.get("state", ""), a.get("priority", ""),
            "" if a.get("value") is None else _short(a["value"], 16),
            "" if a.get("limit") is None else _short(a["limit"], 16), shown,
            a.get("message", ""))))
    return table


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _print_sweep_result(reply: dict[str, Any], console: Console) -> None:
    """A sweep's result: a head line, its table (at most :data:`SHOWN_ROWS` rows), the
    best case and the failed cases."""
    columns = [str(c) for c in reply["columns"]]
    units, stats, rows = _dict(reply.get("units")), _dict(reply.get("stats")), \
        _list(reply.get("rows"))
    head = (f"result {reply.get('id')}: {reply.get('status', 'ok')}, "
            f"{stats.get('done', len(rows))} of {stats.get('cases', '?')} case(s) done")
    if stats.get("failed"):
        head += f", {stats['failed']} failed"
    if reply.get("seed") is not None:
        head += f", seed {reply['seed']}"
    console.print(Text(head))
    if reply.get("streamed"):
        console.print(Text("the table came in the data replies (--csv writes it)"))
    table = Table(show_edge=False, pad_edge=False)
    for name in columns:
        unit = units.get(name)
        table.add_column(Text(f"{name} [{unit}]" if unit else name), justify="right")
    for row in rows[:SHOWN_ROWS]:
        table.add_row(*(Text("-" if v is None else _short(v, 30)) for v in row))
    if rows:
        console.print(table)
    if len(rows) > SHOWN_ROWS:
        console.print(Text(f"… {len(rows) - SHOWN_ROWS} more row(s) (--csv writes them all)"))
    best = reply.get("best")
    if isinstance(best, dict):
        shown = ", ".join(f"{k} = {_short(v, 30)}" for k, v in best.items()
                          if k not in ("case", "objective"))
        console.print(Text(f"best ({best.get('objective')}): case {best.get('case')}: {shown}"),
                      soft_wrap=True)
    failed = reply.get("failed")
    if isinstance(failed, dict) and failed:
        for case, entry in list(failed.items())[:5]:
            entry = entry if isinstance(entry, dict) else {}
            console.print(Text(f"case {case} failed: {entry.get('code')}: "
                               f"{entry.get('message')}"), soft_wrap=True)
        if len(failed) > 5:
            console.print(Text(f"… {len(failed) - 5} more failed case(s)"))


# ----- describe -------------------------------------------------------------------
def _var(entry: dict[str, Any], *, default: bool = True) -> str:
    text = str(entry.get("name", "?"))
    if entry.get("unit") not in (None, ""):
        text += f" [{entry['unit']}]"
    if default and "default" in entry:
        text += f" = {_short(entry['default'], 40)}"
    return text


def _lines(entries: Any, *, default: bool = True) -> Text:
    if isinstance(entries, dict):  # {name: spec}
        entries = [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in entries.items()]
    if not isinstance(entries, list):
        return Text("")
    return Text("\n".join(_var(e, default=default) for e in entries if isinstance(e, dict)))


def _first_sentence(text: Any, limit: int = 200) -> str:
    """The first sentence of a description (the whole one is in ``--json`` and the docs)."""
    text = " ".join(str(text or "").split())
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def description_tables(description: dict[str, Any]) -> list[Table]:
    """Tables of a ``description`` reply: models, functions, instances, templates."""
    tables = []
    models = Table(title="Models", show_lines=True)
    models.add_column("model", no_wrap=True)
    models.add_column("description", min_width=20, max_width=50)
    for head in ("parameters", "inputs", "outputs", "states"):  # as wide as their names
        models.add_column(head, overflow="fold")
    for name, m in (description.get("models") or {}).items():
        models.add_row(Text(name), Text(_first_sentence(m.get("description"))),
                       _lines(m.get("parameters")), _lines(m.get("inputs")),
                       _lines(m.get("outputs"), default=False), _lines(m.get("states")))
    tables.append(models)

    functions = Table(title="Functions", show_lines=True, expand=True)
    functions.add_column("function", no_wrap=True)
    functions.add_column("description", ratio=3)
    functions.add_column("arguments", ratio=2)
    for name, f in (description.get("functions") or {}).items():
        functions.add_row(Text(name), Text(str(f.get("description", ""))),
                          _lines(f.get("arguments")))
    tables.append(functions)

    instances = Table(title="Instances", expand=True)
    instances.add_column("instance", no_wrap=True)
    instances.add_column("model", no_wrap=True)
    instances.add_column("description", ratio=2)
    instances.add_column("parameters", ratio=2)
    for iid, inst in (description.get("instances") or {}).items():
        raw_params = inst.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        instances.add_row(Text(iid), Text(str(inst.get("model", ""))),
                          Text(str(inst.get("description", ""))),
                          Text(", ".join(f"{k} = {_short(v, 40)}" for k, v in params.items())))
    tables.append(instances)

    templates = Table(title="Templates", show_lines=True, expand=True)
    templates.add_column("template", no_wrap=True)
    templates.add_column("mode", no_wrap=True)
    templates.add_column("description", ratio=3)
    templates.add_column("arguments", ratio=2)
    for name, tpl in (description.get("templates") or {}).items():
        templates.add_row(Text(name), Text(str(tpl.get("mode", ""))),
                          Text(str(tpl.get("description", ""))), _lines(tpl.get("args")))
    tables.append(templates)
    return tables


def print_description(description: dict[str, Any], console: Console) -> None:
    for table in description_tables(description):
        console.print(table)
        console.print()


# ----- status -----------------------------------------------------------------------
def status_table(statuses: dict[str, dict[str, Any]]) -> Table:
    """One row per controller: state, group, protocol, version, each queue's depth, the
    outbox, and when the status was published."""
    queues = sorted({q for s in statuses.values() if isinstance(s.get("queues"), dict)
                     for q in s["queues"]})
    table = Table(title="Controllers")
    for head in ("controller", "state", "group", "protocol", "version"):
        table.add_column(head, no_wrap=True)
    for q in queues:
        table.add_column(q, justify="right")
    table.add_column("outbox", justify="right")
    table.add_column("since", no_wrap=True)
    for cid, s in statuses.items():
        state = str(s.get("state", "?"))
        raw_depths = s.get("queues")
        depths: dict[str, Any] = raw_depths if isinstance(raw_depths, dict) else {}
        table.add_row(
            Text(cid), Text(state, style="green" if state == "online" else "red"),
            *(Text(str(s.get(k, "-"))) for k in ("group", "protocol", "version")),
            *(Text(str(depths.get(q, "-"))) for q in queues),
            Text(str(s.get("outbox", "-"))), Text(str(s.get("ts", "-"))),
        )
    return table
