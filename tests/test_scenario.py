"""Scenario builder: every mistake named with its code and path; static solutions."""

from __future__ import annotations

import math
from typing import Any

import pytest

from modellib import CodedError
from scenario_builder import build_scenario, check_scenario, run_scenario

PUMP = {"model": "CentrifugalPump", "params": {
    "rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 2.0e4, "efficiency": 0.72}}


def sc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"elements": {"pump": PUMP},
                            "inputs": {"pump.speed": 1450, "pump.flow": 0.01}}
    base.update(over)
    return base


def code_path(data: Any) -> tuple[str, str | None]:
    with pytest.raises(CodedError) as info:
        run_scenario(data)
    assert len(info.value.message) > 15
    return info.value.code, info.value.path


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], ("invalid_argument", "scenario")),
        ({}, ("missing_argument", "scenario.elements")),
        (sc(elements={}), ("invalid_argument", "scenario.elements")),
        (sc(mode="fast"), ("invalid_argument", "scenario.mode")),
        (sc(elements={"pump": {"model": "Pmp"}}),
         ("unknown_model", "scenario.elements.pump.model")),
        (sc(elements={"pump": {**PUMP, "params": {}}}),
         ("missing_argument", "scenario.elements.pump.params.rated_speed")),
        (sc(elements={"pump": {**PUMP, "colour": 1}}),
         ("invalid_argument", "scenario.elements.pump.colour")),
        (sc(inputs={"pump.speed": 1450}), ("invalid_scenario", "scenario.inputs")),
        (sc(inputs={"pump.speed": 1450, "pump.flow": 0, "pump.sped": 1}),
         ("invalid_scenario", "scenario.inputs.pump.sped")),
        (sc(inputs={"pump.speed": 1450, "pump.flow": 0, "pmp.speed": 1}),
         ("invalid_scenario", "scenario.inputs.pmp.speed")),
        (sc(inputs={"pump.speed": 1450, "pump.flow": 0, "pump.head": 1}),
         ("invalid_scenario", "scenario.inputs.pump.head")),
        (sc(inputs={"pump.speed": True, "pump.flow": 0}),
         ("invalid_argument", "scenario.inputs.pump.speed")),
        (sc(inputs={"pump.speed": {"t": [0, 1], "v": [1]}, "pump.flow": 0}),
         ("invalid_argument", "scenario.inputs.pump.speed")),
        (sc(inputs={"pump.speed": {"t": [0, 2, 1], "v": [1, 2, 3]}, "pump.flow": 0}),
         ("invalid_scenario", "scenario.inputs.pump.speed.t[2]")),
        (sc(elements={"pump": PUMP, "a": {"model": "Sine"}, "b": {"model": "Sine"}},
            connections=[{"from": "a.y", "to": "pump.flow"},
                         {"from": "b.y", "to": "pump.flow"}], inputs={"pump.speed": 1}),
         ("invalid_scenario", "scenario.connections[1].to")),
        # a head (m) into a flow (m3/s): another dimension
        (sc(connections=[{"from": "pump.head", "to": "pump.flow"}], inputs={"pump.speed": 1}),
         ("invalid_scenario", "scenario.connections[0]")),
        (sc(connections=[{"from": "pump.speed", "to": "pump.flow"}]),
         ("invalid_scenario", "scenario.connections[0].from")),
        (sc(elements={"pump": PUMP, "a": {"model": "Sine"}},
            connections=[{"from": "a.y", "to": "pump.flow"}]),
         ("invalid_scenario", "scenario.inputs.pump.flow")),
        (sc(connections=[{"from": "pump", "to": "pump.flow"}]),
         ("invalid_scenario", "scenario.connections[0].from")),
        (sc(connections=[{"from": "pump.head"}]),
         ("missing_argument", "scenario.connections[0].to")),
        (sc(outputs=["pump.hed"]), ("invalid_scenario", "scenario.outputs[0]")),
        (sc(time={"start": 0, "stop": 10, "step": 0}), ("invalid_scenario", "scenario.time.step")),
        (sc(time={"start": 5, "stop": 1, "step": 1}), ("invalid_scenario", "scenario.time.stop")),
        (sc(mode="realtime"), ("invalid_scenario", "scenario.time.step")),
        (sc(mode="realtime", time={"start": 0, "step": 1e-4}),
         ("invalid_scenario", "scenario.time.step")),
        (sc(mode="realtime", time={"start": 0, "step": 1}, realtime={"speed": 0}),
         ("invalid_argument", "scenario.realtime.speed")),
        (sc(mode="realtime", time={"start": 0, "step": 1}, realtime={"policy": "hurry"}),
         ("invalid_argument", "scenario.realtime.policy")),
        (sc(mode="realtime", time={"start": 0, "step": 1}, realtime={"publish_every": 2.5}),
         ("invalid_argument", "scenario.realtime.publish_every")),
        (sc(mode="realtime", time={"start": 0, "step": 1}, realtime={"publsh_every": 2}),
         ("invalid_argument", "scenario.realtime.publsh_every")),
        (sc(mode="realtime", time={"start": 0, "step": 1},
            post=[{"function": "mean", "args": {"x": "pump.head"}}]),
         ("invalid_scenario", "scenario.post")),
        (sc(post=[{"function": "meen", "args": {}}]),
         ("unknown_function", "scenario.post[0].function")),
    ],
)
def test_every_mistake_has_a_code_and_a_path(data: Any, expected: tuple[str, str]) -> None:
    assert code_path(data) == expected


def gain(*d: float) -> dict[str, Any]:
    """A static gain y1 = d1 u1 + d2 u2 + ... (a state-space block whose one state never
    moves: A = -1, B = 0, C = 0), of unit 1 on every port: a feed-through block."""
    return {"model": "LinearStateSpace", "params": {"A": [[-1.0]], "B": [[0.0] * len(d)],
                                              "C": [[0.0]], "D": [list(d)]}}


def test_feed_through_chain_in_static_mode() -> None:
    # a chain a -> b of static gains, evaluated in topological order without any solve:
    # b.y1 = 3 * (2 * 1.5)
    data = {"elements": {"b": gain(3.0), "a": gain(2.0)},
            "connections": [{"from": "a.y1", "to": "b.u1"}], "inputs": {"a.u1": 1.5}}
    out = run_scenario(data)
    assert out["values"]["a.y1"] == pytest.approx(3.0, rel=1e-15)
    assert out["values"]["b.y1"] == pytest.approx(9.0, rel=1e-15)
    assert out["stats"]["loops"] == 0


def test_an_algebraic_loop_is_solved_not_refused() -> None:
    # a.y1 = 0.5 b.y1 + c and b.y1 = 0.5 a.y1: closed form a.y1 = 4c/3, b.y1 = 2c/3
    c = 1.2
    data = {"elements": {"a": gain(0.5, 1.0), "b": gain(0.5)},
            "connections": [{"from": "b.y1", "to": "a.u1"}, {"from": "a.y1", "to": "b.u1"}],
            "inputs": {"a.u2": c}}
    out = run_scenario(data)
    assert out["values"]["a.y1"] == pytest.approx(4 * c / 3, rel=1e-9)
    assert out["values"]["b.y1"] == pytest.approx(2 * c / 3, rel=1e-9)
    assert out["stats"]["loops"] == 1


def test_outputs_default_to_every_output_port_and_may_name_inputs() -> None:
    assert set(run_scenario(sc())["values"]) == {"pump.head", "pump.power"}
    out = run_scenario(sc(outputs=["pump.speed", "pump.head"]))
    assert out["values"]["pump.speed"] == 1450


def test_a_series_input_is_taken_at_time_start_in_static_mode() -> None:
    data = sc(inputs={"pump.speed": {"t": [0, 10], "v": [0, 1450]}, "pump.flow": 0.0},
              time={"start": 5})
    assert run_scenario(data)["values"]["pump.head"] == pytest.approx(10.0)


def test_graph_finds_loops_in_topological_order() -> None:
    data = {"elements": {"a": gain(0.5), "b": gain(0.5), "c": gain(1.0)},
            "connections": [{"from": "a.y1", "to": "b.u1"},
                            {"from": "b.y1", "to": "a.u1"},
                            {"from": "b.y1", "to": "c.u1"}]}
    graph = build_scenario(data)
    assert graph.order == [["a", "b"], ["c"]]
    assert graph.loops == [["a", "b"]]


def test_pump_and_pipe_operating_point_against_an_independent_solve() -> None:
    # The loop pump.head -> line.head, line.flow -> pump.flow is solved by the builder's
    # root finder; here the same operating point is found independently: bisection on
    # H_pump(Q) = H_system(Q), with the Colebrook-White friction factor iterated in
    # the test itself (Colebrook, J. Inst. Civ. Eng. 11 (1939) 133-156).
    g = 9.80665
    pump = {"rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 2.0e4,
            "efficiency": 0.72}
    line = {"length": 120.0, "diameter": 0.1023, "roughness": 4.5e-5, "static_head": 12.0,
            "minor_loss": 6.5}

    def friction(re: float) -> float:
        f = 0.02
        for _ in range(200):
            f = (-2 * math.log10(line["roughness"] / (3.7 * line["diameter"])
                                 + 2.51 / (re * math.sqrt(f)))) ** -2
        return f

    def mismatch(q: float) -> float:
        v = q / (math.pi * line["diameter"] ** 2 / 4)
        re = 998.0 * v * line["diameter"] / 1.0e-3
        system = line["static_head"] + (friction(re) * line["length"] / line["diameter"]
                                        + line["minor_loss"]) * v * v / (2 * g)
        return 40.0 - 2.0e4 * q * q - system

    lo, hi = 1e-4, 0.044
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mismatch(mid) > 0 else (lo, mid)
    out = run_scenario({
        "elements": {"pump": {"model": "CentrifugalPump", "params": pump},
                     "line": {"model": "Pipe", "params": line}},
        "connections": [{"from": "pump.head", "to": "line.head"},
                        {"from": "line.flow", "to": "pump.flow"}],
        "inputs": {"pump.speed": 1450}})
    assert out["values"]["line.flow"] == pytest.approx(lo, rel=1e-9)
    assert out["values"]["pump.head"] == pytest.approx(40.0 - 2.0e4 * lo * lo, rel=1e-9)
    assert out["stats"]["loops"] == 1


def test_a_tank_fed_at_steady_state_settles_at_torricelli_level() -> None:
    # steady state of d(level)/dt = (q - Cd a sqrt(2 g h))/A: h = (q / (Cd a))^2 / (2 g)
    out = run_scenario({
        "elements": {"tank": {"model": "Tank", "params": {"area": 2.0, "outlet_area": 0.01}}},
        "inputs": {"tank.inflow": 0.03}})
    assert out["values"]["tank.level"] == pytest.approx((0.03 / (0.62 * 0.01)) ** 2
                                                        / (2 * 9.80665), rel=1e-12)
    assert out["values"]["tank.outflow"] == pytest.approx(0.03, rel=1e-12)


# ----- the checked scenario the ingress queues (Scenario.to_data) ----------------------

def _resolved_templates() -> list[tuple[str, dict]]:
    import tempfile
    from pathlib import Path

    from instances import SHIPPED_INSTANCES, InstanceLibrary
    from scenario_builder import expand_template
    from scenario_builder.templates import templates

    lib = InstanceLibrary(Path(tempfile.mkdtemp()) / "instances", seed=SHIPPED_INSTANCES)
    return [(name, lib.resolve(expand_template(name, {}))) for name in templates()]


@pytest.mark.parametrize(("name", "raw"), _resolved_templates())
def test_the_checked_scenario_builds_the_same_scenario_again(name: str, raw: dict) -> None:
    """What the ingress queues is JSON, builds the same scenario in the worker, and runs to
    the same result as the scenario the orchestrator sent."""
    import json


    data = check_scenario(raw).to_data()
    sent = json.loads(json.dumps(data, allow_nan=False))
    assert check_scenario(sent).to_data() == data
    assert all("instance" not in el for el in data["elements"].values())  # resolved
    if data["mode"] != "realtime":
        a, b = run_scenario(raw), run_scenario(sent)
        for result in (a, b):  # (the times it took differ)
            result["stats"] = {k: v for k, v in result["stats"].items() if not k.endswith("_ms")}
        def plain(result: dict) -> str:
            return json.dumps(result, sort_keys=True, default=lambda o: o.tolist())

        assert plain(a) == plain(b)


@pytest.mark.parametrize(("name", "raw"), _resolved_templates())
def test_whole_parameters_load_as_the_schema_loads_them(name: str, raw: dict) -> None:
    """The worker's cheap path (every parameter given plainly) gives what the schema gives,
    and anything it does not take plainly goes to the schema, with the schema's error."""
    from modellib import get_model
    from modellib.errors import CodedError

    for element in check_scenario(raw).to_data()["elements"].values():
        cls = get_model(element["model"])
        params = element["params"]
        assert cls.load_params(params) == cls.params_schema().load(params)
        for pname, value in params.items():
            if not isinstance(value, float):
                continue
            for bad in (True, "1.0", float("nan"), float("inf"), 10**400, [value]):
                with pytest.raises(CodedError) as info:
                    cls.load_params({**params, pname: bad}, path="p")
                assert info.value.path == f"p.{pname}", (cls.name, pname, bad)
