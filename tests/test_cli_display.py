"""What ``twinctl`` shows a person, on plain reply dicts: series, CSV, plots, progress,
tables, error lines, JSON log lines. No services."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
from rich.console import Console

from common.logs import JsonFormatter, log_format
from twinctl import display, runs

DYNAMIC = {"id": "r1", "cmd": "run", "scenario": {
    "mode": "dynamic",
    "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"},
                 "tank": {"model": "Tank", "instance": "T-1"}},
    "time": {"start": 10, "stop": 70, "step": 1}}}


def reply(seq: int, rtype: str, **fields: Any) -> dict[str, Any]:
    return {"id": "r1", "controller": "c1", "type": rtype, "seq": seq, **fields}


def console() -> Console:
    return Console(file=io.StringIO(), width=200, force_terminal=False, markup=False)


def text(c: Console) -> str:
    out = c.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


# ----- what a command will do -----------------------------------------------------------
def test_run_span_of_a_scenario_a_template_and_other_commands() -> None:
    assert runs.run_span(DYNAMIC) == runs.Span("dynamic", 10.0, 70.0)
    tpl = {"cmd": "run", "template": "tank_draining", "args": {"stop": 120}}
    assert runs.run_span(tpl) == runs.Span("dynamic", 0.0, 120.0)
    open_ended = {"cmd": "run", "scenario": {"mode": "realtime", "time": {"step": 1}}}
    assert runs.run_span(open_ended) == runs.Span("realtime", 0.0, None)
    static = {"cmd": "run", "scenario": {"elements": {}}}
    assert runs.run_span(static).mode == "static"
    assert runs.run_span({"cmd": "ping"}) == runs.Span(None)
    # a wrong template is the controller's to explain: no span, no crash
    assert runs.run_span({"cmd": "run", "template": "nope"}) == runs.Span(None)


def test_output_units_come_from_the_model_library() -> None:
    units = runs.output_units(DYNAMIC)
    assert units["pump.head"] == "m"
    assert units["tank.outflow"] == "m3/s"
    assert runs.output_units({"cmd": "ping"}) == {}


# ----- series -----------------------------------------------------------------------------
def test_a_dynamic_result_gives_its_columns() -> None:
    replies = [reply(0, "ack", queue="twin.long"),
               reply(1, "result", status="ok", t=[0, 1, 2],
                     values={"tank.level": [3.0, 2.9, 2.8], "pump.head": [1, 2, None]})]
    series = runs.collect_series(replies)
    assert series is not None
    assert series.t == [0, 1, 2]
    assert series.values == {"tank.level": [3.0, 2.9, 2.8], "pump.head": [1, 2, None]}
    assert series.rows == 3


def test_streamed_chunks_are_joined_in_seq_order_and_padded() -> None:
    replies = [
        reply(2, "data", chunk=1, t=[2, 3], values={"a": [2, 3], "b": [20, 30]}),
        reply(0, "ack"),
        reply(1, "data", chunk=0, t=[0, 1], values={"a": [0, 1]}),
        reply(3, "result", status="ok", streamed=True, chunks=2, rows=4),
    ]
    series = runs.collect_series(replies)
    assert series is not None
    assert series.t == [0, 1, 2, 3]
    assert series.values == {"a": [0, 1, 2, 3], "b": [None, None, 20, 30]}


def test_a_realtime_run_is_its_data_replies() -> None:
    replies = [reply(0, "ack", queue="twin.realtime"),
               reply(1, "data", t=[0.0, 0.5], values={"x": [1.0, 1.5]}),
               reply(2, "data", t=[1.0], values={"x": [2.0]}),
               reply(3, "result", status="stopped", stats={"ticks": 3, "overruns": 0})]
    series = runs.collect_series(replies)
    assert series is not None and series.t == [0.0, 0.5, 1.0]
    assert series.values == {"x": [1.0, 1.5, 2.0]}


def test_a_static_result_is_one_row_and_an_error_nothing() -> None:
    series = runs.collect_series([reply(0, "ack"), reply(1, "result", status="ok",
                                                            values={"p.head": 19.65, "p.w": 2})])
    assert series is not None and series.t is None and series.rows == 1
    assert series.values == {"p.head": [19.65], "p.w": [2]}
    assert runs.collect_series([reply(0, "error", code="x", message="m")]) is None
    assert runs.collect_series([reply(0, "pong")]) is None


def test_csv_round_trips_a_series(tmp_path: Path) -> None:
    series = runs.Series([0.0, 0.1, 0.2], {"tank.level": [3.0, 2.999999999999, None],
                                               "tank.outflow": [1e-3, 2, 3.5]})
    path = tmp_path / "out.csv"
    assert runs.write_csv(path, series, {"tank.level": "m"}) == 3
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t [s]", "tank.level [m]", "tank.outflow"]  # (a unit where known)
    assert len(rows) == 4
    back = {name.split(" [")[0]: [float(r[i]) if r[i] else None for r in rows[1:]]
            for i, name in enumerate(rows[0])}
    assert back == {"t": series.t, **series.values}


def test_csv_of_a_static_result_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "static.csv"
    assert runs.write_csv(path, runs.Series(None, {"a": [1.5], "b": [None]})) == 1
    assert path.read_text().splitlines() == ["a,b", "1.5,"]


def test_plot_writes_a_valid_png_one_subplot_per_unit(tmp_path: Path) -> None:
    t = [i * 0.5 for i in range(50)]
    series = runs.Series(t, {"tank.level": [3 - 0.05 * x for x in t],
                                "tank.volume": [x for x in t],
                                "pump.head": [None if i == 3 else 20.0 for i in range(50)]})
    path = tmp_path / "out.png"
    runs.plot_series(path, series, title="job-42",
                        units={"tank.level": "m", "pump.head": "m", "tank.volume": "m3"})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600


def test_plot_refuses_a_static_result(tmp_path: Path) -> None:
    with pytest.raises(runs.StaticPlotError, match="static result"):
        runs.plot_series(tmp_path / "x.png", runs.Series(None, {"a": [1.0]}), title="x")
    assert not (tmp_path / "x.png").exists()


# ----- progress -------------------------------------------------------------------------
def test_progress_bar_follows_simulated_time() -> None:
    c = Console(file=io.StringIO(), width=120, force_terminal=True)
    progress = display.RunProgress(runs.Span("dynamic", 10.0, 70.0), c)
    with progress:
        assert progress.total == 60.0 and progress.completed == 0
        progress.update(reply(0, "ack", queue="twin.long"))
        assert progress.state == "queued on twin.long"
        progress.update(reply(1, "data", chunk=0, t=[10.0, 11.0, 40.0], values={}))
        assert progress.completed == 30.0 and progress.rows == 3
        progress.update(reply(2, "data", chunk=1, t=[41.0, 90.0], values={}))
        assert progress.completed == 60.0  # never past the end
        progress.update(reply(3, "result", status="ok", streamed=True))
        assert progress.completed == 60.0 and progress.state == "ok"
    assert "5 rows" in text(c)


def test_progress_of_an_unstreamed_result_completes_at_the_result() -> None:
    progress = display.RunProgress(runs.Span("dynamic", 0.0, 5.0), console())
    progress.update(reply(0, "ack"))
    assert progress.completed == 0
    progress.update(reply(1, "result", status="ok", t=[0, 1, 2, 3, 4, 5], values={}))
    assert progress.completed == 5.0 and progress.rows == 6


def test_open_ended_realtime_shows_a_spinner_with_time_and_rows() -> None:
    c = Console(file=io.StringIO(), width=120, force_terminal=True)
    progress = display.RunProgress(runs.Span("realtime", 0.0, None), c)
    with progress:
        assert progress.total is None
        progress.update(reply(1, "data", t=[0.0, 1.0, 2.0], values={"x": [1, 2, 3]}))
        progress.update(reply(2, "result", status="stopped", stats={"ticks": 3}))
    out = text(c)
    assert "t = 2 s" in out and "3 rows" in out and "stopped" in out


# ----- readable replies -----------------------------------------------------------------
def test_error_line_is_one_line_with_path_and_hint() -> None:
    err = {"type": "error", "code": "unknown_model", "path": "scenario.elements.pump.model",
           "message": "no model 'CentrifugalPmp'\n(did you mean 'CentrifugalPump'?)",
           "hint": "twinctl describe lists the models"}
    assert display.error_line(err) == (
        "error unknown_model at scenario.elements.pump.model: no model 'CentrifugalPmp' "
        "(did you mean 'CentrifugalPump'?) (hint: twinctl describe lists the models)")
    assert display.error_line({"code": "invalid_json", "message": "bad"}) == \
        "error invalid_json: bad"


def test_a_result_prints_as_a_table_of_its_outputs() -> None:
    out, err = console(), console()
    result = reply(1, "result", status="ok", t=[0, 1], values={"tank.level": [3.0, 2.5]},
                   post={"mean_level": 2.75}, stats={"rows": 2})
    series = runs.collect_series([result])
    display.print_reply(result, out, series=series, units={"tank.level": "m"}, err=err)
    shown = text(out)
    assert "2 rows, t = 0 … 1 s" in shown
    assert "tank.level" in shown and "2.5" in shown and "mean_level = 2.75" in shown
    display.print_reply(reply(2, "error", code="timeout", message="too long"), out, err=err)
    assert text(err).strip() == "error timeout: too long"


def test_a_result_carries_the_units_its_table_shows() -> None:
    """What ``twinctl demo`` and ``send`` print: the units come from the result itself
    (the scenario's ``units`` applied), not only from the local model library."""
    out = console()
    result = reply(1, "result", status="ok", values={"line.flow": 90.0},
                   units={"line.flow": "m3/h"})
    assert runs.result_units(result) == {"line.flow": "m3/h"}
    assert runs.result_units(reply(0, "ack")) == {}
    display.print_reply(result, out, series=runs.collect_series([result]),
                        units=runs.result_units(result))
    assert "m3/h" in text(out)


def test_describe_tables_show_units_unmangled() -> None:
    from modellib import describe_models
    from modellib.functions import describe_functions
    from scenario_builder import describe_templates

    desc = {"type": "description", "models": describe_models(),
            "functions": describe_functions(), "templates": describe_templates(),
            "instances": {"P-101": {"id": "P-101", "model": "CentrifugalPump",
                                    "description": "feed pump", "params": {"efficiency": 0.7}}}}
    c = console()
    display.print_description(desc, c)
    shown = text(c)
    for word in ("Models", "CentrifugalPump", "flow [m3/s]", "Functions", "convert_units",
                 "Instances", "P-101", "efficiency = 0.7", "Templates", "tank_draining",
                 "initial_level [m] = 3"):
        assert word in shown, word


def test_status_table_shows_online_offline_queues_and_outbox() -> None:
    statuses = {
        "c1": {"state": "online", "controller": "c1", "group": "g", "protocol": "5",
               "version": "0.1.0", "queues": {"twin.short": 0, "twin.long": 3},
               "outbox": 7, "ts": "2026-11-29T14:00:00.000Z"},
        "c2": {"state": "offline", "controller": "c2", "group": "g", "ts": "x"},
    }
    c = console()
    c.print(display.status_table(statuses))
    lines = text(c).splitlines()
    row1 = next(line for line in lines if "c1" in line)
    row2 = next(line for line in lines if "c2" in line)
    assert "online" in row1 and " 3 " in row1 and " 7 " in row1
    assert "offline" in row2


# ----- JSON logs --------------------------------------------------------------------------
def test_json_log_formatter_puts_extra_fields_beside_the_message() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("twinctl.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("request %s %s: %s", "job-1", "run", "ack",
                    extra={"request_id": "job-1", "cmd": "run", "outcome": "ack",
                           "duration_ms": 1.25})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "request job-1 run: ack"
    assert first["level"] == "INFO" and first["logger"] == "twinctl.test-json"
    assert first["ts"].endswith("Z") and len(first["ts"]) == 24
    assert (first["request_id"], first["cmd"], first["outcome"], first["duration_ms"]) == \
        ("job-1", "run", "ack", 1.25)
    assert "args" not in first and "msg" not in first
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_log_format_setting() -> None:
    assert log_format({}) == "text"
    assert log_format({"TWIN_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="TWIN_LOG_FORMAT='xml': must be 'text' or 'json'"):
        log_format({"TWIN_LOG_FORMAT": "xml"})


def test_the_cli_log_setup_uses_the_json_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    from twinctl import cli

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        monkeypatch.setenv("TWIN_LOG_FORMAT", "json")
        cli._setup_logging()
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        root.handlers = []
        monkeypatch.setenv("TWIN_LOG_FORMAT", "yaml")
        with pytest.raises(SystemExit, match="TWIN_LOG_FORMAT"):
            cli._setup_logging()
    finally:
        root.handlers = saved
