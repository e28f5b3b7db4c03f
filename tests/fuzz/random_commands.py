"""Hypothesis strategies of random commands, mostly wrong: random scenarios (elements,
models, ports, connections, inputs, time, solver, realtime, post) and random
commands (any ``cmd``, fields of other commands, unknown fields)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.commands import (
    FUNCTION_NAMES,
    FUNCTIONS,
    INSTANCE_IDS,
    MODEL_NAMES,
    MODELS,
    MODES,
    TEMPLATES,
    Ref,
    any_text,
    chance,
    json_value,
    junk,
    moderate,
    names,
    odd_text,
    pick,
    series,
)
from tests.fuzz.values import CMD_VALUES, FIELD_NAMES


@st.composite
def time_block(draw: Any, rnd: random.Random) -> Any:
    """Small and valid, far over the row limit, or wrong."""
    kind = pick(rnd, ["small"] * 5 + ["open"] + ["huge"] * 2 + ["junk"] * 2 + ["missing"])
    if kind == "small":
        return {"start": pick(rnd, [0, 0, 1, -1]), "stop": pick(rnd, [1, 2]),
                "step": pick(rnd, [0.5, 1])}
    if kind == "open":
        return {"start": 0, "step": pick(rnd, [0.5, 1])}
    if kind == "huge":
        return pick(rnd, [{"start": 0, "stop": 1e308, "step": 1},
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
    if chance(rnd, 5):
        return draw(junk)
    elements: dict[Any, Any] = {}
    chosen: dict[str, str] = {}
    for n in draw(st.lists(st.one_of(names, names, any_text), max_size=4, unique=True)):
        model = draw(st.one_of(*[st.sampled_from(MODEL_NAMES)] * 6, any_text,
                               st.sampled_from(["centrifugalpump", "Tnak", "Pump"])))
        el: dict[str, Any] = {}
        if chance(rnd, 92):
            el["model"] = model
        if chance(rnd, 30):
            el["instance"] = draw(st.one_of(st.sampled_from(INSTANCE_IDS), any_text, junk))
        spec = MODELS.get(model) if isinstance(model, str) else None
        if chance(rnd, 60):
            keys = [p["name"] for p in spec["parameters"]] if spec else []
            el["params"] = draw(st.dictionaries(
                st.one_of(st.sampled_from(keys or ["x"]), any_text),
                st.one_of(moderate, moderate, junk, st.lists(moderate, max_size=3),
                          st.lists(st.lists(moderate, max_size=2), max_size=2)),
                max_size=4))
        if chance(rnd, 20):
            keys = [s["name"] for s in spec.get("states", [])] if spec else []
            el["initial"] = draw(st.dictionaries(
                st.one_of(st.sampled_from(keys or ["level"]), any_text),
                st.one_of(moderate, junk), max_size=2))
        if chance(rnd, 8):
            el[draw(any_text)] = draw(json_value)
        elements[n] = el if chance(rnd, 95) else draw(junk)
        if isinstance(n, str) and spec is not None:
            chosen[n] = model
    ins = _ports(chosen, "inputs") + ["a.b", "pump.speed", "x", ".", "tank."]
    outs = _ports(chosen, "outputs") + ["a.b", "pump.head", "", "tank.level.x"]
    port_in = st.one_of(st.sampled_from(ins), st.sampled_from(ins), any_text)
    port_out = st.one_of(st.sampled_from(outs), st.sampled_from(outs), any_text)
    sc: dict[str, Any] = {}
    if chance(rnd, 80):
        sc["mode"] = draw(st.one_of(st.sampled_from(MODES), st.sampled_from(MODES), junk,
                                    st.sampled_from(["Static", "steady", "rt"])))
    if chance(rnd, 93):
        sc["elements"] = elements
    if chance(rnd, 40):
        sc["connections"] = draw(st.lists(st.one_of(
            st.fixed_dictionaries({"from": port_out, "to": port_in}),
            st.fixed_dictionaries({"from": port_out}, optional={"to": port_in, "via": junk}),
            junk), max_size=3))
    if chance(rnd, 60):
        sc["inputs"] = draw(st.dictionaries(port_in, st.one_of(
            moderate, moderate, series(-10, 10), junk,
            st.fixed_dictionaries({"t": st.lists(moderate, max_size=3),
                                   "v": st.lists(moderate, max_size=3)})), max_size=3))
    if chance(rnd, 30):
        sc["outputs"] = draw(st.one_of(st.lists(st.one_of(port_out, port_in), max_size=3), junk))
    if chance(rnd, 60):
        sc["time"] = draw(time_block(rnd))
    if chance(rnd, 15):
        sc["solver"] = draw(st.fixed_dictionaries({}, optional={
            "method": st.one_of(st.sampled_from(["RK45", "BDF", "LSODA", "Euler"]), junk),
            "rtol": st.sampled_from([1e-6, 1e-3, 0, 1, -1, "x"]),
            "atol": st.sampled_from([1e-9, 0, 2, None]),
            "max_step": st.sampled_from([None, 0.1, 1, 0, -1, "big"])}))
    if chance(rnd, 20):
        sc["realtime"] = draw(st.one_of(junk, st.fixed_dictionaries({}, optional={
            "speed": st.sampled_from([1, 10, 0, 1e4, -1, "fast", None]),
            "publish_every": st.sampled_from([1, 10, 0, 1.5, 10**6, None]),
            "policy": st.one_of(st.sampled_from(["catch_up", "skip", "fail", "drop"]), junk),
            "tolerance": st.sampled_from([None, 0.1, -1, 1e9, "x"])})))
    if chance(rnd, 15):
        sc["post"] = draw(st.one_of(junk, st.lists(st.fixed_dictionaries(
            {"function": st.one_of(st.sampled_from(FUNCTION_NAMES), any_text)},
            optional={"args": st.dictionaries(st.sampled_from(["x", "t", "q", "window"]),
                                              st.one_of(port_out, moderate, junk), max_size=2),
                      "as": st.one_of(names, junk)}), max_size=2)))
    if chance(rnd, 5):
        sc[draw(st.sampled_from(["elemnts", "output", "timing", "realtim", "Mode"]))] = 1
    return sc


@st.composite
def random_command(draw: Any, rnd: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if chance(rnd, 93):
        body["cmd"] = draw(st.one_of(st.sampled_from(CMD_VALUES), any_text))
    cmd = body.get("cmd")
    if cmd == "run" or chance(rnd, 10):
        if chance(rnd, 75):
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
    elif cmd == "call" or chance(rnd, 10):
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
