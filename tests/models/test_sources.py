"""Signal sources: exact values at chosen times. The sources are definitions
(naming after Modelica.Blocks.Sources), so the reference is the defining formula."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from modellib import CodedError, get_model
from modellib.errors import ModelRuntimeError


def y(name: str, time: float, /, **params: Any) -> float:
    model = get_model(name)(params)
    assert model.input_names() == () and model.feedthrough is False
    return model.output(time, {}, {})["y"]


def test_step_before_at_and_after_the_jump() -> None:
    p = {"initial": 2.0, "final": -3.0, "step_time": 1.5}
    assert y("Step", 0.0, **p) == 2.0
    assert y("Step", 1.5 - 1e-12, **p) == 2.0
    assert y("Step", 1.5, **p) == -3.0  # final from step_time on
    assert y("Step", 10.0, **p) == -3.0
    assert y("Step", 0.0) == 1.0  # defaults: 0 -> 1 at t = 0
    step = get_model("Step")(p)
    assert step.time_events(0.0, 10.0) == [1.5]  # the jump: the engine stops there
    assert step.time_events(1.5, 10.0) == []  # (start, stop]: already passed
    assert step.time_events(0.0, 1.5) == [1.5]


def test_ramp() -> None:
    p = {"slope": 0.5, "start_time": 2.0, "initial": 1.0}
    assert y("Ramp", 0.0, **p) == 1.0
    assert y("Ramp", 2.0, **p) == 1.0
    assert y("Ramp", 6.0, **p) == 1.0 + 0.5 * 4.0
    assert y("Ramp", 3.0, slope=-2.0) == -6.0
    assert get_model("Ramp")(p).time_events(0.0, 5.0) == [2.0]  # the kink
    assert get_model("Ramp")(p).time_events(2.5, 5.0) == []


def test_sine_at_quarter_periods() -> None:
    p = {"amplitude": 3.0, "frequency": 2.0, "offset": 1.0}
    # period 0.5 s: t = 0 -> offset; T/4 = 0.125 s -> offset + amplitude; 3T/4 -> minimum
    assert y("Sine", 0.0, **p) == 1.0
    assert y("Sine", 0.125, **p) == 4.0
    assert y("Sine", 0.375, **p) == -2.0
    assert y("Sine", 0.25, **p) == pytest.approx(1.0, abs=1e-15)
    # a phase of pi/2 makes it a cosine
    assert y("Sine", 0.0, **p, phase=math.pi / 2) == 4.0
    # no jumps; steps of at most a sixteenth of the period
    sine = get_model("Sine")(p)
    assert sine.time_events(0.0, 10.0) == [] and sine.max_step() == 0.5 / 16


T_TAB, V_TAB = [0.0, 1.0, 3.0], [10.0, 20.0, 0.0]


@pytest.mark.parametrize(
    ("t", "linear", "previous"),
    [
        (-1.0, 10.0, 10.0),   # before the table: hold the first value
        (0.0, 10.0, 10.0),
        (0.25, 12.5, 10.0),
        (1.0, 20.0, 20.0),    # at a breakpoint: its value for both
        (2.0, 10.0, 20.0),    # halfway 20 -> 0
        (2.999, 0.01, 20.0),
        (3.0, 0.0, 0.0),
        (7.0, 0.0, 0.0),      # after the table: hold the last value
    ],
)
def test_table_linear_and_previous(t: float, linear: float, previous: float) -> None:
    assert y("TableSource", t, t=T_TAB, v=V_TAB) == pytest.approx(linear, abs=1e-12)
    assert y("TableSource", t, t=T_TAB, v=V_TAB, interpolation="previous") == previous


def test_table_single_point_events_and_no_extrapolation() -> None:
    assert y("TableSource", 5.0, t=[1.0], v=[4.0]) == 4.0
    table = get_model("TableSource")({"t": T_TAB, "v": V_TAB, "extrapolation": "error"})
    assert table.time_events(0.0, 10.0) == [1.0, 3.0]  # (start, stop]: not t = 0 itself
    assert table.time_events(-1.0, 2.0) == [0.0, 1.0]
    assert table.output(3.0, {}, {}) == {"y": 0.0}
    with pytest.raises(ModelRuntimeError) as info:
        table.output(3.5, {}, {})
    assert info.value.code == "runtime_error"


@pytest.mark.parametrize("name", ["Step", "Ramp", "Sine", "TableSource"])
def test_describe_is_json_with_units(name: str) -> None:
    meta = get_model(name).describe()
    json.dumps(meta)
    assert meta["feedthrough"] is False and meta["inputs"] == []
    assert "Modelica" in meta["reference"]
    for kind in ("parameters", "outputs"):
        for var in meta[kind]:
            assert var["unit"] and var["description"], var


@pytest.mark.parametrize(
    ("name", "params", "code", "field"),
    [
        ("Sine", {"frequency": 0.0}, "invalid_argument", "frequency"),
        ("Step", {"step_time": "1"}, "invalid_argument", "step_time"),
        ("TableSource", {"t": [0.0, 1.0]}, "missing_argument", "v"),
        ("TableSource", {"t": [0.0, 1.0], "v": [1.0]}, "invalid_argument", "v"),
        ("TableSource", {"t": [0.0, 1.0, 1.0], "v": [1.0, 2.0, 3.0]}, "invalid_argument", "t"),
        ("TableSource", {"t": [2.0, 1.0], "v": [1.0, 2.0]}, "invalid_argument", "t"),
        ("TableSource", {"t": [], "v": []}, "invalid_argument", "t"),
        ("TableSource", {"t": [0.0], "v": [1.0], "interpolation": "cubic"}, "invalid_argument",
         "interpolation"),
    ],
)
def test_parameter_errors_have_code_and_path(name: str, params: dict, code: str,
                                             field: str) -> None:
    with pytest.raises(CodedError) as info:
        get_model(name)(params)
    assert (info.value.code, info.value.path) == (code, f"params.{field}")
