"""Property-based fuzzing of the whole controller over MQTT (hypothesis).

More than 10 000 generated and mutated commands go through the real ingress of a
stack of this module's own (real Mosquitto and Redis from the session fixtures,
real ingress and worker processes, ``TWIN_MAX_COMMAND_BYTES`` = 64 KiB so that
oversize commands are cheap), and every one must be answered as PROTOCOL.md
says: a command with a usable id on ``{prefix}/{cid}/reply/{id}``, with a final
``error`` (a code of the protocol's list and a message) or a correct final reply
(``result``, ``pong``, ``description``); one without a usable id with an error on
``{prefix}/{cid}/errors``. Every message must be strict JSON. The ingress must
stay alive with a flat memory, the workers alive, and a valid run must still work
afterwards.

The inputs: wrong types for every field, huge numbers (1e308, 10**400 as a JSON
integer), NaN/Infinity tokens, deep nesting, unicode (lone surrogates, RTL,
emoji, NUL), oversize payloads, missing and unknown fields, every command,
random scenarios (elements, models, ports, connections, inputs, time, solver,
realtime, post), and mutations of valid commands (a key dropped, a type
changed, a special value put in, garbage bytes inserted, the bytes truncated).

How: a fixed batch of hand-picked edge cases first (the warm-up before the
memory is read), then hypothesis draws the rest, deterministically
(``derandomize``), a few commands per example; they are sent in batches of
:data:`BATCH` and the answers of a batch are awaited together, up to a ``ping``
sent last (the ingress handles commands in order and sends its replies in order:
after that ``pong`` only jobs on workers can still answer). Each message gets an
id of its own (so ``duplicate_id`` does not blur the count), except the pairs
that test duplicates on purpose. Runs are kept small so that the test takes well
under a minute: a dynamic run has few rows or is far over the row limit, a
real-time run is short and is sent a ``stop`` at the end of its batch. An
``internal_error`` counts as a finding too: it is a crash, caught.

Problems are collected rather than raised at the first one (hypothesis neither
shrinks nor replays: the commands go to real processes): at the end the test
fails with each kind of finding, how often it happened and the shortest command
that triggered it.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import random
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from modellib import describe_models
from modellib.functions import describe_functions
from tests.conftest import running_stack, stack_env
from tests.orchestrator import subscribed_client
from tests.test_e2e import pump_run
from twinctl.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

MAX_BYTES = 64 * 1024
"""``TWIN_MAX_COMMAND_BYTES`` of the fuzzed stack."""
MESSAGES = 10_000
"""At least this many generated messages (the extra ``stop`` commands not counted)."""
PER_EXAMPLE = 25
BATCH = 100
BATCH_TIMEOUT = 45.0
"""Seconds to wait for the answers of one batch (a few seconds are needed)."""
MAX_RSS_GROWTH_KB = 30 * 1024
STOP_WITHIN = 10.0
"""Seconds in which a real-time run with a short tick must end after its stop was
answered (docs/protocol.md: one tick period plus one publish)."""
TIME_BUDGET = 480.0
"""Seconds of sending after which the test stops sending and fails (it needs ~30 s)."""

ERROR_CODES = frozenset({
    "invalid_json", "invalid_command", "too_large", "duplicate_id", "not_permitted",
    "unknown_model", "unknown_function", "unknown_instance", "unknown_template",
    "missing_argument", "invalid_argument", "invalid_scenario", "unknown_job",
    "limit_exceeded", "runtime_error", "timeout", "internal_error",
})
"""PROTOCOL.md, "Errors"."""
REPLY_TYPES = frozenset({"ack", "error", "data", "result", "pong", "description"})
FINAL = frozenset({"result", "error", "pong", "description"})
COMMANDS = ("ping", "describe", "run", "call", "stop", "set", "jobs", "put_instance",
            "delete_instance")
WITH_ACK = frozenset({"run", "call", "stop", "set", "put_instance", "delete_instance"})
SUCCESS = {"ping": "pong", "describe": "description"}
USABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""PROTOCOL.md's id, matched against the whole string."""
SNIFFED_ID = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
"""docs/protocol.md: a command too large or not JSON whose bytes contain a
well-formed ``"id": "..."`` gets its error on that id's reply topic."""
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"

MODELS = describe_models()
MODEL_NAMES = sorted(MODELS)
FUNCTIONS = describe_functions()
FUNCTION_NAMES = sorted(FUNCTIONS)
INSTANCE_IDS = ["P-101", "P-102", "L-7", "T-1", "V-1", "HX-1", "M-1"]
TEMPLATES = ["pump_to_tank", "tank_draining", "level_control", "pump_operating_point"]
MODES = ["static", "dynamic", "realtime"]


# ----- JSON with tokens json.dumps cannot write ----------------------------------------------
class Raw:
    """A JSON token written as it is: ``NaN``, a 400-digit integer, deep nesting…"""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"

    def __deepcopy__(self, memo: Any) -> Raw:
        return self


def dumps(doc: Any, *, ascii_only: bool = True) -> bytes:
    """``doc`` as JSON bytes; :class:`Raw` tokens go in verbatim. Without ``ascii_only``
    the text is raw UTF-8 (a lone surrogate then gives bytes that are not UTF-8)."""
    raws: list[str] = []

    def walk(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    text = json.dumps(walk(doc), ensure_ascii=ascii_only)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), raw, 1)
    return text.encode("utf-8", "surrogatepass")


def deep(n: int, open_: str = "[", close: str = "]") -> Raw:
    return Raw(open_ * n + close * n)


NAN_TOKENS = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("-NaN")]
HUGE = [1e308, -1e308, 10**400, -(10**400), Raw("1" + "0" * 400), Raw("1e999"), Raw("-1e999"),
        Raw("1E400"), 2**63, -(2**63) - 1, 2**1024, 1.7976931348623157e308]
ODD_TEXT = ["\u202eevil\u202c", "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd",
            "\U0001f600\U0001f680", "a\x00b", "\x00", "\udc80", "\ud800", "x\udfffy", "\ud83d",
            "\ufeff", "e\u0301", "\U0001d518\U0001d52b", "\uffff", "\U0010ffff", "\u2028",
            "a\nb", "'", '"', "\\", "%s%n", "${x}", " ", "", "pump.speed\x00",
            "CentrifugalPump\u200b", "\u0130", "\u00df" * 50]
DEEP = [deep(100), deep(500), deep(900), deep(999), deep(1000), deep(2000), deep(10_000),
        Raw('{"a":' * 3000 + "1" + "}" * 3000), Raw('[{"a":' * 600 + "1" + "}]" * 600)]
SPECIALS = [*HUGE, *ODD_TEXT, *DEEP, 0, -1, -0.0, 0.5, True, False, None, "", "x", [], {},
            [1, 2], {"a": 1}, "1e308", "NaN", [None], [[]], {"": None}]
"""Values put in place of others. No tiny positive numbers: a time constant of
5e-324 is a valid input that keeps a worker busy until TWIN_SOFT_TIME_LIMIT
(600 s: answered `timeout`, but the worker is gone for that long), which is not
what this test is after."""
TYPE_SAMPLES = [None, True, False, 0, -1, 1.5, "", "x", [], [1], {}, {"a": 1}]


def _type(v: Any) -> str:
    if isinstance(v, Raw):
        return "raw"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


# ----- hypothesis strategies -------------------------------------------------------------
odd_text = st.sampled_from(ODD_TEXT)
fair_text = st.one_of(st.text(max_size=30), st.sampled_from(
    [t for t in ODD_TEXT if not any(0xD800 <= ord(c) <= 0xDFFF for c in t)]))
"""text a valid command may carry: no lone surrogates (RFC 8259 lets JSON escape them,
but they are no Unicode text; refusing them is as right as taking them)"""
any_text = st.one_of(st.text(max_size=12), odd_text)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,11}", fullmatch=True)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    any_text, st.sampled_from(HUGE),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(any_text, inner, max_size=3)),
    max_leaves=6,
)
moderate = st.one_of(st.floats(0.1, 100.0), st.integers(-3, 100), st.sampled_from([0, 0.5, -1]))
"""numbers for parameters: no stiff model, no runaway run"""
junk = st.one_of(st.sampled_from(TYPE_SAMPLES), odd_text, st.sampled_from(HUGE))


# The mix (which kind of command, which field to mutate…) comes from one seeded
# random.Random per case: hypothesis favours zeros, the ends of ranges and the
# constants of this module, which is right for values but would skew the mix.
def _pick(rnd: random.Random, options: list[Any]) -> Any:
    return options[rnd.randrange(len(options))]


def _chance(rnd: random.Random, percent: int) -> bool:
    return rnd.randrange(100) < percent


def _num(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def series(lo: float, hi: float, span: float = 10.0) -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(1, 5).flatmap(lambda n: st.builds(
        lambda v: {"t": [round(span * i / max(n - 1, 1), 6) for i in range(n)], "v": v},
        st.lists(_num(lo, hi), min_size=n, max_size=n)))


@dataclass(frozen=True)
class Ref:
    """Resolved when the message is made: the id of a recent job, instance, …"""

    what: str
    pick: int = 0


@st.composite
def static_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    n = draw(names)
    kind = _pick(rnd, ["pump", "pump", "loop", "valve", "hx"])
    if kind == "pump":
        sc = {"mode": "static", "elements": {n: {"model": "CentrifugalPump", "instance": "P-101"}},
              "inputs": {f"{n}.speed": draw(_num(0, 3000)), f"{n}.flow": draw(_num(0, 0.06))}}
    elif kind == "loop":
        sc = {"elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"},
                           n + "x": {"model": "Pipe", "instance": "L-7"}},
              "connections": [{"from": "pump.head", "to": f"{n}x.head"},
                              {"from": f"{n}x.flow", "to": "pump.flow"}],
              "inputs": {"pump.speed": draw(_num(1300, 1800))}}
    elif kind == "valve":
        sc = {"mode": "static", "elements": {n: {"model": "Valve", "instance": "V-1"}},
              "inputs": {f"{n}.opening": draw(_num(0, 1)), f"{n}.dp": draw(_num(0, 2e5))}}
    else:
        sc = {"mode": "static", "elements": {n: {"model": "HeatExchanger", "instance": "HX-1"}},
              "inputs": {f"{n}.hot_inlet_temperature": draw(_num(330, 360)),
                         f"{n}.cold_inlet_temperature": draw(_num(280, 300)),
                         f"{n}.hot_mass_flow": draw(_num(0.1, 5)),
                         f"{n}.cold_mass_flow": draw(_num(0.1, 5))}}
    return {"cmd": "run", "scenario": sc}


@st.composite
def dynamic_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    n = draw(names)
    time_ = {"start": 0, "stop": _pick(rnd, [2, 5, 10, 20]),
             "step": _pick(rnd, [0.5, 1, 2])}
    if _chance(rnd, 50):
        el: dict[str, Any] = {"model": "Tank", "params": {
            "area": draw(_num(0.5, 5)), "outlet_area": draw(_num(0.001, 0.05)),
            "height": draw(_num(3, 10))}, "initial": {"level": draw(_num(0.1, 2.5))}}
        if _chance(rnd, 30):
            el = {"model": "Tank", "instance": "T-1", "initial": el["initial"]}
        sc: dict[str, Any] = {"mode": "dynamic", "elements": {n: el}, "time": time_}
        if _chance(rnd, 50):
            sc["inputs"] = {f"{n}.inflow": draw(st.one_of(_num(0, 0.02), series(0, 0.02)))}
        out = f"{n}.level"
    else:
        sc = {"mode": "dynamic", "elements": {n: {"model": "FirstOrderLag", "params": {
            "time_constant": draw(_num(0.2, 10)), "gain": draw(_num(-5, 5))}}},
            "inputs": {f"{n}.u": draw(st.one_of(_num(-10, 10), series(-10, 10)))},
            "time": time_}
        out = f"{n}.y"
    if _chance(rnd, 60):
        sc["outputs"] = [out]
        if _chance(rnd, 40):
            sc["post"] = [{"function": _pick(rnd, ["mean", "max", "min", "rms"]),
                           "args": {"x": out}, "as": draw(names)}]
    if _chance(rnd, 20):
        sc["solver"] = {"method": _pick(rnd, ["RK45", "RK23", "DOP853", "Radau", "BDF",
                                               "LSODA"]), "rtol": _pick(rnd, [1e-3, 1e-6])}
    return {"cmd": "run", "scenario": sc}


@st.composite
def realtime_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    n = draw(names)
    step = _pick(rnd, [0.01, 0.02, 0.05, 0.1])
    time_: dict[str, Any] = {"start": 0, "step": step}
    if _chance(rnd, 80):
        time_["stop"] = round(step * draw(st.integers(1, 10)), 6)
    rt: dict[str, Any] = {}
    for key, options in (("speed", [1, 2, 5, 10]), ("publish_every", [1, 2, 5, 10]),
                         ("policy", ["catch_up", "skip", "fail"]), ("tolerance", [0.05, 1.0])):
        if _chance(rnd, 50):
            rt[key] = _pick(rnd, options)
    return {"cmd": "run", "scenario": {
        "mode": "realtime",
        "elements": {n: {"model": "FirstOrderLag",
                         "params": {"time_constant": draw(_num(0.2, 5)), "gain": 2}}},
        "inputs": {f"{n}.u": draw(_num(-5, 5))}, "outputs": [f"{n}.y"],
        "time": time_, "realtime": rt}}


@st.composite
def template_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    name = _pick(rnd, TEMPLATES)
    args: dict[str, Any] = {}
    if name == "pump_operating_point":
        if _chance(rnd, 70):
            args["speed"] = draw(_num(1300, 1800))
    else:
        args["stop"] = _pick(rnd, [10, 30, 60])
        args["step"] = _pick(rnd, [1, 2, 5])
        if name == "pump_to_tank" and _chance(rnd, 50):
            args["speed"] = draw(st.one_of(_num(1300, 1700), series(1300, 1700, 10)))
        if name == "level_control" and _chance(rnd, 50):
            args.update(low=1.0, high=2.0, feed=draw(_num(0.01, 0.05)))
    return {"cmd": "run", "template": name, "args": args}


@st.composite
def call_cmd(draw: Any, rnd: random.Random) -> dict[str, Any]:
    fn = _pick(rnd, ["mean", "max", "min", "rms", "std", "integrate", "moving_average",
                      "percentile", "linear_trend", "exponential_smoothing"])
    x = draw(st.lists(_num(-1e6, 1e6), min_size=2, max_size=20))
    t = [float(i) for i in range(len(x))]
    args: dict[str, Any] = {"x": x}
    if fn in ("integrate", "linear_trend"):
        args["t"] = t
    elif fn == "moving_average":
        args["window"] = draw(st.integers(1, len(x)))
    elif fn == "percentile":
        args["q"] = draw(_num(0, 100))
    elif fn == "exponential_smoothing":
        args["alpha"] = draw(_num(0.01, 1))
    return {"cmd": "call", "function": fn, "args": args}


@st.composite
def put_instance(draw: Any, rnd: random.Random) -> dict[str, Any]:
    inst: dict[str, Any] = {"id": Ref("new_instance"), "model": "Tank", "params": {
        "area": draw(_num(0.5, 5)), "outlet_area": draw(_num(0.001, 0.05)),
        "height": draw(_num(1, 10))}}
    if _chance(rnd, 60):
        inst["description"] = draw(fair_text)
    if _chance(rnd, 40):
        inst["tags"] = draw(st.lists(fair_text, max_size=3))
    return {"cmd": "put_instance", "instance": inst}


@st.composite
def valid_command(draw: Any, rnd: random.Random) -> tuple[dict[str, Any], str]:
    """A command that must succeed (or get one of a few errors that depend on timing)."""
    kind = _pick(rnd, ["ping"] * 8 + ["describe"] * 1 + ["jobs"] * 4 + ["static"] * 20
                 + ["dynamic"] * 12 + ["realtime"] * 4 + ["template"] * 6 + ["call"] * 15
                 + ["put_instance"] * 8 + ["delete_instance"] * 5 + ["stop"] * 8 + ["set"] * 5)
    if kind in ("ping", "describe", "jobs"):
        return {"cmd": kind}, kind
    if kind == "static":
        return draw(static_run(rnd)), kind
    if kind == "dynamic":
        return draw(dynamic_run(rnd)), kind
    if kind == "realtime":
        return draw(realtime_run(rnd)), kind
    if kind == "template":
        return draw(template_run(rnd)), kind
    if kind == "call":
        return draw(call_cmd(rnd)), kind
    if kind == "put_instance":
        return draw(put_instance(rnd)), kind
    if kind == "delete_instance":
        return {"cmd": "delete_instance", "instance_id": Ref("instance")}, kind
    if kind == "stop":
        return {"cmd": "stop", "target": Ref("job", draw(st.integers(0, 7)))}, kind
    return {"cmd": "set", "target": Ref("realtime", draw(st.integers(0, 3))),
            "inputs": Ref("realtime_inputs", draw(st.integers(0, 1000)))}, kind


FIELD_NAMES = ["scenario", "template", "args", "function", "instance", "instance_id", "target",
               "inputs", "cmd", "id", "scenario ", "Scenario", "scenaro", "arg", "input",
               "targets", "functions", "instanceId", "pad", "\u0441md", "__proto__"]
CMD_VALUES = [*COMMANDS, *COMMANDS, "pnig", "RUN", "Ping", "run ", "", "\u0440ing", "stop\x00",
              "help", "shutdown", "exec", None, 1, True, [], {}, ["ping"], 1e308]


@st.composite
def time_block(draw: Any, rnd: random.Random) -> Any:
    """Small and valid, far over the row limit, or wrong."""
    kind = _pick(rnd, ["small"] * 5 + ["open"] + ["huge"] * 2 + ["junk"] * 2 + ["missing"])
    if kind == "small":
        return {"start": _pick(rnd, [0, 0, 1, -1]), "stop": _pick(rnd, [1, 2]),
                "step": _pick(rnd, [0.5, 1])}
    if kind == "open":
        return {"start": 0, "step": _pick(rnd, [0.5, 1])}
    if kind == "huge":
        return _pick(rnd, [{"start": 0, "stop": 1e308, "step": 1},
                            {"start": 0, "stop": 1e9, "step": 1e-6},
                            {"start": -1e308, "stop": 1e308, "step": 1},
                            {"start": 0, "stop": 1, "step": 5e-324},
                            {"start": 0, "stop": 10**400, "step": 1}])
    if kind == "missing":
        return {k: v for k, v in {"start": 0, "stop": 1, "step": 0.5}.items()
                if draw(st.booleans())}
    return draw(st.one_of(junk, st.fixed_dictionaries({}, optional={
        "start": junk, "stop": junk, "step": junk, "end": moderate})))


def _ports(chosen: dict[str, str], which: str) -> list[str]:
    out = []
    for name, model in chosen.items():
        for port in MODELS[model][which]:
            out.append(f"{name}.{port['name'].replace('{i}', '0')}")
    return out


@st.composite
def random_scenario(draw: Any, rnd: random.Random) -> Any:
    if _chance(rnd, 5):
        return draw(junk)
    elements: dict[Any, Any] = {}
    chosen: dict[str, str] = {}
    for n in draw(st.lists(st.one_of(names, names, any_text), max_size=4, unique=True)):
        model = draw(st.one_of(*[st.sampled_from(MODEL_NAMES)] * 6, any_text,
                               st.sampled_from(["centrifugalpump", "Tnak", "Pump"])))
        el: dict[str, Any] = {}
        if _chance(rnd, 92):
            el["model"] = model
        if _chance(rnd, 30):
            el["instance"] = draw(st.one_of(st.sampled_from(INSTANCE_IDS), any_text, junk))
        spec = MODELS.get(model) if isinstance(model, str) else None
        if _chance(rnd, 60):
            keys = [p["name"] for p in spec["parameters"]] if spec else []
            el["params"] = draw(st.dictionaries(
                st.one_of(st.sampled_from(keys or ["x"]), any_text),
                st.one_of(moderate, moderate, junk, st.lists(moderate, max_size=3),
                          st.lists(st.lists(moderate, max_size=2), max_size=2)),
                max_size=4))
        if _chance(rnd, 20):
            keys = [s["name"] for s in spec.get("states", [])] if spec else []
            el["initial"] = draw(st.dictionaries(
                st.one_of(st.sampled_from(keys or ["level"]), any_text),
                st.one_of(moderate, junk), max_size=2))
        if _chance(rnd, 8):
            el[draw(any_text)] = draw(json_value)
        elements[n] = el if _chance(rnd, 95) else draw(junk)
        if isinstance(n, str) and spec is not None:
            chosen[n] = model
    ins = _ports(chosen, "inputs") + ["a.b", "pump.speed", "x", ".", "tank."]
    outs = _ports(chosen, "outputs") + ["a.b", "pump.head", "", "tank.level.x"]
    port_in = st.one_of(st.sampled_from(ins), st.sampled_from(ins), any_text)
    port_out = st.one_of(st.sampled_from(outs), st.sampled_from(outs), any_text)
    sc: dict[str, Any] = {}
    if _chance(rnd, 80):
        sc["mode"] = draw(st.one_of(st.sampled_from(MODES), st.sampled_from(MODES), junk,
                                    st.sampled_from(["Static", "steady", "rt"])))
    if _chance(rnd, 93):
        sc["elements"] = elements
    if _chance(rnd, 40):
        sc["connections"] = draw(st.lists(st.one_of(
            st.fixed_dictionaries({"from": port_out, "to": port_in}),
            st.fixed_dictionaries({"from": port_out}, optional={"to": port_in, "via": junk}),
            junk), max_size=3))
    if _chance(rnd, 60):
        sc["inputs"] = draw(st.dictionaries(port_in, st.one_of(
            moderate, moderate, series(-10, 10), junk,
            st.fixed_dictionaries({"t": st.lists(moderate, max_size=3),
                                   "v": st.lists(moderate, max_size=3)})), max_size=3))
    if _chance(rnd, 30):
        sc["outputs"] = draw(st.one_of(st.lists(st.one_of(port_out, port_in), max_size=3), junk))
    if _chance(rnd, 60):
        sc["time"] = draw(time_block(rnd))
    if _chance(rnd, 15):
        sc["solver"] = draw(st.fixed_dictionaries({}, optional={
            "method": st.one_of(st.sampled_from(["RK45", "BDF", "LSODA", "Euler"]), junk),
            "rtol": st.sampled_from([1e-6, 1e-3, 0, 1, -1, "x"]),
            "atol": st.sampled_from([1e-9, 0, 2, None]),
            "max_step": st.sampled_from([None, 0.1, 1, 0, -1, "big"])}))
    if _chance(rnd, 20):
        sc["realtime"] = draw(st.one_of(junk, st.fixed_dictionaries({}, optional={
            "speed": st.sampled_from([1, 10, 0, 1e4, -1, "fast", None]),
            "publish_every": st.sampled_from([1, 10, 0, 1.5, 10**6, None]),
            "policy": st.one_of(st.sampled_from(["catch_up", "skip", "fail", "drop"]), junk),
            "tolerance": st.sampled_from([None, 0.1, -1, 1e9, "x"])})))
    if _chance(rnd, 15):
        sc["post"] = draw(st.one_of(junk, st.lists(st.fixed_dictionaries(
            {"function": st.one_of(st.sampled_from(FUNCTION_NAMES), any_text)},
            optional={"args": st.dictionaries(st.sampled_from(["x", "t", "q", "window"]),
                                              st.one_of(port_out, moderate, junk), max_size=2),
                      "as": st.one_of(names, junk)}), max_size=2)))
    if _chance(rnd, 5):
        sc[draw(st.sampled_from(["elemnts", "output", "timing", "realtim", "Mode"]))] = 1
    return sc


@st.composite
def random_command(draw: Any, rnd: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if _chance(rnd, 93):
        body["cmd"] = draw(st.one_of(st.sampled_from(CMD_VALUES), any_text))
    cmd = body.get("cmd")
    if cmd == "run" or _chance(rnd, 10):
        if _chance(rnd, 75):
            body["scenario"] = draw(random_scenario(rnd))
        else:
            body["template"] = draw(st.one_of(st.sampled_from(TEMPLATES), any_text, junk,
                                              st.just("pump_to_tnak")))
            # bounded so that no valid template run is long: small, far too big, or wrong
            body["args"] = draw(st.one_of(junk, st.dictionaries(
                st.one_of(st.sampled_from(["speed", "stop", "step", "low", "high", "feed",
                                           "initial_level", "sped"]), any_text),
                st.one_of(st.sampled_from([1, 10, 60, 1300, 0, -1, 1e308, 10**400]), junk,
                          series(1000, 1600)), max_size=3)))
    elif cmd == "call" or _chance(rnd, 10):
        fn = draw(st.one_of(st.sampled_from(FUNCTION_NAMES), any_text, junk))
        body["function"] = fn
        spec = FUNCTIONS.get(fn) if isinstance(fn, str) else None
        keys = [a["name"] for a in spec["arguments"]] if spec else ["x"]
        body["args"] = draw(st.one_of(junk, st.dictionaries(
            st.one_of(st.sampled_from(keys), any_text),
            st.one_of(st.lists(moderate, max_size=6), moderate, junk, odd_text,
                      st.sampled_from(["m3/s", "m3/h", "Pa", "bar", "degC", "K", "hp"])),
            max_size=4)))
    for _ in range(draw(st.integers(0, 2))):
        body[draw(st.one_of(st.sampled_from(FIELD_NAMES), any_text))] = draw(
            st.one_of(json_value, junk, st.sampled_from([Ref("job"), Ref("realtime")])))
    return body


BAD_IDS = [None, 1, 0, -1, 1.5, 1e308, 10**400, True, False, [], ["a"], {}, {"id": "a"}, "",
           "a" * 129, "has space", "a/b", "a#", "a+", "a/+/#", "\u00e9t\u00e9", "\nabc",
           "abc\r", "a\x00b", "\udc80", "\U0001f600", "a\tb", "'a'", "id\u202e", "../x",
           "a,b", "{}", "a*b", NAN_TOKENS[0], "$SYS", "%", "a\n\n", "a\nb"]
"""Ids that are not usable. Not here: an id ending in one newline, which mutes the
controller (see test_an_id_ending_in_a_newline_is_refused_and_mutes_nothing)."""
EDGE_IDS = ["-", ".", "..", ":", "_", "a" * 128, ID_CHARS[:64] * 2, "0", "::::", "a.b:c-d_e"]
GARBAGE = [b"\x00", b"\xff", b"\xfe\xff", b'"', b"}", b"{", b",", b"\\", b"\xc3", b"\xed\xa0\x80",
           b"\xf4\x90\x80\x80", b"NaN", b"\n", b"]", b"[" * 50, b"\xc0\xaf", b"/*", b"'"]
RAW_PAYLOADS = [
    b"", b"null", b"0", b"-0", b"[]", b"{}", b'"ping"', b"true", b" ", b"\n", b"\x00" * 16,
    b"\xff\xfe", b"[" * 10_000, b"{" * 10_000, b'{"a":' * 5000, b"[" * 10_000 + b"]" * 10_000,
    b'{"id": "@ID@", "cmd": "ping",,}', b'{"id": "@ID@", "cmd": "ping"', b'{"id": "@ID@"}',
    b'{"id": "@ID@", "cmd": "ping", "x": NaN}', b'{"id": "@ID@", "cmd": "ping", "x": Infinity}',
    b'{"id": "@ID@", "cmd": "ping", "x": -Infinity}', b'{"id":"@ID@","cmd":"ping"}{"id":"x"}',
    b'{"id": "@ID@", "cmd": "ping"} trailing', b"\xef\xbb\xbf" + b'{"id": "@ID@", "cmd": "ping"}',
    '{"id": "@ID@", "cmd": "ping"}'.encode("utf-16"), b'{"id": \'@ID@\', "cmd": "ping"}',
    b'{id: "@ID@", cmd: "ping"}', b'{"id": "@ID@", "cmd": "ping", /* c */ "x": 1}',
    b'{"id": "@ID@", "cmd": "ping", "x": 0x10}', b'{"id": "@ID@", "cmd": "ping", "x": 01}',
    b'{"id": "@ID@", "cmd": "ping", "x": .5}', b'{"id": "@ID@", "cmd": "ping", "x": "\\ud800"}',
    b'{"id": "@ID@", "cmd": "ping", "x": "\\u00"}', b'{"id": "@ID@", "cmd": "ping", "x": "\x01"}',
    b'{"id": "@ID@", "cmd": "ping", "id": "@ID@"}', b'{"id": "@ID@", "cmd": "p\\u0069ng"}',
    b'{"\\u0069d": "@ID@", "cmd": "ping"}', b'{"id": "@ID@", "cmd": "ping", "x": 1e999}',
    b'{"id": "@ID@", "cmd": "ping", "x": ' + b"9" * 5000 + b"}",
    b'{"id": "@ID@", "cmd": "run", "scenario": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"id": "@ID@", "cmd": "ping", "x": "' + b"\xed\xb2\x80" + b'"}',
    b'{"id" : "@ID@" , "cmd" : "describe" , "nested" : {"id": "other"}}',
    b'\t{"id":"@ID@","cmd":"jobs"}\r\n', b'{"cmd": "ping", "id": "@ID@"}',
    b'{"cmd": "ping", "x": "' + b"y" * 5000 + b'", "id": "@ID@"}',
    b"ab" * 32 + b' {"id": "@ID@", "cmd": "ping"}', b"ab" * 31 + b' {"id": "@ID@", "cmd": "ping"}',
    b'{"id": "@ID@", "cmd": "ping", "ts": "2026-11-29T14:00:00Z"}',
    b'{"id": "@ID@", "cmd": "ping", "ts": [[[]]]}',
]


@dataclass
class Case:
    """What hypothesis draws: one or more messages, made when their ids are known."""

    kind: str
    body: Any = None
    id_value: Any = "new"
    """"new": a fresh unique id first in the object; "none": no id; else the id as given"""
    raw: bytes | None = None
    bytes_op: tuple[str, float, bytes] | None = None
    ascii_only: bool = True
    expect_ok: bool = False
    codes: frozenset[str] | None = None
    """the error codes this input must get; None: any code (or a success)"""
    allowed: frozenset[str] = frozenset()
    """errors a valid command may get all the same (a stop target that ended, …)"""
    twin: Any = None
    """a second body sent with the same id (a duplicate on purpose)"""
    id_suffix: str = ""


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


_DROP = object()


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def _value_at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: Any, rnd: random.Random) -> Case:
    body, kind = draw(valid_command(rnd))
    op = _pick(rnd, ["drop"] * 4 + ["retype"] * 4 + ["special"] * 4 + ["nan"] + ["unknown"] * 2
               + ["garbage"] * 3 + ["truncate"] * 3 + ["id"] * 2 + ["deep"] + ["oversize"])
    paths = [p for p in _paths(body) if not isinstance(_value_at(body, p), Ref)]
    path = paths[rnd.randrange(len(paths))]
    label = f"mutated {kind}: {op}"
    if op == "drop":
        return Case(f"{label} {path[-1]!r}", _set(body, path, _DROP))
    if op == "retype":
        old = _type(_value_at(body, path))
        options = [v for v in TYPE_SAMPLES if _type(v) != old]
        return Case(f"{label} {path[-1]!r}", _set(body, path, _pick(rnd, options)))
    if op == "special":
        return Case(f"{label} {path[-1]!r}", _set(body, path, _pick(rnd, SPECIALS)),
                    ascii_only=draw(st.booleans()))
    if op == "nan":
        return Case(f"{label} {path[-1]!r}", _set(body, path, _pick(rnd, NAN_TOKENS)),
                    codes=frozenset({"invalid_json"}))
    if op == "deep":
        return Case(f"{label} {path[-1]!r}", _set(body, path, _pick(rnd, DEEP)),
                    codes=frozenset({"invalid_json", "invalid_argument"}))
    if op == "unknown":
        dicts = [()] + [p for p in paths if isinstance(_value_at(body, p), dict)]
        where = dicts[rnd.randrange(len(dicts))]
        key = draw(st.one_of(st.sampled_from(FIELD_NAMES[10:]), any_text))
        target = _value_at(body, where)
        if key in target or key in ("id", "ts"):  # ts: of the envelope (signed commands)
            key = f"{key}_x"
        doc = _set(body, (*where, key), draw(st.one_of(json_value, junk)))
        # an unknown field in the command itself: invalid_argument (docs/protocol.md)
        top = where == () and body.get("cmd") in COMMANDS
        return Case(f"{label} field in {'/'.join(map(str, where)) or 'command'}", doc,
                    codes=frozenset({"invalid_argument"}) if top else None)
    if op in ("garbage", "truncate"):
        frac = draw(st.floats(0, 1, exclude_max=True))
        junk_bytes = draw(st.one_of(st.sampled_from(GARBAGE), st.binary(min_size=1, max_size=6)))
        return Case(f"{label}", body, bytes_op=(op, frac, junk_bytes))
    if op == "id":
        if _chance(rnd, 25):
            return Case(f"{label} (no id)", body, id_value="none")
        return Case(f"{label} (bad id)", body, id_value=_pick(rnd, BAD_IDS))
    pad = "x" * (MAX_BYTES + draw(st.integers(1, 2000)))
    return Case(f"{label}", {**body, "pad": pad}, codes=frozenset({"too_large"}))


@st.composite
def valid_case(draw: Any, rnd: random.Random) -> Case:
    body, kind = draw(valid_command(rnd))
    allowed = {"stop": {"unknown_job"}, "set": {"unknown_job", "invalid_argument"},
               "delete_instance": {"unknown_instance"}}.get(kind, set())
    if body["cmd"] in ("run", "call"):
        allowed = {"limit_exceeded"}  # admission, when many jobs wait
    if kind == "realtime":
        allowed.add("runtime_error")  # policy "fail": a tick late on a busy machine
    suffix = ""
    if _chance(rnd, 10):
        suffix = "." + draw(st.text(ID_CHARS, min_size=1, max_size=100))
    twin = None
    if _chance(rnd, 4):  # the same id again: duplicate_id
        twin = draw(valid_command(rnd))[0]
    return Case(f"valid {kind}", body, expect_ok=True, allowed=frozenset(allowed), twin=twin,
                id_suffix=suffix)


@st.composite
def special_case(draw: Any, rnd: random.Random) -> Case:
    """A valid command with an odd value (huge number, NaN, deep nesting, unicode) somewhere."""
    body, kind = draw(valid_command(rnd))
    paths = [p for p in _paths(body) if not isinstance(_value_at(body, p), Ref)]
    path = paths[rnd.randrange(len(paths))]
    value = draw(st.one_of(st.sampled_from(HUGE), odd_text, st.sampled_from(DEEP),
                           st.sampled_from(NAN_TOKENS)))
    codes = None
    if isinstance(value, Raw) and value in NAN_TOKENS:
        codes = frozenset({"invalid_json"})
    elif isinstance(value, Raw) and value in DEEP:
        codes = frozenset({"invalid_json", "invalid_argument"})
    return Case(f"special {kind}: {_type(value)} at {path[-1]!r}", _set(body, path, value),
                ascii_only=draw(st.booleans()), codes=codes)


@st.composite
def huge_span_case(draw: Any, rnd: random.Random) -> Case:
    """A valid dynamic run whose time grid is far over the 10 000 000-row limit."""
    body = draw(dynamic_run(rnd))
    time_ = _pick(rnd, [{"start": 0, "stop": 1e308, "step": 1},
                         {"start": 0, "stop": 1e12, "step": 0.001},
                         {"start": -1e308, "stop": 1e308, "step": 1},
                         {"start": 0, "stop": 1, "step": 5e-324},
                         {"start": 0, "stop": 10, "step": 1e-300},
                         {"start": 0, "stop": 10**400, "step": 1}])
    body["scenario"]["time"] = time_
    body["scenario"].pop("post", None)
    codes = {"limit_exceeded"}
    if isinstance(time_["stop"], int) and time_["stop"] > 1e308:
        codes.add("invalid_argument")  # 10**400 is no finite number
    return Case(f"dynamic run over the row limit: {time_}", body, codes=frozenset(codes))


def boundary_case(rnd: random.Random) -> Case:
    """A ping padded to exactly the size limit, or one byte over."""
    over = rnd.randrange(2)
    return Case(f"padded to the limit {'+ 1' if over else 'exactly'}", {"cmd": "ping"},
                bytes_op=("pad_to", float(MAX_BYTES + over), b""),
                codes=frozenset({"too_large" if over else "invalid_argument"}))


@st.composite
def a_case(draw: Any, slot: int) -> Case:
    # (salted by the slot in the example: hypothesis repeats seeds such as 0 often)
    rnd = random.Random(draw(st.integers(0, 2**64 - 1)) ^ slot * 0x9E3779B97F4A7C15)
    roll = rnd.randrange(100)
    if roll < 25:
        return draw(valid_case(rnd))
    if roll < 55:
        return draw(mutated(rnd))
    if roll < 70:
        return Case("random command", draw(random_command(rnd)), ascii_only=draw(st.booleans()))
    if roll < 76:
        body, kind = draw(valid_command(rnd))
        if _chance(rnd, 20):
            return Case(f"edge id {kind}", body, id_value=_pick(rnd, EDGE_IDS) + "@UNIQ@",
                        expect_ok=False)
        return Case(f"bad id {kind}", body, id_value=_pick(rnd, BAD_IDS + ["none"] * 4))
    if roll < 83:
        return Case("raw payload", raw=draw(st.one_of(st.sampled_from(RAW_PAYLOADS),
                                                      st.binary(max_size=40))))
    if roll < 95:
        return draw(special_case(rnd))
    if roll < 98:
        return draw(huge_span_case(rnd))
    return boundary_case(rnd)


# ----- the oracle ----------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > 308:  # docs/protocol.md: beyond a double's range
        raise ValueError("integer out of range")
    return int(digits)


def strict_json(payload: bytes) -> Any:
    """The command as the contract reads it; ValueError where it is ``invalid_json``
    (docs/protocol.md: NaN/Infinity, integers beyond ±1.8e308, lone surrogates)."""
    doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constant,
                     parse_int=_bounded_int)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError: lone surrogate
    return doc


SIGNATURE = re.compile(rb"\A[0-9a-fA-F]{64} ")
DEEP_ENOUGH = 100


def _nesting(payload: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (strings left out)."""
    if payload.count(b"[") + payload.count(b"{") < DEEP_ENOUGH:
        return 0
    bare = np.frombuffer(re.sub(rb'"(?:[^"\\]|\\.)*"', b"", payload), dtype=np.uint8)
    steps = np.isin(bare, (91, 123)).astype(np.int64) - np.isin(bare, (93, 125))
    return int(np.cumsum(steps).max()) if len(steps) else 0


def sniff(payload: bytes) -> str | None:
    match = SNIFFED_ID.search(payload)
    return match.group(1).decode() if match else None


@dataclass
class Msg:
    """One message sent, and what PROTOCOL.md says must come back."""

    index: int
    payload: bytes
    kind: str
    expect_ok: bool = False
    codes: frozenset[str] | None = None
    allowed: frozenset[str] = frozenset()
    rid: str | None = None
    """the reply topic's id; None: the errors topic"""
    code: str | None = None
    """the error code the envelope alone decides"""
    claims: bool = False
    cmd: str | None = None
    doc: Any = None
    alt: frozenset[str] = frozenset()
    """another error code as good as ``code``: ``invalid_json`` for a command nested
    deeply (docs/protocol.md: "nesting too deep to read"; how deep depends on the reader)"""

    def classify(self) -> None:
        if len(self.payload) > MAX_BYTES:
            self.rid, self.code = sniff(self.payload), "too_large"
            return
        # docs/protocol.md: a signature prefix is ignored when signing is off
        unsigned = SIGNATURE.sub(b"", self.payload, count=1)
        try:
            doc = strict_json(unsigned)
        except (ValueError, RecursionError):
            self.rid, self.code = sniff(self.payload), "invalid_json"
            return
        if _nesting(self.payload) >= DEEP_ENOUGH:
            self.alt = frozenset({"invalid_json"})
        if not isinstance(doc, dict):
            self.code = "invalid_command"
            return
        rid = doc.get("id")
        if not isinstance(rid, str) or not USABLE_ID.fullmatch(rid):
            self.code = "invalid_command"
            return
        self.rid, self.doc = rid, doc
        cmd = doc.get("cmd")
        if not isinstance(cmd, str) or cmd not in COMMANDS:
            self.code = "invalid_command"
            return
        self.cmd, self.claims = cmd, True

    def show(self, limit: int = 400) -> str:
        text = repr(self.payload[:limit])
        return text + (f"... ({len(self.payload)} bytes)" if len(self.payload) > limit else "")


@dataclass
class Finding:
    what: str
    msg: Msg | None
    detail: str


class Collector:
    """An orchestrator on plain paho-mqtt that indexes every reply by request id."""

    def __init__(self, host: str, port: int, prefix: str, cid: str) -> None:
        self.reply_base = f"{prefix}/{cid}/reply/"
        self.errors_topic = f"{prefix}/{cid}/errors"
        self.cmd_topic = f"{prefix}/{cid}/cmd"
        self.cid = cid
        self.by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.finals: Counter[str] = Counter()
        self.acked_realtime: set[str] = set()
        self.errors: list[dict[str, Any]] = []
        self.unreadable: list[tuple[str, bytes, str]] = []
        self.received = 0
        self.cond = threading.Condition()
        self.client = subscribed_client(host, port, prefix, self._on_message, name="fuzz",
                                        inflight=100)

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if not (topic.startswith(self.reply_base) or topic == self.errors_topic):
            return
        try:
            body = strict_json(msg.payload)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError) as exc:
            with self.cond:
                self.unreadable.append((topic, bytes(msg.payload[:300]), str(exc)[:200]))
                self.cond.notify_all()
            return
        with self.cond:
            self.received += 1
            if topic == self.errors_topic:
                self.errors.append(body)
            else:
                rid = topic[len(self.reply_base):]
                self.by_id[rid].append(body)
                if body.get("type") in FINAL:
                    self.finals[rid] += 1
                elif body.get("type") == "ack" and body.get("queue") == "twin.realtime":
                    self.acked_realtime.add(rid)
            self.cond.notify_all()

    def publish(self, payloads: list[bytes]) -> None:
        infos = [self.client.publish(self.cmd_topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


# ----- the fuzzer ------------------------------------------------------------------------
class Fuzzer:
    def __init__(self, stack: Stack, collector: Collector) -> None:
        self.stack, self.col = stack, collector
        self.tag = uuid.uuid4().hex[:6]
        self.n = 0
        self.sent: list[Msg] = []
        self.generated = 0
        self.pending: list[Case] = []
        self.findings: list[Finding] = []
        self.jobs: list[str] = []
        self.realtime: list[tuple[str, list[str]]] = []
        self.instances: list[str] = []
        self.stop_targets: set[str] = set()
        self.expected_errors: list[Msg] = []
        self.aborted: str | None = None
        self.batches = 0
        self.batch_seconds: list[float] = []
        self.started = time.monotonic()
        self.slow: list[tuple[int, list[str]]] = []
        self.stop_sent: dict[str, tuple[Msg, float]] = {}
        self.restops: Counter[str] = Counter()

    # -- making messages
    def new_id(self, suffix: str = "") -> str:
        self.n += 1
        return (f"fz{self.tag}.{self.n}" + suffix)[:128]

    def _resolve(self, doc: Any) -> Any:
        if isinstance(doc, Ref):
            if doc.what == "new_instance":
                self.n += 1
                iid = f"FZ-{self.tag}-{self.n}"
                self.instances.append(iid)
                return iid
            if doc.what == "instance":
                return self.instances.pop() if self.instances else f"FZ-{self.tag}-none"
            if doc.what == "job":
                target = self.jobs[-1 - doc.pick % len(self.jobs)] if self.jobs else "no-such"
                self.stop_targets.add(target)
                return target
            if doc.what == "realtime":
                return (self.realtime[-1 - doc.pick % len(self.realtime)][0] if self.realtime
                        else "no-such-rt")
            if doc.what == "realtime_inputs":
                ports = self.realtime[-1][1] if self.realtime else ["lag.u"]
                return {ports[0]: (doc.pick - 500) / 10}
        if isinstance(doc, dict):
            return {k: self._resolve(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self._resolve(v) for v in doc]
        return doc

    def _make(self, case: Case) -> list[Msg]:
        if case.raw is not None:
            rid = self.new_id()
            return [Msg(0, case.raw.replace(b"@ID@", rid.encode()), case.kind)]
        body = self._resolve(case.body)
        if case.id_value == "new":
            rid = self.new_id(case.id_suffix)
            doc = {"id": rid, **body} if isinstance(body, dict) else body
        elif case.id_value == "none":
            rid, doc = None, {k: v for k, v in body.items() if k != "id"}
        else:
            rid = case.id_value
            if isinstance(rid, str) and rid.endswith("@UNIQ@"):
                rid = (rid[:-6] + self.new_id())[-128:]
            doc = {"id": rid, **{k: v for k, v in body.items() if k != "id"}}
        payload = dumps(doc, ascii_only=case.ascii_only)
        if case.bytes_op is not None:
            op, frac, junk_bytes = case.bytes_op
            if op == "truncate":
                payload = payload[:int(len(payload) * frac)]
            elif op == "garbage":
                at = int(len(payload) * frac)
                payload = payload[:at] + junk_bytes + payload[at:]
            elif op == "pad_to":
                doc["pad"] = ""
                short = dumps(doc)
                doc["pad"] = "x" * (int(frac) - len(short))
                payload = dumps(doc)
        msgs = [Msg(0, payload, case.kind, expect_ok=case.expect_ok, codes=case.codes,
                    allowed=case.allowed)]
        if isinstance(doc, dict) and doc.get("cmd") in ("run", "call") and isinstance(rid, str) \
                and USABLE_ID.fullmatch(rid):
            self.jobs = [*self.jobs[-30:], rid]
            scenario = doc.get("scenario")
            if isinstance(scenario, dict) and scenario.get("mode") == "realtime":
                given = scenario.get("inputs")
                ports = [k for k in given if isinstance(k, str)] if isinstance(given, dict) \
                    else []
                ports = ports or ["lag.u"]
                self.realtime = [*self.realtime[-10:], (rid, ports)]
        if case.twin is not None and isinstance(rid, str):
            twin = {"id": rid, **self._resolve(case.twin)}
            msgs.append(Msg(0, dumps(twin), case.kind + " (its id again)",
                            codes=frozenset({"duplicate_id"})))
        return msgs

    def add(self, cases: list[Case]) -> None:
        if self.aborted:
            return
        self.pending.extend(cases)
        while len(self.pending) >= BATCH and not self.aborted:
            batch, self.pending = self.pending[:BATCH], self.pending[BATCH:]
            self.run_batch(batch)

    def flush(self) -> None:
        if self.pending and not self.aborted:
            batch, self.pending = self.pending, []
            self.run_batch(batch)

    # -- sending and waiting
    def send(self, msgs: list[Msg]) -> None:
        for m in msgs:
            m.index = len(self.sent)
            m.classify()
            self.sent.append(m)
            if m.rid is None:
                self.expected_errors.append(m)
        self.col.publish([m.payload for m in msgs])

    def waiting_jobs(self, msgs: list[Msg]) -> list[Msg]:
        """The jobs (``run``, ``call``) acknowledged but not answered yet. (The
        ingress answers everything else itself before it reads the next command.)"""
        need: Counter[str] = Counter(m.rid for m in msgs if m.rid is not None)
        jobs = {m.rid for m in msgs if m.cmd in ("run", "call")}
        return [m for m in msgs if m.rid in jobs and m.rid is not None
                and self.col.by_id.get(m.rid) and self.col.finals[m.rid] < need[m.rid]]

    def run_batch(self, cases: list[Case]) -> None:
        """Send a batch and wait for its answers. The ingress handles the commands in
        order and its outbox sends in order, so once the ``pong`` of a ``ping`` sent
        last is in, every first reply and every error of the batch is in too: a
        message with no reply then has none coming; only running jobs are waited for."""
        started = time.monotonic()
        msgs = [m for case in cases for m in self._make(case)]
        self.generated += len(msgs)
        sentinel = Msg(0, dumps({"id": self.new_id(".end"), "cmd": "ping"}),
                       "ping after a batch", expect_ok=True)
        msgs.append(sentinel)
        self.send(msgs)
        sent = time.monotonic()
        deadline = sent + BATCH_TIMEOUT
        while True:
            with self.col.cond:
                if self.col.finals[sentinel.rid or ""] < 1:
                    missing = [sentinel]
                else:
                    missing = self.waiting_jobs(msgs)
                if not missing:
                    break
                # a real-time run still going when the rest is answered (or after a few
                # seconds): stop it, with a `stop` that is a message of its own
                running = self.to_stop(missing)
                others = [m for m in missing if m.rid not in self.col.acked_realtime]
                if not running or (others and time.monotonic() - sent < 3.0):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.col.cond.wait(min(left, 0.25))
                    continue
            stops = self.stops(running)
            msgs += stops
            self.send(stops)
        took = time.monotonic() - started
        if took >= BATCH_TIMEOUT:
            with self.col.cond:
                done = self.col.finals[sentinel.rid or ""]
                late = self.waiting_jobs(msgs) if done else [sentinel]
            self.slow.append((self.batches, [m.show(300) for m in late[:3]]))
        self.batches += 1
        self.batch_seconds.append(took)
        if self.stack.procs["ingress"].poll() is not None:
            self.aborted = (f"the ingress exited (code {self.stack.procs['ingress'].returncode})"
                            f" during batch {self.batches}")
        elif len(self.batch_seconds) >= 3 and min(self.batch_seconds[-3:]) >= BATCH_TIMEOUT:
            self.aborted = (f"three batches in a row were not answered within "
                            f"{BATCH_TIMEOUT:.0f} s; stopped sending")
        elif time.monotonic() - self.started > TIME_BUDGET:
            self.aborted = (f"the fuzzing took more than {TIME_BUDGET:.0f} s; stopped after "
                            f"{self.generated} messages")

    def stops(self, targets: list[str]) -> list[Msg]:
        self.stop_targets.update(targets)
        msgs = [Msg(0, dumps({"id": self.new_id(".stop"), "cmd": "stop", "target": r}),
                    "stop of a real-time run", expect_ok=True, allowed=frozenset({"unknown_job"}))
                for r in targets]
        for target, m in zip(targets, msgs, strict=True):
            self.stop_sent[target] = (m, time.monotonic())
        return msgs

    def to_stop(self, missing: list[Msg]) -> list[str]:
        """The real-time runs among ``missing`` to send a ``stop`` (with the lock held):
        those not sent one yet, and those still going after their ``stop`` was
        answered: ``unknown_job`` for a run acknowledged and not ended, or a stop
        that took more than :data:`STOP_WITHIN` on a short tick (findings both)."""
        out = []
        runs = {m.rid: m for m in missing if m.rid in self.col.acked_realtime}
        for rid, run in sorted(runs.items()):
            if rid is None:
                continue
            if rid not in self.stop_sent:
                out.append(rid)
                continue
            stop, at = self.stop_sent[rid]
            finals = [r for r in self.col.by_id.get(stop.rid or "", []) if r.get("type") in FINAL]
            waited = time.monotonic() - at
            if not finals or self.col.finals[rid] or self.restops[rid] >= 5:
                continue
            lost = finals[0].get("code") == "unknown_job"
            if (lost and waited > 0.5) or waited > STOP_WITHIN:
                if not self.restops[rid] and (lost or _tick(run.doc) <= 0.5):
                    self.findings.append(Finding(
                        f"a stop answered {finals[0].get('code') or finals[0].get('state')} "
                        f"but its real-time run went on (acknowledged, not ended "
                        f"{waited:.1f} s later)", stop,
                        f"the run {rid}: {json.dumps(self.col.by_id.get(rid, [])[:2])[:300]}; "
                        f"the stop: {json.dumps(finals[0])[:200]}"))
                self.restops[rid] += 1
                out.append(rid)
        return out

    # -- checking
    def check(self) -> None:
        """Compare everything that came back with what had to (after the last batch)."""
        by_rid: dict[str, list[Msg]] = defaultdict(list)
        for m in self.sent:
            if m.rid is not None:
                by_rid[m.rid].append(m)
        for rid, msgs in by_rid.items():
            self._check_rid(rid, msgs, self.col.by_id.get(rid, []))
        for rid in set(self.col.by_id) - set(by_rid):
            self.findings.append(Finding(
                "replies on the topic of an id that no command had (as PROTOCOL.md reads it)",
                None, f"topic id {rid!r}: {json.dumps(self.col.by_id[rid])[:300]}"))
        self._check_errors_topic()
        for topic, payload, why in self.col.unreadable:
            self.findings.append(Finding("a message that is not strict JSON", None,
                                         f"on {topic}: {payload!r} ({why})"))

    def _check_errors_topic(self) -> None:
        got = self.col.errors
        for e in got:
            problem = _error_problem(e)
            if problem or e.get("controller") != self.col.cid or not isinstance(e.get("ts"), str):
                self.findings.append(Finding("a malformed error on the errors topic", None,
                                             f"{problem or 'envelope'}: {e}"))
        want = [m.code for m in self.expected_errors]
        have = [e.get("code") for e in got]
        if len(want) == len(have):
            for m, e in zip(self.expected_errors, got, strict=True):
                if e.get("code") != m.code and e.get("code") not in m.alt:
                    self.findings.append(Finding(
                        f"wrong error code on the errors topic: {e.get('code')} instead of "
                        f"{m.code}", m, json.dumps(e)[:300]))
            return
        matcher = difflib.SequenceMatcher(a=want, b=have, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            lost = self.expected_errors[i1:i2]
            extra = got[j1:j2]
            if tag == "replace" and len(lost) == len(extra):
                for m, e in zip(lost, extra, strict=True):
                    self.findings.append(Finding(
                        f"wrong error code on the errors topic: {e.get('code')} instead of "
                        f"{m.code}", m, json.dumps(e)[:300]))
                continue
            for m in lost:
                self.findings.append(Finding(
                    f"no error on the errors topic for a command without a usable id "
                    f"(expected {m.code})", m, "nothing (or not in order) on the errors topic"))
            for e in extra:
                self.findings.append(Finding("an error on the errors topic that no command "
                                             "explains", None, json.dumps(e)[:300]))

    def _check_rid(self, rid: str, msgs: list[Msg], replies: list[dict[str, Any]]) -> None:
        def bad(what: str, detail: str, m: Msg | None = None) -> None:
            self.findings.append(Finding(what, m or msgs[0], detail))

        replies = sorted(replies, key=lambda r: (r.get("seq", -1)))
        seqs = [r.get("seq") for r in replies]
        unique = {json.dumps(r.get("seq")): r for r in replies}
        if len(unique) != len(replies):  # at-least-once: a copy must be the same reply
            dupes = [s for s, n in Counter(json.dumps(s) for s in seqs).items() if n > 1]
            bad("two different replies with the same (id, seq)", f"seq {dupes}: {replies}")
            replies = list(unique.values())
            seqs = [r.get("seq") for r in replies]
        if seqs != list(range(len(replies))):
            bad("seq does not count 0, 1, 2… without gaps", f"seqs {seqs}")
        for r in replies:
            if (r.get("id") != rid or r.get("controller") != self.col.cid
                    or r.get("type") not in REPLY_TYPES or not isinstance(r.get("ts"), str)):
                bad("a reply with a wrong envelope", json.dumps(r)[:300])
            if r.get("type") == "error" and (problem := _error_problem(r)):
                bad(f"a malformed error: {problem}", json.dumps(r)[:300])
        finals = [r for r in replies if r.get("type") in FINAL]
        if len(finals) < len(msgs):
            for m in msgs[len(finals):] if len(msgs) > 1 else msgs:
                expected = m.code or ("a success" if m.expect_ok else "an answer")
                bad(f"unanswered ({m.kind.split(':')[0]}; expected {expected})",
                    f"replies: {json.dumps(replies)[:300]}", m)
            return
        if len(finals) > len(msgs):
            bad("more final replies than commands", json.dumps(replies)[:400])
        if finals and replies.index(finals[-1]) != len(replies) - 1 and len(msgs) == 1:
            bad("a reply after the final one", json.dumps(replies)[:400])
        claims = sum(m.claims for m in msgs)
        dupes = sum(f.get("code") == "duplicate_id" for f in finals)
        if dupes != max(0, claims - 1):
            bad(f"{dupes} duplicate_id error(s) for {claims} command(s) that claim the id",
                json.dumps(finals)[:400], msgs[-1])
        codes = Counter(f.get("code") for f in finals if f.get("type") == "error")
        if len(msgs) > 1:
            for m in msgs:
                want = m.code or ("duplicate_id" if m.codes == {"duplicate_id"} and m.claims
                                  else None)
                if want and codes[want] == 0:
                    bad(f"no {want} error", json.dumps(finals)[:400], m)
            return
        (m,), (final,) = msgs, finals[:1]
        self._check_one(m, final, replies)

    def _check_one(self, m: Msg, final: dict[str, Any], replies: list[dict[str, Any]]) -> None:
        def bad(what: str) -> None:
            self.findings.append(Finding(what, m, json.dumps(replies)[:500]))

        is_error = final.get("type") == "error"
        code = final.get("code")
        want = m.code or None
        if want is not None:
            if not is_error or (code != want and code not in m.alt):
                bad(f"{code or final.get('type')} instead of {want}")
            return
        if m.alt and is_error and code in m.alt:
            return
        if m.codes is not None and (not is_error or code not in m.codes):
            bad(f"{code or final.get('type')} instead of {' or '.join(sorted(m.codes))} "
                f"({m.kind.split(':')[0]})")
            return
        types = [r.get("type") for r in replies]
        if "ack" in types and (types.index("ack") != 0 or m.cmd not in WITH_ACK):
            bad(f"an ack where none belongs (a {m.cmd!r})")
        if "data" in types and m.cmd != "run":
            bad(f"data replies for a {m.cmd!r}")
        if is_error:
            if code == "internal_error":
                bad(f"internal_error (a crash, caught) for a {m.cmd!r}")
            elif m.expect_ok and code not in m.allowed:
                bad(f"a valid command refused: {code} ({m.kind})")
            return
        problem = _success_problem(m, final, types)
        if problem:
            bad(problem)
        if (final.get("status") == "stopped" and m.rid not in self.stop_targets):
            bad("a run ended 'stopped' without a stop")


def _tick(doc: Any) -> float:
    """Seconds of wall-clock time between two ticks of a real-time run (inf if unknown)."""
    try:
        sc = doc["scenario"]
        return float(sc["time"]["step"]) / float((sc.get("realtime") or {}).get("speed", 1))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return math.inf


def _error_problem(e: dict[str, Any]) -> str | None:
    if e.get("type") != "error":
        return "type is not 'error'"
    if e.get("code") not in ERROR_CODES:
        return f"code {e.get('code')!r} is not one of PROTOCOL.md's"
    if not isinstance(e.get("message"), str) or not e["message"].strip():
        return "no message"
    if "path" in e and not isinstance(e["path"], str):
        return "path is not a string"
    return None


def _success_problem(m: Msg, final: dict[str, Any], types: list[Any]) -> str | None:
    cmd, doc = m.cmd, m.doc or {}
    want = SUCCESS.get(cmd or "", "result")
    if final.get("type") != want:
        return f"a {cmd!r} answered with {final.get('type')!r}, not {want!r}"
    if cmd in WITH_ACK and types[0] != "ack":
        return f"a {cmd!r} without an ack first"
    if cmd == "describe":
        missing = {"models", "functions", "instances", "templates"} - set(final)
        return f"description without {sorted(missing)}" if missing else None
    if cmd == "ping":
        return None
    status = final.get("status")
    if status not in ("ok", "stopped", "completed"):
        return f"a result with status {status!r}"
    if status == "stopped" and cmd in ("run", "call"):
        return None
    if cmd == "run" and status == "ok":
        if "values" not in final and not final.get("streamed"):
            return "a run's result without values"
    if cmd == "call" and ("value" not in final or final.get("function") != doc.get("function")):
        return "a call's result without its value or function"
    if cmd == "put_instance" and not isinstance(final.get("instance"), dict):
        return "put_instance's result without the instance"
    if cmd == "delete_instance" and final.get("deleted") != doc.get("instance_id"):
        return "delete_instance's result does not name the instance"
    if cmd in ("stop", "set") and final.get("target") != doc.get("target"):
        return f"{cmd}'s result does not name its target"
    if cmd == "jobs" and not isinstance(final.get("jobs"), list):
        return "jobs' result without a list"
    return None


def outcomes(fuzzer: Fuzzer) -> Counter[str]:
    """How the commands on reply topics ended: reply type, or error code."""
    tally: Counter[str] = Counter()
    for m in fuzzer.sent:
        finals = [r for r in fuzzer.col.by_id.get(m.rid or "", []) if r.get("type") in FINAL]
        tally[(finals[0].get("code") or finals[0].get("type")) if finals
              else "(errors topic)" if m.rid is None else "(nothing)"] += 1
    return tally


def ingress_exceptions(log_dir: Path | None) -> str:
    """The exceptions the ingress logged (each a command it could not handle), by place."""
    log = (log_dir or Path("/nonexistent")) / "ingress.log"
    if not log.exists():
        return ""
    places: Counter[str] = Counter()
    for block in re.split(r"\n(?=\d{4}-\d\d-\d\d )", log.read_text(errors="replace")):
        if "Traceback" not in block:
            continue
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', block)
        own = [f"{Path(f).parent.name}/{Path(f).name}:{n} {fn}" for f, n, fn in frames
               if "site-packages" not in f and "/lib/python" not in f]
        places[f"{block.strip().splitlines()[-1][:100]} at {' > '.join(own[-2:])}"] += 1
    if not places:
        return ""
    return "\nexceptions in the ingress log (" + str(log) + "):\n" + "\n".join(
        f"  {n} x {place}" for place, n in places.most_common())


def report(findings: list[Finding]) -> str:
    groups: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        groups[f.what].append(f)
    lines = [f"{len(findings)} finding(s) in {len(groups)} kind(s):"]
    for what, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = min(items, key=lambda f: len(f.msg.payload) if f.msg else 1 << 30)
        lines.append(f"\n* {what}: {len(items)} time(s)")
        if first.msg is not None:
            lines.append(f"  shortest command ({first.msg.kind}): {first.msg.show()}")
        lines.append(f"  got: {first.detail}")
    return "\n".join(lines)


# ----- the hand-picked warm-up batch ------------------------------------------------------
def edge_cases() -> list[Case]:
    """The kinds the issue names, each at least once, before hypothesis draws the rest."""
    ping = {"cmd": "ping"}
    run = pump_run("x")
    run.pop("id")
    dyn = {"cmd": "run", "scenario": {
        "mode": "dynamic", "elements": {"tank": {"model": "Tank", "instance": "T-1",
                                                 "initial": {"level": 2.0}}},
        "outputs": ["tank.level"], "time": {"start": 0, "stop": 10, "step": 1}}}
    cases = [Case("valid ping", ping, expect_ok=True),
             Case("valid run", run, expect_ok=True),
             Case("valid dynamic", dyn, expect_ok=True)]
    for value in [*HUGE, *NAN_TOKENS, *DEEP, *ODD_TEXT]:
        codes = (frozenset({"invalid_json"}) if value in NAN_TOKENS
                 else frozenset({"invalid_json", "invalid_argument"}) if value in DEEP
                 else None)
        cases.append(Case(f"edge: {_type(value)} as a speed",
                          _set(run, ("scenario", "inputs", "pump.speed"), value), codes=codes))
        cases.append(Case(f"edge: {_type(value)} as a field", {**ping, "x": value},
                          codes=codes or frozenset({"invalid_argument"}),
                          ascii_only=not isinstance(value, str)))
    for bad_id in BAD_IDS:
        cases.append(Case("edge: bad id", ping, id_value=bad_id))
    for raw in RAW_PAYLOADS:
        cases.append(Case("edge: raw payload", raw=raw))
    cases += [Case("edge: padded exactly to the limit", ping,
                   bytes_op=("pad_to", float(MAX_BYTES), b""),
                   codes=frozenset({"invalid_argument"})),
              Case("edge: padded one byte over the limit", ping,
                   bytes_op=("pad_to", float(MAX_BYTES + 1), b""),
                   codes=frozenset({"too_large"}))]
    for stop, step in [(1e308, 1), (1, 5e-324), (10**400, 1)]:
        cases.append(Case("edge: huge time span", _set(dyn, ("scenario", "time"), {
            "start": -1e308 if stop == 1e308 else 0, "stop": stop, "step": step}),
            codes=frozenset({"limit_exceeded", "invalid_argument"})))
    cases.append(Case("edge: instance id ending in a newline", {
        "cmd": "put_instance", "instance": {"id": "FZ-nl\n", "model": "Tank", "params": {
            "area": 1.0, "outlet_area": 0.01, "height": 3.0}}},
        codes=frozenset({"invalid_argument"})))
    cases.append(Case("edge: instance model not a string", {
        "cmd": "put_instance", "instance": {"id": "FZ-model", "model": [1], "params": {}}},
        codes=frozenset({"invalid_argument"})))
    cases.append(Case("edge: template arg 10**400", {
        "cmd": "run", "template": "tank_draining", "args": {"stop": 10**400}},
        codes=frozenset({"invalid_argument"})))
    for cmd in COMMANDS:
        cases.append(Case(f"edge: {cmd} without its fields", {"cmd": cmd}))
    return cases


# ----- the test ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_stack(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    env = stack_env(redis_server, mqtt_server, TWIN_MAX_COMMAND_BYTES=str(MAX_BYTES),
                    TWIN_MAX_RESULT_ROWS="1000")
    with running_stack(env, tmp_path_factory.mktemp("fuzz-logs"), workers=2,
                       realtime=2) as stack:
        yield stack


@pytest.mark.timeout(600)
def test_fuzzed_commands_are_all_answered_and_the_controller_survives(
    fuzz_stack: Stack, tmp_path: Path,
) -> None:
    s = fuzz_stack.settings
    col = Collector(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
    fuzzer = Fuzzer(fuzz_stack, col)
    ingress = fuzz_stack.procs["ingress"]
    started = time.monotonic()
    try:
        fuzzer.add(edge_cases())
        fuzzer.flush()
        rss_warm = _rss_kb(ingress.pid)

        @settings(max_examples=math.ceil(MESSAGES / PER_EXAMPLE), derandomize=True,
                  database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @given(st.tuples(*[a_case(slot) for slot in range(PER_EXAMPLE)]))
        def fuzz(cases: tuple[Case, ...]) -> None:
            fuzzer.add(list(cases))

        fuzz()
        fuzzer.flush()
        # the last answers (slow runs; real-time runs not stopped yet), then the verdict
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with col.cond:
                missing = fuzzer.waiting_jobs(fuzzer.sent)
                if not missing:
                    break
                running = fuzzer.to_stop(missing)
                if not running:
                    col.cond.wait(0.5)
                    continue
            fuzzer.send(fuzzer.stops(running))
        fuzz_seconds = time.monotonic() - started
        alive = ingress.poll() is None
        rss_end = _rss_kb(ingress.pid) if alive else -1
        fuzzer.check()
        # afterwards a valid command still works, and everything is alive
        rid = fuzzer.new_id(".after")
        col.publish([json.dumps(pump_run(rid)).encode()])
        deadline = time.monotonic() + 30
        with col.cond:
            while col.finals[rid] < 1 and time.monotonic() < deadline:
                col.cond.wait(0.5)
        after = col.by_id.get(rid, [])
    finally:
        col.close()
    total = len(fuzzer.sent)
    kinds = Counter(m.kind.split(":")[0].split(" (")[0] for m in fuzzer.sent)
    summary = (f"fuzz: {fuzzer.generated} generated messages ({total} sent with the stops) in "
               f"{fuzzer.batches} batches, {col.received} replies, "
               f"{len(col.acked_realtime)} real-time runs, {fuzz_seconds:.0f} s "
               f"(slowest batch {max(fuzzer.batch_seconds):.1f} s); ingress RSS "
               f"{rss_warm / 1024:.1f} MiB after the warm-up, {rss_end / 1024:.1f} MiB at "
               f"the end ({(rss_end - rss_warm) / 1024:+.1f} MiB)")
    summary += f"\noutcomes: {dict(outcomes(fuzzer).most_common())}"
    print(summary)
    print("by kind:", dict(kinds.most_common(12)))
    for batch, late in fuzzer.slow:
        print(f"batch {batch} not answered within {BATCH_TIMEOUT:.0f} s; waiting for: {late}")
    text = report(fuzzer.findings) + ingress_exceptions(fuzz_stack.log_dir)
    (tmp_path / "fuzz-report.txt").write_text(summary + "\n" + text + "\n")
    print(f"report: {tmp_path / 'fuzz-report.txt'}")
    problems = [text] if fuzzer.findings else []
    if fuzzer.aborted:
        problems.append(fuzzer.aborted)
    if not alive:
        problems.append(f"the ingress died (exit code {ingress.returncode})")
    if fuzz_stack.failed():
        problems.append(f"{fuzz_stack.failed()} stopped")
    if fuzzer.generated < MESSAGES:
        problems.append(f"only {fuzzer.generated} messages generated, not {MESSAGES}")
    if alive and rss_end - rss_warm >= MAX_RSS_GROWTH_KB:
        problems.append(f"the ingress grew by more than {MAX_RSS_GROWTH_KB // 1024} MiB")
    after = sorted(after, key=lambda r: r.get("seq", -1))
    if [r.get("type") for r in after] != ["ack", "result"] or after[-1].get("status") != "ok":
        problems.append(f"a valid run afterwards was not answered with a result: {after}")
    if problems:
        pytest.fail(summary + "\n" + "\n".join(problems), pytrace=False)

@pytest.fixture()
def own_stack(redis_server: Any, mqtt_server: Any, tmp_path: Path) -> Iterator[Stack]:
    """A stack for one test: what it is sent may leave it unusable."""
    stack = Stack(env=stack_env(redis_server, mqtt_server), workers=1, quiet=True,
                  log_dir=tmp_path / "logs")
    stack.start(embedded_ok=False)
    try:
        stack.wait_ready(60)
        yield stack
    finally:
        stack.stop()


def test_an_id_ending_in_a_newline_is_refused_and_mutes_nothing(own_stack: Stack) -> None:
    """Found by the fuzzing above. "abc\\n" is no id of PROTOCOL.md (1-128 characters of
    ``[A-Za-z0-9._:-]``), so its error belongs on the errors topic. Should the
    controller take it (a ``$`` in a regular expression matches before a final
    newline), its reply topic ``.../reply/abc\\n`` has a control character, which
    Mosquitto answers by closing the connection; the reply is sent again on every
    reconnection, and every reply stored after it waits for ever."""
    s = own_stack.settings
    col = Collector(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
    try:
        col.publish([b'{"id": "abc\\n", "cmd": "ping"}', b'{"id": "after-nl", "cmd": "ping"}'])
        deadline = time.monotonic() + 15
        with col.cond:
            while (col.finals["after-nl"] < 1 or not col.errors) and time.monotonic() < deadline:
                col.cond.wait(0.5)
        errors, after = list(col.errors), list(col.by_id.get("after-nl", []))
        stray = {k: v for k, v in col.by_id.items() if k != "after-nl"}
    finally:
        col.close()
    assert [r["type"] for r in after] == ["pong"], (
        "the controller answers nothing after a command with the id 'abc\\n'")
    assert [e["code"] for e in errors] == ["invalid_command"], errors
    assert not stray, stray
