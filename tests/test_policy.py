"""Deployment policy and limits (ingress/policy.py, ingress/limits.py), their settings,
and "no code path runs code or imports modules named by a message" (the registries).

Unit tests on plain objects; tests/test_e2e_limits.py runs the same over MQTT.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from common.settings import SettingsError, load_settings
from ingress.errors import LimitExceeded, NotPermitted
from ingress.limits import check_args, check_elements, check_series, check_steps, points
from ingress.policy import Policy
from modellib import get_model
from modellib.errors import CodedError, UnknownFunction, UnknownModel
from modellib.functions import call_function, check_call, get_function
from scenario_builder import check_scenario, expand_template
from scenario_builder.errors import UnknownTemplate

ROOT = Path(__file__).resolve().parent.parent


def policy(**env: str) -> Policy:
    return Policy.from_settings(load_settings(env))


# ----- settings -----------------------------------------------------------------------

def test_unset_or_blank_allows_everything() -> None:
    s = load_settings({"TWIN_ALLOW_MODELS": "  "})
    assert (s.allow_commands, s.allow_models, s.allow_functions, s.allow_modes) == (
        None, None, None, None)
    p = Policy.from_settings(s)
    assert "run" in p.allowed_commands() and "Tank" in p.allowed_models()
    assert p.allowed_modes() == ["static", "dynamic", "realtime"]
    assert (s.max_elements, s.max_steps, s.max_series, s.max_jobs_per_client) == (
        500, 10_000_000, 1_000_000, 0)


def test_the_lists_are_read_and_passed_on() -> None:
    env = {"TWIN_ALLOW_COMMANDS": "ping, describe,run,jobs", "TWIN_ALLOW_MODELS": "Tank,Pipe",
           "TWIN_ALLOW_FUNCTIONS": "mean", "TWIN_ALLOW_MODES": "static,dynamic",
           "TWIN_MAX_ELEMENTS": "20", "TWIN_MAX_STEPS": "1000", "TWIN_MAX_SERIES": "50",
           "TWIN_MAX_JOBS_PER_CLIENT": "4", "TWIN_SOFT_TIME_LIMIT": "60",
           "TWIN_MQTT_URL": "mqtt://h:1883", "TWIN_REDIS_URL": "redis://h:6379/0"}
    s = load_settings(env)
    assert s.allow_commands == ("ping", "describe", "run", "jobs")
    assert s.allow_models == ("Tank", "Pipe")
    assert (s.max_elements, s.max_steps, s.max_series, s.max_jobs_per_client,
            s.soft_time_limit) == (20, 1000, 50, 4, 60)
    assert load_settings(s.to_env()) == s
    p = Policy.from_settings(s)
    assert p.allowed_commands() == ["ping", "describe", "run", "jobs"]  # protocol order
    assert p.allowed_models() == ["Pipe", "Tank"]
    assert p.allowed_modes() == ["static", "dynamic"]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TWIN_ALLOW_COMMANDS": "ping,rnu"}, "'rnu' is not a command"),
        ({"TWIN_ALLOW_MODELS": "Tank,CentrifugalPmp"}, "did you mean 'CentrifugalPump'"),
        ({"TWIN_ALLOW_FUNCTIONS": "os.system"}, "'os.system' is not a function"),
        ({"TWIN_ALLOW_MODES": "fast"}, "known modes: static, dynamic, realtime"),
        ({"TWIN_ALLOW_MODELS": ","}, "give model names"),
        ({"TWIN_MAX_ELEMENTS": "0"}, "between"),
        ({"TWIN_MAX_JOBS_PER_CLIENT": "many"}, "whole number"),
        ({"TWIN_SOFT_TIME_LIMIT": "-1"}, "TWIN_SOFT_TIME_LIMIT"),
    ],
)
def test_a_wrong_policy_setting_is_one_clear_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError) as info:
        policy(**env)
    assert words in str(info.value) and "\n" not in str(info.value)


# ----- policy -------------------------------------------------------------------------

def _refused(fn: Any) -> NotPermitted:
    with pytest.raises(NotPermitted) as info:
        fn()
    assert info.value.code == "not_permitted"
    return info.value


def test_models_modes_and_functions_outside_the_policy_are_refused_with_their_path() -> None:
    p = policy(TWIN_ALLOW_MODELS="Tank,Pipe", TWIN_ALLOW_FUNCTIONS="mean,max",
               TWIN_ALLOW_MODES="dynamic")
    scenario = {"mode": "dynamic", "elements": {
        "t": {"model": "Tank"}, "pump": {"model": "CentrifugalPump", "instance": "P-101"}},
        "post": [{"function": "mean"}, {"function": "rms"}]}
    exc = _refused(lambda: p.check_scenario(scenario))
    assert exc.path == "scenario.elements.pump.model"
    assert "'CentrifugalPump'" in exc.message and "instance 'P-101'" in exc.message
    assert "allowed models: Pipe, Tank" in exc.message
    scenario["elements"].pop("pump")
    exc = _refused(lambda: p.check_scenario(scenario))
    assert exc.path == "scenario.post[1].function" and "allows: max, mean" in exc.message
    exc = _refused(lambda: p.check_scenario({**scenario, "mode": "static", "post": []}))
    assert exc.path == "scenario.mode" and "runs: dynamic" in exc.message
    exc = _refused(lambda: p.check_scenario({"elements": {"t": {"model": "Tank"}}}))
    assert exc.path == "scenario.mode"  # the default mode is static
    exc = _refused(lambda: p.check_scenario({**scenario, "mode": "static"},
                                            template="tank_draining"))
    assert exc.path == "template" and exc.message.startswith("template 'tank_draining': ")
    exc = _refused(lambda: p.check_function("rms", "function"))
    assert exc.path == "function" and "'rms'" in exc.message
    exc = _refused(lambda: p.check_instance({"id": "X", "model": "Valve"}))
    assert exc.path == "instance.model"
    p.check_scenario({"mode": "dynamic", "elements": {"t": {"model": "Tank"}},
                      "post": [{"function": "max"}]})


def test_unknown_or_malformed_names_are_left_to_the_libraries() -> None:
    """A name that is no model is `unknown_model` (with its hint), not `not_permitted`."""
    p = policy(TWIN_ALLOW_MODELS="Tank", TWIN_ALLOW_FUNCTIONS="mean", TWIN_ALLOW_MODES="static")
    p.check_scenario({"mode": "sideways", "elements": {"a": {"model": "Tnak"},
                                                       "b": {"model": 3}, "c": "x"},
                      "post": [{"function": "os.system"}, "x"]})
    p.check_scenario("not a scenario")
    p.check_function(None, "function")


def test_commands_outside_the_policy() -> None:
    from ingress.commands import parse_command

    allowed = ("ping", "describe", "run", "jobs")
    cmd = parse_command(b'{"id": "a", "cmd": "ping", "ts": 1}', max_bytes=1000, allowed=allowed)
    assert (cmd.cmd, cmd.ts, cmd.body) == ("ping", 1, {})  # ts is an envelope field
    exc = _refused(lambda: parse_command(b'{"id": "a", "cmd": "call"}', max_bytes=1000,
                                         allowed=allowed))
    assert exc.path == "cmd" and exc.request_id == "a"
    assert "'call'" in exc.message and "allows: ping, describe, run, jobs" in exc.message
    with pytest.raises(CodedError) as info:  # an unknown cmd stays invalid_command
        parse_command(b'{"id": "a", "cmd": "exec"}', max_bytes=1000, allowed=allowed)
    assert info.value.code == "invalid_command"


def test_describe_lists_only_what_is_allowed() -> None:
    from instances import SHIPPED_INSTANCES, InstanceLibrary
    from modellib import describe_models
    from modellib.functions import describe_functions
    from scenario_builder import describe_templates
    from scenario_builder.templates import templates

    full = {"models": describe_models(), "functions": describe_functions(),
            "instances": InstanceLibrary(SHIPPED_INSTANCES).describe(),
            "templates": describe_templates()}
    assert policy().describe(full, templates()) == full
    p = policy(TWIN_ALLOW_MODELS="Tank,HysteresisController", TWIN_ALLOW_FUNCTIONS="mean")
    out = p.describe(full, templates())
    assert sorted(out["models"]) == ["HysteresisController", "Tank"]
    assert list(out["functions"]) == ["mean"]
    assert out["instances"] and {i["model"] for i in out["instances"].values()} == {"Tank"}
    # templates that need a pump or a function not allowed are not offered
    assert sorted(out["templates"]) == ["level_control", "tank_draining"]
    assert p.instance_ids(full["instances"]) == sorted(out["instances"])


# ----- limits -------------------------------------------------------------------------

def _limit(fn: Any) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as info:
        fn()
    assert info.value.code == "limit_exceeded"
    return info.value


def test_elements_per_scenario() -> None:
    scenario = {"elements": {f"e{i}": {"model": "Tank"} for i in range(6)}}
    check_elements(scenario, 6)
    exc = _limit(lambda: check_elements(scenario, 5))
    assert exc.path == "scenario.elements"
    assert "6 elements" in exc.message and "at most 5" in exc.message
    assert "TWIN_MAX_ELEMENTS" in exc.message
    assert exc.as_reply()["limit"] == 5
    check_elements({"elements": "junk"}, 1)


def test_points_of_a_series() -> None:
    assert points([1, 2, 3], 10) == 3
    assert points([[1, 2], [3, [4, 5]]], 10) == 5
    assert points(7, 10) == 0
    assert points(list(range(1000)), 10) == 1000  # (counts a flat list whole)
    assert points([[0] * 5 for _ in range(1000)], 10) <= 20  # stops early


def test_series_length() -> None:
    scenario = {"inputs": {"p.speed": {"t": list(range(11)), "v": [1] * 11}, "p.flow": 0.1},
                "post": [{"function": "mean", "args": {"x": "p.power"}},
                         {"function": "mean", "args": {"x": [1.0] * 12}}]}
    exc = _limit(lambda: check_series(scenario, 10))
    assert exc.path == "scenario.inputs.p.speed"
    assert "11 points" in exc.message and "TWIN_MAX_SERIES" in exc.message
    scenario["inputs"]["p.speed"] = {"t": [0, 1], "v": [1, 2]}
    exc = _limit(lambda: check_series(scenario, 10))
    assert exc.path == "scenario.post[1].args.x"
    check_series(scenario, 12)
    exc = _limit(lambda: check_args({"x": [[1, 2, 3]] * 4, "n": 3}, 10))
    assert exc.path == "args.x" and "more than 10 points" in exc.message
    exc = _limit(lambda: check_args({"speed": {"t": [0] * 11, "v": [0] * 11}}, 10))
    assert exc.path == "args.speed"


def _checked(mode: str, **time: Any) -> Any:
    sc: dict[str, Any] = {"mode": mode, "elements": {"lag": {"model": "FirstOrderLag",
                                                             "params": {"time_constant": 1}}},
                          "inputs": {"lag.u": 1.0}, "time": time}
    return check_scenario(sc)


def test_steps_per_run() -> None:
    check_steps(_checked("dynamic", start=0, stop=100, step=1), 101)  # 0, 1, …, 100
    exc = _limit(lambda: check_steps(_checked("dynamic", start=0, stop=100, step=1), 100))
    assert exc.path == "scenario.time.step" and "101 rows" in exc.message
    assert "TWIN_MAX_STEPS" in exc.message and "time.step larger" in exc.message
    # a last, shorter step counts
    exc = _limit(lambda: check_steps(_checked("dynamic", start=0, stop=100.5, step=1), 101))
    assert "102 rows" in exc.message
    exc = _limit(lambda: check_steps(_checked("realtime", start=0, stop=10, step=0.01), 1000))
    assert "1001 ticks" in exc.message and exc.path == "scenario.time.step"
    check_steps(_checked("realtime", start=0, step=0.01), 1)  # open-ended: until `stop`


def test_results_are_bounded_by_bytes_when_the_command_arrives() -> None:
    """Rows times outputs, not rows alone: a run whose answer would be too large for the
    broker (or the worker's memory) is refused before anything runs; a long series is
    streamed in chunks that fit in one message."""
    from ingress.limits import BYTES_PER_VALUE, check_result_bytes, chunk_rows

    dyn = _checked("dynamic", start=0, stop=100, step=1)  # 101 rows
    width = BYTES_PER_VALUE * (len(dyn.outputs) + 1)
    check_result_bytes(dyn, 101 * width, 1 << 20)
    exc = _limit(lambda: check_result_bytes(dyn, 101 * width - 1, 1 << 20))
    assert exc.path == "scenario.outputs" and "TWIN_MAX_RESULT_BYTES" in exc.message
    assert "101 rows" in exc.message and "fewer" in exc.message
    assert chunk_rows(dyn, 10_000, 1 << 20) == min(10_000, (1 << 20) // width)
    assert chunk_rows(dyn, 10_000, 10 * width) == 10 and chunk_rows(dyn, 10_000, 1) == 1
    rt = _checked("realtime", start=0, step=0.01)  # publishes every 10 ticks by default
    check_result_bytes(rt, 1, 10 * width)  # (the whole series of a real-time run streams)
    exc = _limit(lambda: check_result_bytes(rt, 1, 10 * width - 1))
    assert exc.path == "scenario.realtime.publish_every" and "TWIN_MAX_MESSAGE_BYTES" in exc.message


# ----- names in messages never reach an import or an attribute --------------------------

HOSTILE = ["os.system", "__import__", "..", "../../etc/passwd", "modellib.base.Model",
           "Model", "__class__", "__init__", "builtins.eval", "subprocess.Popen", "", " Tank"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_unknown_in_every_registry(name: str) -> None:
    with pytest.raises(UnknownModel):
        get_model(name)
    with pytest.raises(UnknownFunction):
        get_function(name)
    with pytest.raises(UnknownFunction):
        check_call(name, {}, path="args")
    with pytest.raises(UnknownFunction):
        call_function(name, {"x": [1]})
    with pytest.raises(UnknownTemplate):
        expand_template(name, {})
    with pytest.raises(UnknownModel) as info:
        check_scenario({"elements": {"e": {"model": name}}})
    assert info.value.path == "scenario.elements.e.model"


_DYNAMIC = {"import_module", "__import__", "eval", "exec", "compile", "getattr", "setattr",
            "delattr", "loads", "load"}
_ALLOWED = {
    # the packages import their own modules, found by pkgutil in their folder at start-up
    ("modellib/models/__init__.py", "import_module"),
    ("modellib/functions/__init__.py", "import_module"),
    # a model's method by a name that is a literal at every call site (checked below)
    ("scenario_builder/dynamic.py", "getattr"),
    # json.loads of messages; yaml and pickle are not used on this path at all
    ("*", "loads"),
}


def test_no_message_path_imports_or_looks_up_attributes_by_name() -> None:
    """Every call that could turn a string into code or an attribute, in the packages
    a command passes through, has a literal name or is one of the reviewed few."""
    found = []
    for package in ("ingress", "tasks", "scenario_builder", "modellib", "instances"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text("utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names]
                    module = getattr(node, "module", None) or ""
                    assert not {"pickle", "marshal", "shelve", "dill"} & {
                        *names, module}, f"{rel}:{node.lineno} imports a code loader"
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else (
                    fn.attr if isinstance(fn, ast.Attribute) else "")
                if name not in _DYNAMIC:
                    continue
                if name in ("getattr", "setattr", "delattr") and len(node.args) >= 2 \
                        and isinstance(node.args[1], ast.Constant):
                    continue
                if name == "compile" and not isinstance(fn, ast.Name):
                    continue  # re.compile
                if name == "load" and not (isinstance(fn, ast.Attribute) and isinstance(
                        fn.value, ast.Name) and fn.value.id in ("pickle", "marshal", "yaml")):
                    continue  # marshmallow's schema.load and the like
                if (rel, name) in _ALLOWED or ("*", name) in _ALLOWED:
                    continue
                found.append(f"{rel}:{node.lineno} {name}(...)")
    assert not found, "review these: a message's string must never choose code: " + \
        ", ".join(found)
    # the one dynamic getattr: every caller names the method literally
    tree = ast.parse((ROOT / "scenario_builder" / "dynamic.py").read_text("utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr == "_call"]
    assert calls and all(isinstance(c.args[1], ast.Constant) for c in calls)


def test_celery_accepts_json_only() -> None:
    """A message serialized otherwise (pickle: code) is refused by every worker
    (tests/test_e2e_limits.py injects one into a real queue)."""
    from kombu.serialization import registry

    from tasks import celeryconfig, serializer

    assert celeryconfig.accept_content == ["json", serializer.CONTENT_TYPE]
    assert celeryconfig.result_accept_content == ["json"]
    assert celeryconfig.result_serializer == celeryconfig.task_serializer == "json"
    from tasks import jobs  # the job tasks' messages: JSON, encoded by orjson
    assert {jobs.run.serializer, jobs.call.serializer, jobs.realtime.serializer} == {
        serializer.NAME}
    # which is JSON (orjson's encoding), read back exactly by the standard library
    message = ((["id", "ctl", "topic", {"x": [0.1, 1e300, 10**30]}],
                {"summary": "s"}, {"callbacks": None}))
    ctype, encoding, body = registry.dumps(message, serializer=serializer.NAME)
    assert (ctype, encoding) == (serializer.CONTENT_TYPE, "utf-8")
    assert json.loads(body) == json.loads(json.dumps(message))
    assert registry.loads(body, ctype, encoding)[0][3]["x"][2] == 10**30


def test_instances_are_bounded_in_size_and_number() -> None:
    from ingress.limits import check_instance

    small = {"id": "P-9", "model": "Pipe", "params": {"length": 10.0}}
    check_instance(small, False, 9, max_count=10, max_bytes=1000)
    exc = _limit(lambda: check_instance({**small, "notes": "x" * 2000}, False, 0,
                                        max_count=10, max_bytes=1000))
    assert exc.path == "instance" and "TWIN_MAX_INSTANCE_BYTES" in exc.message
    exc = _limit(lambda: check_instance(small, False, 10, max_count=10, max_bytes=1000))
    assert "TWIN_MAX_INSTANCES = 10" in exc.message and "delete_instance" in exc.message
    check_instance(small, True, 10, max_count=10, max_bytes=1000)  # replacing one is fine
