"""The function library's interface: registry, metadata and every error with its path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modellib.errors import CodedError
from modellib.functions import (
    Function,
    call_function,
    describe_functions,
    function_names,
    get_function,
)


def error(name: Any, args: Any, **kw: Any) -> CodedError:
    with pytest.raises(CodedError) as info:
        call_function(name, args, **kw)
    return info.value


def test_describe_functions_is_json_with_units_and_descriptions() -> None:
    described = describe_functions()
    assert len(described) >= 15
    assert list(described) == function_names()
    json.dumps(described)
    for name, meta in described.items():
        assert meta["name"] == name and meta["description"], name
        assert meta["returns"]["unit"] and meta["returns"]["description"], name
        assert meta["arguments"], name
        for arg in meta["arguments"]:
            assert arg["unit"] and arg["description"], (name, arg)
            assert arg["type"] and isinstance(arg["required"], bool), (name, arg)
            if "default" in arg:
                assert not arg["required"], (name, arg)


def test_the_required_functions_are_there() -> None:
    assert {
        "mean", "min", "max", "std", "percentile", "rms", "moving_average",
        "exponential_smoothing", "resample", "integrate", "efficiency", "deadband",
        "linear_trend", "remove_outliers", "interpolate", "convert_units",
    } <= set(function_names())
    assert issubclass(get_function("mean"), Function)


def test_unknown_function_suggests_the_closest() -> None:
    e = error("meen", {"x": [1]})
    assert (e.code, e.path) == ("unknown_function", "function")
    assert "did you mean 'mean'?" in e.message
    # without a close name, the known ones are listed
    e = error("fourier", {})
    assert e.code == "unknown_function" and "moving_average" in e.message
    # the path follows where the args are: a scenario's post step
    e = error("avg", {}, path="scenario.post[2].args")
    assert e.path == "scenario.post[2].function"
    assert error(3, {}).code == "unknown_function"


@pytest.mark.parametrize(
    ("name", "args", "code", "path", "words"),
    [
        ("mean", {}, "missing_argument", "args.x", ["needs argument 'x'", "list of numbers"]),
        ("mean", None, "missing_argument", "args.x", ["needs argument 'x'"]),
        ("mean", {"x": [1, "2", 3]}, "invalid_argument", "args.x",
         ["item 1 must be a number", "'2'"]),
        ("mean", {"x": "1,2,3"}, "invalid_argument", "args.x", ["list of numbers"]),
        ("mean", {"x": [1, True]}, "invalid_argument", "args.x", ["item 1"]),
        ("mean", {"x": [1, float("nan")]}, "invalid_argument", "args.x", ["finite"]),
        ("mean", {"x": float("inf")}, "invalid_argument", "args.x", ["finite"]),
        ("mean", {"x": [10**400]}, "invalid_argument", "args.x", ["finite"]),
        ("mean", {"x": []}, "invalid_argument", "args.x", ["at least 1 value"]),
        ("mean", {"x": None}, "invalid_argument", "args.x", ["not null"]),
        ("mean", {"x": [1], "xs": [2]}, "invalid_argument", "args.xs",
         ["no argument 'xs'", "did you mean 'x'?"]),
        ("std", {"x": [1, 2], "dof": 1}, "invalid_argument", "args.dof", ["'ddof'"]),
        ("std", {"x": [1, 2], "ddof": 2}, "invalid_argument", "args.ddof", ["less than"]),
        ("std", {"x": [1, 2], "ddof": 0.5}, "invalid_argument", "args.ddof", ["whole"]),
        ("mean", [1, 2, 3], "invalid_argument", "args", ["must be an object"]),
        ("moving_average", {"x": [1, 2, 3], "window": 4}, "invalid_argument", "args.window",
         ["longer than x (3 values)", "at most 3"]),
        ("moving_average", {"x": [1, 2, 3], "window": 0}, "invalid_argument",
         "args.window", [">= 1"]),
        ("moving_average", {"x": [1, 2, 3]}, "missing_argument", "args.window", ["window"]),
        ("exponential_smoothing", {"x": [1], "alpha": 0}, "invalid_argument", "args.alpha",
         ["> 0 and <= 1", "got 0"]),
        ("exponential_smoothing", {"x": [1], "alpha": 1.5}, "invalid_argument", "args.alpha",
         ["<= 1"]),
        ("percentile", {"x": [1, 2], "q": [50, 101]}, "invalid_argument", "args.q",
         ["<= 100", "got 101"]),
        ("percentile", {"x": [1, 2], "q": 5, "method": "median"}, "invalid_argument",
         "args.method", ["one of: linear"]),
        ("integrate", {"t": [0, 1, 1], "x": [1, 2, 3]}, "invalid_argument", "args.t",
         ["increase strictly", "t[2] = 1"]),
        ("integrate", {"t": [0, 1, 2], "x": [1, 2]}, "invalid_argument", "args.x",
         ["2 values", "'t' has 3"]),
        ("integrate", {"t": [0], "x": [1]}, "invalid_argument", "args.t", ["at least 2"]),
        ("efficiency", {"output": [1, 2], "input": [1, 2, 3]}, "invalid_argument",
         "args.input", ["equally long"]),
        ("efficiency", {"output": [1, 2], "input": [1, 2], "t": [1, 0]}, "invalid_argument",
         "args.t", ["increase strictly"]),
        ("resample", {"t": [0, 1], "x": [0, 1], "step": 0}, "invalid_argument", "args.step",
         ["> 0"]),
        ("resample", {"t": [0, 1e9], "x": [0, 1], "step": 1e-3}, "invalid_argument",
         "args.step", ["more than 1000000"]),
        ("interpolate", {"t": [0, 1], "x": [0, 1], "at": [0.5, 1.5]}, "invalid_argument",
         "args.at", ["within t", "1.5"]),
        ("deadband", {"t": [0, 1], "x": [0, 1], "band": -1}, "invalid_argument", "args.band",
         [">= 0"]),
        ("remove_outliers", {"x": [1, 2], "method": "iqr"}, "invalid_argument",
         "args.method", ["hampel, zscore"]),
        ("remove_outliers", {"x": [1, 2], "t": [0]}, "invalid_argument", "args.t",
         ["equally long"]),
        ("linear_trend", {"t": [0, 1], "x": [1, "a"]}, "invalid_argument", "args.x",
         ["item 1"]),
    ],
)
def test_arguments_are_refused_with_their_path(
    name: str, args: Any, code: str, path: str, words: list[str]
) -> None:
    e = error(name, args)
    assert (e.code, e.path) == (code, path), e.message
    for word in words:
        assert word in e.message, e.message
    assert e.as_reply()["path"] == path


def test_the_path_prefix_is_the_callers() -> None:
    e = error("mean", {}, path="scenario.post[0].args")
    assert (e.code, e.path) == ("missing_argument", "scenario.post[0].args.x")


def test_unknown_unit_lists_the_known_ones() -> None:
    e = error("convert_units", {"value": 1, "from_unit": "furlong", "to_unit": "m"})
    assert (e.code, e.path) == ("invalid_argument", "args.from_unit")
    for unit in ("m3/s", "l/min", "psi", "kW", "hp", "degC", "degF", "rpm", "kWh"):
        assert unit in e.message
    # a wrong case gets a hint
    e = error("convert_units", {"value": 1, "from_unit": "kW", "to_unit": "kw"})
    assert e.path == "args.to_unit" and "did you mean 'kW'?" in e.message


def test_units_of_different_quantities_are_refused() -> None:
    e = error("convert_units", {"value": 20, "from_unit": "degC", "to_unit": "kW"})
    assert (e.code, e.path) == ("invalid_argument", "args.to_unit")
    assert "degC" in e.message and "kW" in e.message
    assert "different things" in e.message
    assert "temperature units: K, degC, degF" in e.message


def test_numerical_failures_are_runtime_errors() -> None:
    e = error("mean", {"x": [1e308, 1e308]})  # the sum overflows
    assert e.code == "runtime_error" and "mean" in e.message and "overflow" in e.message
    e = error("efficiency", {"output": [1, 2], "input": [1, -1]})
    assert e.code == "runtime_error" and "input sums to 0" in e.message
    e = error("efficiency", {"output": [1, 2], "input": [1, -1], "t": [0, 1]})
    assert e.code == "runtime_error" and "integrates to 0" in e.message


def test_results_are_plain_json() -> None:
    got = call_function("remove_outliers", {"x": [1, 1, 9, 1, 1], "half_window": 2})
    assert json.loads(json.dumps(got)) == got
    assert all(type(v) is int for v in got["removed"])
    assert all(type(v) is float for v in got["x"])


def test_check_call_refuses_what_call_function_would_without_running() -> None:
    from modellib.functions import check_call

    assert check_call("mean", {"x": [1, 2]}) is get_function("mean")
    # a call that would fail only while running passes the check
    assert check_call("mean", {"x": [1e308, 1e308]}) is get_function("mean")
    with pytest.raises(CodedError) as info:
        check_call("moving_average", {"x": [1], "window": 2}, path="p.args")
    assert (info.value.code, info.value.path) == ("invalid_argument", "p.args.window")
    with pytest.raises(CodedError) as info:
        check_call("nope", {}, function_path="cmd.function")
    assert (info.value.code, info.value.path) == ("unknown_function", "cmd.function")
