"""End to end: a real Mosquitto, a real Redis, the ingress and real Celery worker processes.

The test acts as the orchestrator with plain paho-mqtt.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import new_id
from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

pytestmark = pytest.mark.integration

G = 9.80665
P101 = {"rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 20000.0,
        "efficiency": 0.72, "density": 998.0}


def pump_run(rid: str, speed: float = 1300.0, flow: float = 0.025, **element: Any) -> dict:
    el = {"model": "CentrifugalPump", "instance": "P-101", **element}
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "static", "elements": {"pump": el},
        "inputs": {"pump.speed": speed, "pump.flow": flow}}}


def assert_envelope(reply: dict, rid: str, cid: str) -> None:
    assert reply["id"] == rid
    assert reply["controller"] == cid
    assert isinstance(reply["seq"], int)
    assert reply["ts"].endswith("Z") and "T" in reply["ts"]


def test_status_is_retained_online(orch: Orchestrator, stack: Stack) -> None:
    # a client that subscribes after the ingress connected still gets the retained status
    deadline = time.monotonic() + 5
    while not (status := [b for t, b, _ in orch.messages if t.endswith("/status")]):
        assert time.monotonic() < deadline, "no retained status"
        time.sleep(0.02)
    assert status and status[-1]["state"] == "online"
    assert status[-1]["controller"] == stack.settings.controller_id
    assert "CentrifugalPump" in status[-1]["models"]
    assert "run" in status[-1]["commands"]


def test_ping_answers_pong_with_seq_zero(orch: Orchestrator, stack: Stack) -> None:
    rid = new_id("ping")
    replies = orch.request({"id": rid, "cmd": "ping"})
    assert [r["type"] for r in replies] == ["pong"]
    assert replies[0]["seq"] == 0
    assert_envelope(replies[0], rid, stack.settings.controller_id)


def test_static_run_acks_then_returns_the_pump_curve(orch: Orchestrator, stack: Stack) -> None:
    rid = new_id("run")
    replies = orch.request(pump_run(rid, speed=1300.0, flow=0.025))
    assert [(r["type"], r["seq"]) for r in replies] == [("ack", 0), ("result", 1)]
    result = replies[1]
    assert_envelope(result, rid, stack.settings.controller_id)
    assert result["status"] == "ok"
    # H = H0 (n/n_rated)^2 - k Q^2 ; P = rho g Q H / eta  (P-101's design data)
    head = 40.0 * (1300 / 1450) ** 2 - 20000.0 * 0.025**2
    power = 998.0 * G * 0.025 * head / 0.72
    assert result["values"]["pump.head"] == pytest.approx(head, rel=1e-12)
    assert result["values"]["pump.power"] == pytest.approx(power, rel=1e-12)


def test_element_params_override_the_instance(orch: Orchestrator) -> None:
    rid = new_id("override")
    replies = orch.request(pump_run(rid, speed=1450, flow=0.0, params={"shutoff_head": 50.0}))
    assert replies[-1]["values"]["pump.head"] == pytest.approx(50.0)


def test_mqtt5_response_topic_and_correlation_data(orch: Orchestrator, stack: Stack) -> None:
    rid = new_id("resp")
    topic = f"{stack.settings.mqtt_prefix}/custom-replies/{rid}"
    orch.send({"id": rid, "cmd": "ping"}, properties=orch.response_props(topic, b"\x01corr"))
    replies = orch.wait_final(rid, topic=topic)
    assert replies[0]["type"] == "pong"
    props = [p for t, _, p in orch.messages if t == topic]
    assert props[0].CorrelationData == b"\x01corr"


def test_describe_lists_models_with_units(orch: Orchestrator) -> None:
    rid = new_id("describe")
    (reply,) = orch.request({"id": rid, "cmd": "describe"})
    assert reply["type"] == "description"
    assert set(reply) >= {"models", "functions", "instances", "templates"}
    pump = reply["models"]["CentrifugalPump"]
    assert {p["name"]: p["unit"] for p in pump["parameters"]}["curve_coefficient"] == "s2/m5"
    assert all(v["unit"] and v["description"] for v in pump["inputs"] + pump["outputs"])
    assert reply["instances"]["P-101"]["model"] == "CentrifugalPump"


@pytest.mark.parametrize(
    ("command", "code", "path"),
    [
        (lambda rid: {"id": rid, "cmd": "pnig"}, "invalid_command", "cmd"),
        (lambda rid: {"id": rid}, "invalid_command", "cmd"),
        (lambda rid: {"id": rid, "cmd": "run", "scenario": {"elements": {
            "pump": {"model": "CentrifugalPmp"}}}}, "unknown_model",
         "scenario.elements.pump.model"),
        (lambda rid: {"id": rid, "cmd": "run", "scenario": {"elements": {
            "pump": {"model": "CentrifugalPump", "params": {"rated_speed": 1450}}}}},
         "missing_argument", "scenario.elements.pump.params.shutoff_head"),
        (lambda rid: pump_run(rid, params={"efficiency": 1.5}), "invalid_argument",
         "scenario.elements.pump.params.efficiency"),
        (lambda rid: pump_run(rid, params={"efficency": 0.5}), "invalid_argument",
         "scenario.elements.pump.params.efficency"),
        (lambda rid: {"id": rid, "cmd": "run"}, "invalid_command", "scenario"),
        (lambda rid: {"id": rid, "cmd": "run", "scenario": {
            "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
            "inputs": {"pump.speed": 1450}}}, "invalid_scenario", "scenario.inputs"),
        (lambda rid: {**pump_run(rid), "scenario": {**pump_run(rid)["scenario"],
                                                     "mode": "realtime"}},
         "invalid_scenario", "scenario.time.step"),
        (lambda rid: pump_run(rid, instance="P-999"), "unknown_instance",
         "scenario.elements.pump.instance"),
    ],
    ids=["unknown-cmd", "no-cmd", "unknown-model", "missing-param", "param-out-of-range",
         "misspelt-param", "run-without-scenario", "unfed-input", "realtime-no-step",
         "unknown-instance"],
)
def test_bad_commands_get_their_code_and_path(
    orch: Orchestrator, stack: Stack, command: Any, code: str, path: str
) -> None:
    rid = new_id("bad")
    replies = orch.request(command(rid))
    assert len(replies) == 1, replies
    (reply,) = replies
    assert_envelope(reply, rid, stack.settings.controller_id)
    assert (reply["type"], reply["code"], reply.get("path")) == ("error", code, path)
    assert reply["seq"] == 0
    assert len(reply["message"]) > 20  # a sentence, not a bare code


def test_invalid_json_with_a_readable_id_is_answered_on_its_topic(orch: Orchestrator) -> None:
    rid = new_id("json")
    orch.send(f'{{"id": "{rid}", "cmd": "ping",,}}')
    (reply,) = orch.wait_final(rid)
    assert reply["code"] == "invalid_json"
    assert "not valid JSON" in reply["message"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xff\xfe not text", "invalid_json"),
        (b"{nope", "invalid_json"),
        (b'{"id": 1, "cmd": "ping"}', "invalid_command"),
        (b'["id", "ping"]', "invalid_command"),
        (b'{"cmd": "ping", "n": NaN}', "invalid_json"),
        (b"[" * 100_000, "invalid_json"),
    ],
    ids=["not-utf8", "broken", "numeric-id", "array", "nan-token", "deep-nesting"],
)
def test_commands_without_a_usable_id_go_to_the_errors_topic(
    orch: Orchestrator, stack: Stack, payload: bytes, code: str
) -> None:
    mark = orch.mark()
    orch.send(payload)
    (err,) = orch.errors_topic(mark)
    assert err["type"] == "error" and err["code"] == code
    assert err["controller"] == stack.settings.controller_id
    assert err["message"]


def test_too_large_command(orch: Orchestrator, stack: Stack) -> None:
    rid = new_id("big")
    big = {"id": rid, "cmd": "ping", "pad": "x" * (stack.settings.max_command_bytes + 10)}
    orch.send(big)
    (reply,) = orch.wait_final(rid)
    assert reply["code"] == "too_large"
    assert str(stack.settings.max_command_bytes) in reply["message"]


def test_a_repeated_id_is_not_run_twice_and_continues_its_seq(orch: Orchestrator) -> None:
    rid = new_id("dup")
    first = orch.request(pump_run(rid))
    assert [r["type"] for r in first] == ["ack", "result"]
    orch.send(pump_run(rid))
    replies = orch.wait_final(rid, count=2)
    assert [(r["type"], r["seq"]) for r in replies] == [("ack", 0), ("result", 1), ("error", 2)]
    assert replies[2]["code"] == "duplicate_id"
    time.sleep(0.5)  # nothing else may arrive for it
    assert len(orch.replies(rid)) == 3


def test_non_finite_results_are_null_with_warnings(orch: Orchestrator) -> None:
    rid = new_id("nan")
    replies = orch.request(pump_run(rid, speed=1e308, flow=1e200))
    result = replies[-1]
    assert result["type"] == "result"
    assert result["values"]["pump.head"] is None
    assert any("pump.head" in w for w in result["warnings"])
    raw = [r for r in orch.raw if rid.encode() in r and b'"result"' in r]
    assert b"NaN" not in raw[0] and b"Infinity" not in raw[0]
    json.loads(raw[0])  # strict JSON


def test_seq_counts_from_zero_without_gaps_across_many_requests(orch: Orchestrator) -> None:
    ids = [new_id("many") for _ in range(40)]
    for i, rid in enumerate(ids):
        cmd = pump_run(rid, flow=0.001 * i) if i % 2 else {"id": rid, "cmd": "ping"}
        orch.send(cmd)
    for rid in ids:
        replies = orch.wait_final(rid)
        seqs = [r["seq"] for r in replies]
        assert seqs == list(range(len(seqs)))
    # every result belongs to its own request
    for i, rid in enumerate(ids):
        if i % 2:
            head = orch.replies(rid)[-1]["values"]["pump.head"]
            expected = 40.0 * (1300 / 1450) ** 2 - 20000.0 * (0.001 * i) ** 2
            assert head == pytest.approx(expected, rel=1e-12)


def test_the_ingress_survives_bad_input_and_still_works(orch: Orchestrator, stack: Stack) -> None:
    for payload in (b"", b"null", b"0", b'{"id":"' + b"a" * 500 + b'"}', b"\x00" * 64):
        orch.send(payload)
    assert stack.failed() is None
    rid = new_id("after")
    assert orch.request(pump_run(rid))[-1]["type"] == "result"


def test_a_response_topic_cannot_make_the_controller_publish_commands(
        orch: Orchestrator, stack: Stack) -> None:
    """A response topic naming a command topic (this controller's, a peer's, a group's)
    or a `$` topic is ignored: the replies go to the request's own reply topic."""
    s = stack.settings
    for target in (s.cmd_topic, f"{s.mqtt_prefix}/other-ctl/cmd", s.group_cmd_topic,
                   "$SYS/x"):
        rid = new_id("reflect")
        orch.send({"id": rid, "cmd": "ping"}, properties=orch.response_props(target, b"c"))
        (reply,) = orch.wait_final(rid)  # on the default reply topic
        assert reply["type"] == "pong"
        assert not [t for t, b, _ in orch.messages
                    if t == target and b.get("id") == rid and "type" in b]  # no reply there


def test_the_same_broken_command_sent_twice_is_answered_twice(orch: Orchestrator) -> None:
    """A refusal is keyed by the message's bytes so that a QoS 1 re-delivery is not
    answered twice; the same bytes sent again by the orchestrator are a new message."""
    rid = new_id("twice")
    payload = '{"id": "' + rid + '", "cmd": "ping", "n": NaN}'
    orch.send(payload)
    orch.wait_final(rid)
    orch.send(payload)
    replies = orch.wait_final(rid, count=2)
    assert [(r["seq"], r["code"]) for r in replies] == [(0, "invalid_json"), (1, "invalid_json")]
