"""``twinctl send`` of a sweep, without a controller: the table from the replies (whole
or streamed), its CSV, its plot, its progress and how it is printed."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from twinctl import display, sweeptable

COMMAND = {"id": "s-1", "cmd": "run", "scenario": {}, "sweep": {
    "grid": {"pump.speed": [1200, 1300], "line.static_head": [4, 8]},
    "collect": ["line.flow"], "objective": {"maximize": "line.flow"}}}
COLUMNS = ["case", "pump.speed", "line.static_head", "line.flow"]
ROWS = [[0, 1200, 4, 86.3], [1, 1200, 8, 78.4], [2, 1300, 4, 94.8], [3, 1300, 8, None]]
UNITS = {"pump.speed": "rpm", "line.static_head": "m", "line.flow": "m3/h"}


def replies(*, streamed: bool = False) -> list[dict[str, Any]]:
    data = [{"type": "data", "seq": 1 + k, "chunk": k, "columns": COLUMNS,
             "progress": {"done": 2 * (k + 1), "total": 4}, "rows": ROWS[2 * k:2 * k + 2]}
            for k in (1, 0)]  # chunks end in any order
    data[0]["failed"] = {"3": {"code": "runtime_error", "message": "no operating point"}}
    result: dict[str, Any] = {
        "type": "result", "seq": 3, "id": "s-1", "status": "ok", "columns": COLUMNS,
        "units": UNITS, "failed": {"3": {"code": "runtime_error", "message": "no operating point"}},
        "best": {"case": 2, "pump.speed": 1300, "line.static_head": 4, "line.flow": 94.8,
                 "objective": "maximize line.flow"},
        "stats": {"cases": 4, "done": 4, "failed": 1, "dropped": 0, "chunks": 2}}
    if streamed:
        result.update(streamed=True, chunks=2)
    else:
        result["rows"] = ROWS
    return [{"type": "ack", "seq": 0, "queue": "twin.sweep", "cases": 4}, *data, result]


@pytest.mark.parametrize("streamed", [False, True])
def test_the_table_comes_from_the_result_or_from_the_data_replies(streamed: bool) -> None:
    table = sweeptable.collect_table(replies(streamed=streamed), COMMAND)
    assert table is not None
    assert table.columns == COLUMNS and table.rows == ROWS
    assert table.swept == ["pump.speed", "line.static_head"]
    assert table.collected == ["line.flow"]
    assert set(table.failed) == {"3"}


def test_a_data_reply_repeated_on_the_wire_gives_each_case_once() -> None:
    got = replies(streamed=True)
    table = sweeptable.collect_table([*got, got[1]], COMMAND)
    assert table is not None and table.rows == ROWS


def test_the_csv_has_one_row_per_case_and_the_units_in_its_header(tmp_path: Path) -> None:
    table = sweeptable.collect_table(replies(), COMMAND)
    assert table is not None
    assert sweeptable.write_table_csv(tmp_path / "t.csv", table, UNITS) == 4
    with open(tmp_path / "t.csv", newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["case", "pump.speed [rpm]", "line.static_head [m]", "line.flow [m3/h]"]
    assert lines[4] == ["3", "1300", "8", ""]


def test_the_plot_draws_a_collected_value_against_a_swept_path(tmp_path: Path) -> None:
    table = sweeptable.collect_table(replies(), COMMAND)
    assert table is not None
    assert sweeptable.plot_choice(table, None, None) == ("pump.speed", "line.flow",
                                                         "line.static_head")
    assert sweeptable.plot_choice(table, "line.static_head", None)[2] == "pump.speed"
    with pytest.raises(sweeptable.PlotChoiceError, match="not a swept path"):
        sweeptable.plot_choice(table, "line.flow", None)
    with pytest.raises(sweeptable.PlotChoiceError, match="not a collected value"):
        sweeptable.plot_choice(table, None, "pump.speed")
    out = tmp_path / "sweep.png"
    assert sweeptable.plot_table(out, table, title="s-1", units=UNITS) == ("pump.speed",
                                                                          "line.flow")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_the_size_of_a_sweep_is_read_from_its_command() -> None:
    assert sweeptable.sweep_size(COMMAND) == 4
    assert sweeptable.sweep_size({"sweep": {"cases": [{}, {}, {}]}}) == 3
    assert sweeptable.sweep_size({"sweep": {"sample": {"n": 50, "vars": {}}}}) == 50
    assert sweeptable.sweep_size({"cmd": "run"}) is None
    assert sweeptable.is_sweep(COMMAND) and not sweeptable.is_sweep({"cmd": "run"})


def test_the_progress_bar_counts_cases() -> None:
    bar = display.SweepProgress(None, Console(file=io.StringIO()))
    for reply in replies():
        bar.update(reply)
    task = bar.progress.tasks[0]
    assert task.total == 4 and task.completed == 4 and bar.state == "ok"


def test_a_sweep_result_is_printed_as_its_table_with_the_best_and_the_failed() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160)
    for reply in replies():
        display.print_reply(reply, console)
    text = out.getvalue()
    assert "data chunk 1: 2 case(s), 4 of 4 done" in text
    assert "result s-1: ok, 4 of 4 case(s) done, 1 failed" in text
    assert "line.flow [m3/h]" in text and "94.8" in text
    assert "best (maximize line.flow): case 2" in text
    assert "case 3 failed: runtime_error: no operating point" in text
