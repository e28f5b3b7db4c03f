"""The libraries over MQTT: describe, call, post, put_instance / delete_instance
(surviving a restart), against real Mosquitto, Redis and Celery workers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import new_id, stack_env
from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

pytestmark = pytest.mark.integration

SPARE = {"id": "P-301", "model": "CentrifugalPump", "description": "spare pump",
         "tags": ["pump", "spare"], "params": {"rated_speed": 1450, "shutoff_head": 30.0,
                                               "curve_coefficient": 10000.0,
                                               "efficiency": 0.65}}


def test_describe_lists_the_libraries(orch: Orchestrator) -> None:
    (reply,) = orch.request({"id": new_id("describe"), "cmd": "describe"})
    assert len(reply["models"]) >= 12
    assert len(reply["functions"]) >= 15
    for meta in reply["models"].values():
        for var in meta["parameters"] + meta["inputs"] + meta["outputs"] + meta["states"]:
            assert var["unit"], (meta["name"], var)
    for name in ("Tank", "Pipe", "CentrifugalPump"):
        assert name in reply["models"]


def test_call_runs_a_function_on_a_worker(orch: Orchestrator) -> None:
    rid = new_id("call")
    replies = orch.request({"id": rid, "cmd": "call", "function": "mean",
                            "args": {"x": [1.0, 2.0, 6.0]}})
    assert [r["type"] for r in replies] == ["ack", "result"]
    assert replies[1]["value"] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("command", "code", "path"),
    [
        ({"cmd": "call", "function": "maen", "args": {"x": [1]}}, "unknown_function", "function"),
        ({"cmd": "call", "function": "mean", "args": {}}, "missing_argument", "args.x"),
        ({"cmd": "call", "function": "mean", "args": {"x": "abc"}}, "invalid_argument",
         "args.x"),
        ({"cmd": "call", "args": {}}, "missing_argument", "function"),
    ],
)
def test_bad_calls_are_refused_before_queueing(orch: Orchestrator, command: dict, code: str,
                                               path: str) -> None:
    (reply,) = orch.request({"id": new_id("badcall"), **command})
    assert (reply["type"], reply["code"], reply["path"]) == ("error", code, path)


def test_post_runs_functions_on_the_results(orch: Orchestrator) -> None:
    rid = new_id("post")
    replies = orch.request({"id": rid, "cmd": "run", "scenario": {
        "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
        "inputs": {"pump.speed": 1450, "pump.flow": 0.02},
        "post": [{"function": "convert_units",
                  "args": {"value": "pump.power", "from_unit": "W", "to_unit": "kW"},
                  "as": "power_kw"}]}})
    result = replies[-1]
    assert result["type"] == "result", result
    assert result["post"]["power_kw"] == pytest.approx(result["values"]["pump.power"] / 1000)


def test_put_use_delete_instance_and_survive_a_restart(
    redis_server: Any, mqtt_server: Any, tmp_path: Any
) -> None:
    env = stack_env(redis_server, mqtt_server, TWIN_INSTANCES=str(tmp_path / "instances"))

    def started() -> tuple[Stack, Orchestrator]:
        s = Stack(env=dict(env), workers=1, quiet=True, log_dir=tmp_path / "logs")
        s.start(embedded_ok=False)
        s.wait_ready(60)
        st = s.settings
        return s, Orchestrator(st.mqtt.host, st.mqtt.port, st.mqtt_prefix, st.controller_id)

    stack, orch = started()
    try:
        replies = orch.request({"id": new_id("put"), "cmd": "put_instance", "instance": SPARE})
        assert [r["type"] for r in replies] == ["ack", "result"]
        assert replies[1]["created"] is True
        bad = orch.request({"id": new_id("put"), "cmd": "put_instance",
                            "instance": {**SPARE, "params": {"rated_speed": 1450}}})
        assert (bad[0]["code"], bad[0]["path"]) == ("missing_argument",
                                                    "instance.params.shutoff_head")
    finally:
        orch.close()
        stack.stop()

    stack, orch = started()  # a new ingress process reads the folder again
    try:
        (reply,) = orch.request({"id": new_id("describe"), "cmd": "describe"})
        assert reply["instances"]["P-301"]["description"] == "spare pump"
        run = orch.request({"id": new_id("run"), "cmd": "run", "scenario": {
            "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-301"}},
            "inputs": {"pump.speed": 1450, "pump.flow": 0.0}}})
        assert run[-1]["values"]["pump.head"] == pytest.approx(30.0)
        deleted = orch.request({"id": new_id("del"), "cmd": "delete_instance",
                                "instance_id": "P-301"})
        assert [r["type"] for r in deleted] == ["ack", "result"]
        (gone,) = orch.request({"id": new_id("del"), "cmd": "delete_instance",
                                "instance_id": "P-301"})
        assert (gone["code"], gone["path"]) == ("unknown_instance", "instance_id")
        status = [b for t, b, _ in orch.messages if t.endswith("/status")]
        assert "P-301" not in status[-1]["instances"]
    finally:
        orch.close()
        stack.stop()
