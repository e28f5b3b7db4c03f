"""Hypothesis strategies of the fuzz test's valid commands (and the basic strategies
the others build on): static, dynamic, real-time and template runs, calls,
instances, ``stop`` and ``set`` on recent jobs, ping, describe, jobs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from modellib import describe_models
from modellib.functions import describe_functions
from tests.fuzz.values import HUGE, ODD_TEXT, TYPE_SAMPLES

MODELS = describe_models()
MODEL_NAMES = sorted(MODELS)
FUNCTIONS = describe_functions()
FUNCTION_NAMES = sorted(FUNCTIONS)
INSTANCE_IDS = ["P-101", "P-102", "L-7", "T-1", "V-1", "HX-1", "M-1"]
TEMPLATES = ["pump_to_tank", "tank_draining", "level_control", "pump_operating_point"]
MODES = ["static", "dynamic", "realtime"]


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
def pick(rnd: random.Random, options: list[Any]) -> Any:
    return options[rnd.randrange(len(options))]


def chance(rnd: random.Random, percent: int) -> bool:
    return rnd.randrange(100) < percent


def num(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def series(lo: float, hi: float, span: float = 10.0) -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(1, 5).flatmap(lambda n: st.builds(
        lambda v: {"t": [round(span * i / max(n - 1, 1), 6) for i in range(n)], "v": v},
        st.lists(num(lo, hi), min_size=n, max_size=n)))


@dataclass(frozen=True)
class Ref:
    """Resolved when the message is made: the id of a recent job, instance, …"""

    what: str
    pick: int = 0


@st.composite
def static_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    n = draw(names)
    kind = pick(rnd, ["pump", "pump", "loop", "valve", "hx"])
    if kind == "pump":
        sc = {"mode": "static", "elements": {n: {"model": "CentrifugalPump", "instance": "P-101"}},
              "inputs": {f"{n}.speed": draw(num(0, 3000)), f"{n}.flow": draw(num(0, 0.06))}}
    elif kind == "loop":
        sc = {"elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"},
                           n + "x": {"model": "Pipe", "instance": "L-7"}},
              "connections": [{"from": "pump.head", "to": f"{n}x.head"},
                              {"from": f"{n}x.flow", "to": "pump.flow"}],
              "inputs": {"pump.speed": draw(num(1300, 1800))}}
    elif kind == "valve":
        sc = {"mode": "static", "elements": {n: {"model": "Valve", "instance": "V-1"}},
              "inputs": {f"{n}.opening": draw(num(0, 1)), f"{n}.dp": draw(num(0, 2e5))}}
    else:
        sc = {"mode": "static", "elements": {n: {"model": "HeatExchanger", "instance": "HX-1"}},
              "inputs": {f"{n}.hot_inlet_temperature": draw(num(330, 360)),
                         f"{n}.cold_inlet_temperature": draw(num(280, 300)),
                         f"{n}.hot_mass_flow": draw(num(0.1, 5)),
                         f"{n}.cold_mass_flow": draw(num(0.1, 5))}}
    return {"cmd": "run", "scenario": sc}


@st.composite
def dynamic_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    n = draw(names)
    time_ = {"start": 0, "stop": pick(rnd, [2, 5, 10, 20]),
             "step": pick(rnd, [0.5, 1, 2])}
    if chance(rnd, 50):
        el: dict[str, Any] = {"model": "Tank", "params": {
            "area": draw(num(0.5, 5)), "outlet_area": draw(num(0.001, 0.05)),
            "height": draw(num(3, 10))}, "initial": {"level": draw(num(0.1, 2.5))}}
        if chance(rnd, 30):
            el = {"model": "Tank", "instance": "T-1", "initial": el["initial"]}
        sc: dict[str, Any] = {"mode": "dynamic", "elements": {n: el}, "time": time_}
        if chance(rnd, 50):
            sc["inputs"] = {f"{n}.inflow": draw(st.one_of(num(0, 0.02), series(0, 0.02)))}
        out = f"{n}.level"
    else:
        sc = {"mode": "dynamic", "elements": {n: {"model": "FirstOrderLag", "params": {
            "time_constant": draw(num(0.2, 10)), "gain": draw(num(-5, 5))}}},
            "inputs": {f"{n}.u": draw(st.one_of(num(-10, 10), series(-10, 10)))},
            "time": time_}
        out = f"{n}.y"
    if chance(rnd, 60):
        sc["outputs"] = [out]
        if chance(rnd, 40):
            sc["post"] = [{"function": pick(rnd, ["mean", "max", "min", "rms"]),
                           "args": {"x": out}, "as": draw(names)}]
    if chance(rnd, 20):
        sc["solver"] = {"method": pick(rnd, ["RK45", "RK23", "DOP853", "Radau", "BDF",
                                               "LSODA"]), "rtol": pick(rnd, [1e-3, 1e-6])}
    return {"cmd": "run", "scenario": sc}


@st.composite
def realtime_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    n = draw(names)
    step = pick(rnd, [0.01, 0.02, 0.05, 0.1])
    time_: dict[str, Any] = {"start": 0, "step": step}
    if chance(rnd, 80):
        time_["stop"] = round(step * draw(st.integers(1, 10)), 6)
    rt: dict[str, Any] = {}
    for key, options in (("speed", [1, 2, 5, 10]), ("publish_every", [1, 2, 5, 10]),
                         ("policy", ["catch_up", "skip", "fail"]), ("tolerance", [0.05, 1.0])):
        if chance(rnd, 50):
            rt[key] = pick(rnd, options)
    return {"cmd": "run", "scenario": {
        "mode": "realtime",
        "elements": {n: {"model": "FirstOrderLag",
                         "params": {"time_constant": draw(num(0.2, 5)), "gain": 2}}},
        "inputs": {f"{n}.u": draw(num(-5, 5))}, "outputs": [f"{n}.y"],
        "time": time_, "realtime": rt}}


@st.composite
def template_run(draw: Any, rnd: random.Random) -> dict[str, Any]:
    name = pick(rnd, TEMPLATES)
    args: dict[str, Any] = {}
    if name == "pump_operating_point":
        if chance(rnd, 70):
            args["speed"] = draw(num(1300, 1800))
    else:
        args["stop"] = pick(rnd, [10, 30, 60])
        args["step"] = pick(rnd, [1, 2, 5])
        if name == "pump_to_tank" and chance(rnd, 50):
            args["speed"] = draw(st.one_of(num(1300, 1700), series(1300, 1700, 10)))
        if name == "level_control" and chance(rnd, 50):
            args.update(low=1.0, high=2.0, feed=draw(num(0.01, 0.05)))
    return {"cmd": "run", "template": name, "args": args}


@st.composite
def call_cmd(draw: Any, rnd: random.Random) -> dict[str, Any]:
    fn = pick(rnd, ["mean", "max", "min", "rms", "std", "integrate", "moving_average",
                      "percentile", "linear_trend", "exponential_smoothing"])
    x = draw(st.lists(num(-1e6, 1e6), min_size=2, max_size=20))
    t = [float(i) for i in range(len(x))]
    args: dict[str, Any] = {"x": x}
    if fn in ("integrate", "linear_trend"):
        args["t"] = t
    elif fn == "moving_average":
        args["window"] = draw(st.integers(1, len(x)))
    elif fn == "percentile":
        args["q"] = draw(num(0, 100))
    elif fn == "exponential_smoothing":
        args["alpha"] = draw(num(0.01, 1))
    return {"cmd": "call", "function": fn, "args": args}


@st.composite
def put_instance(draw: Any, rnd: random.Random) -> dict[str, Any]:
    inst: dict[str, Any] = {"id": Ref("new_instance"), "model": "Tank", "params": {
        "area": draw(num(0.5, 5)), "outlet_area": draw(num(0.001, 0.05)),
        "height": draw(num(1, 10))}}
    if chance(rnd, 60):
        inst["description"] = draw(fair_text)
    if chance(rnd, 40):
        inst["tags"] = draw(st.lists(fair_text, max_size=3))
    return {"cmd": "put_instance", "instance": inst}


@st.composite
def valid_command(draw: Any, rnd: random.Random) -> tuple[dict[str, Any], str]:
    """A command that must succeed (or get one of a few errors that depend on timing)."""
    kind = pick(rnd, ["ping"] * 8 + ["describe"] * 1 + ["jobs"] * 4 + ["static"] * 20
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
