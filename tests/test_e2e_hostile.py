"""No client can silence the controller: hostile response topics, poisoned replies,
retained commands. End to end against a real Mosquitto and Redis and real workers.

(Part of the issue "no client can silence or starve the controller": the findings
that silenced every client with one message.)
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingress.handler import Handler
from ingress.publisher import undeliverable
from ingress.routing import MAX_TOPIC_LEVELS, confine
from tasks.outbox import Outbox, dead_letter_stream
from tests.conftest import new_id
from tests.orchestrator import Orchestrator
from tests.test_e2e import pump_run
from twinctl.stack import Stack

pytestmark = pytest.mark.integration


def _hostile_topics(stack: Stack) -> list[str]:
    s = stack.settings
    return [
        "/".join(["deep"] * 250),  # Mosquitto drops a publisher for more than 200 levels
        "a" * 300,
        f"{s.mqtt_prefix}/other-controller/status",  # a peer's retained status
        s.topic("errors"),
        s.topic("alarms"),
        s.reply_topic("another-request"),  # another request's replies
        f"{s.mqtt_prefix}/group/{s.group}/cmd",
    ]  # (control characters: the broker refuses such a command itself)


def test_a_hostile_response_topic_is_not_used_and_the_reply_says_why(
        orch: Orchestrator, stack: Stack) -> None:
    """The reply goes to the request's own reply topic, with a warning naming the reason;
    nothing is published on the hostile topic; the controller answers everyone after."""
    for target in _hostile_topics(stack):
        rid = new_id("confine")
        orch.send({"id": rid, "cmd": "ping"}, properties=orch.response_props(target, b"c"))
        (reply,) = orch.wait_final(rid)  # on the default reply topic
        assert reply["type"] == "pong", (target[:40], reply)
        assert any("response topic was not used" in w for w in reply["warnings"]), reply
        assert not [t for t, b, _ in orch.messages if t == target and b.get("id") == rid]
    rid = new_id("after")
    assert orch.request(pump_run(rid))[-1]["type"] == "result"


def test_a_big_correlation_data_is_not_echoed(orch: Orchestrator, stack: Stack) -> None:
    rid = new_id("corr")
    topic = f"{stack.settings.mqtt_prefix}/answers/{rid}"
    orch.send({"id": rid, "cmd": "ping"}, properties=orch.response_props(topic, b"x" * 5000))
    (reply,) = orch.wait_final(rid, topic=topic)
    assert any("correlation data" in w for w in reply["warnings"]), reply
    assert all(getattr(p, "CorrelationData", None) is None
               for t, _, p in orch.messages if t == topic)


def test_a_reply_that_can_never_be_sent_does_not_block_the_others(
        orch: Orchestrator, stack: Stack) -> None:
    """A poisoned outbox head (a reply to a topic the broker refuses) is moved to the
    dead-letter stream; its request gets an error on its own reply topic; every other
    reply keeps flowing, and the status counts the dead letter."""
    s = stack.settings
    client = redis.Redis.from_url(s.redis_url)
    dead_before = client.xlen(dead_letter_stream(s.controller_id))
    rid = new_id("poison")
    Outbox(client).put(controller=s.controller_id, request_id=rid, key="final",
                       rtype="result", fields={"status": "ok"},
                       topic="/".join(["deep"] * 300))
    later = new_id("later")
    assert orch.request({"id": later, "cmd": "ping"})[-1]["type"] == "pong"
    (error,) = orch.wait_final(rid)  # on the request's own reply topic
    assert error["type"] == "error" and error["code"] == "internal_error"
    assert error["undelivered"] == {"seq": 0, "type": "result"} and error["seq"] == 1
    assert client.xlen(dead_letter_stream(s.controller_id)) == dead_before + 1
    deadline = time.monotonic() + 15
    while True:  # the retained status says so (refreshed within 5 s of a change)
        status = [b for t, b, _ in orch.messages if t == s.topic("status")]
        if status and status[-1].get("dead_letters", 0) >= dead_before + 1:
            break
        assert time.monotonic() < deadline, status[-1:]
        time.sleep(0.2)


def test_a_retained_command_is_never_run(orch: Orchestrator, stack: Stack) -> None:
    """Delivered live it is an ordinary command (the broker clears the flag); delivered
    again from the broker's store (a new subscription, after a restart) it is ignored:
    here, a retained copy reaching the handler is dropped, unanswered."""
    rid = new_id("retained")

    class Retained:
        payload = json.dumps({"id": rid, "cmd": "ping"}).encode()
        retain, dup, qos, mid, topic, properties = True, False, 1, 1, "t/cmd", None

    handler: Any = Handler.__new__(Handler)  # (no other part is reached)
    assert handler.handle(Retained()) == (None, None, "retained")
    time.sleep(0.5)
    assert not orch.replies(rid)


@pytest.mark.parametrize("topic", ["a/b", "plant/twin-answers/42"])
def test_ordinary_response_topics_are_used(topic: str) -> None:
    assert confine(topic, "twin", "twin/c1/reply/r1") is None
    assert confine("twin/c1/reply/r1", "twin", "twin/c1/reply/r1") is None  # its own
    assert confine("twin/custom-replies/r1", "twin", None) is None
    assert confine("/".join(["l"] * MAX_TOPIC_LEVELS), "twin", None) is None
    assert confine("/".join(["l"] * (MAX_TOPIC_LEVELS + 1)), "twin", None) is not None
    assert confine("a/\x00/b", "twin", None) is not None


def test_what_cannot_be_published_is_found_before_paho_or_the_broker_sees_it() -> None:
    assert undeliverable(b"a/b", b"x" * 1000, 268_435_455) is None
    code, why = undeliverable(b"a/b", b"x" * 1000, 1000) or ("", "")
    assert code == "limit_exceeded" and "1000 bytes" in why
    for topic in (b"", b"a/+/b", b"a/#", b"a\x00b", b"\xff\xfe", "/".join(["x"] * 201).encode()):
        assert undeliverable(topic, b"{}", 268_435_455) is not None, topic


def motors(n: int, *, stop: float) -> dict[str, Any]:
    """A dynamic run of ``n`` induction motors (6 outputs each), one row a second."""
    return {"mode": "dynamic",
            "elements": {f"m{i}": {"model": "InductionMotor", "instance": "M-1"}
                         for i in range(n)},
            "inputs": {f"m{i}.speed": 1450 for i in range(n)},
            "time": {"start": 0, "stop": stop, "step": 1}}


def test_a_run_whose_result_is_enormous_is_refused_when_it_arrives(
        orch: Orchestrator, stack: Stack) -> None:
    """16 kB of command asking for 250 motors x 6 outputs x 10 001 rows (~360 MB of JSON):
    `limit_exceeded` before anything runs, and the controller answers everyone after."""
    rid = new_id("huge")
    scenario = motors(250, stop=10_000)
    started = time.monotonic()
    (error,) = orch.request({"id": rid, "cmd": "run", "scenario": scenario})
    assert error["type"] == "error" and error["code"] == "limit_exceeded", error
    assert error["path"] == "scenario.outputs" and "TWIN_MAX_RESULT_BYTES" in error["message"]
    assert time.monotonic() - started < 10
    assert orch.request({"id": new_id("after"), "cmd": "ping"})[-1]["type"] == "pong"


def test_a_long_series_is_streamed_in_chunks_that_fit_one_message(
        orch: Orchestrator, stack: Stack) -> None:
    """Ten motors x 6 outputs x 20 001 rows (~29 MB): within the result bound, streamed
    as `data` chunks of at most TWIN_MAX_MESSAGE_BYTES each (1 MiB by default)."""
    rid = new_id("chunks")
    scenario = motors(10, stop=20_000)
    replies = orch.request({"id": rid, "cmd": "run", "scenario": scenario}, timeout=120)
    result = replies[-1]
    assert result["type"] == "result" and result["streamed"] is True, result
    chunks = [r for r in replies if r["type"] == "data"]
    assert len(chunks) == result["chunks"] > 1 and sum(len(c["t"]) for c in chunks) == 20_001
    sizes = [len(json.dumps(c)) for c in chunks]
    assert max(sizes) <= stack.settings.max_message_bytes, max(sizes)


def test_an_enormous_instance_is_refused(orch: Orchestrator, stack: Stack) -> None:
    """put_instance had no bound: twelve 1 MiB instances grew `describe` to 12 MB."""
    rid = new_id("big-instance")
    instance = {"id": "P-huge", "model": "CentrifugalPump", "description": "x" * 900_000,
                "params": {"rated_speed": 1450, "shutoff_head": 40.0,
                           "curve_coefficient": 20000.0, "efficiency": 0.72}}
    (reply,) = orch.request({"id": rid, "cmd": "put_instance", "instance": instance})
    assert (reply["type"], reply["code"], reply["path"]) == ("error", "limit_exceeded",
                                                             "instance"), reply
    (described,) = orch.request({"id": new_id("describe"), "cmd": "describe"})
    assert "P-huge" not in described["instances"]


def _as_client(name: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("client", name)]
    return props


def test_a_flood_of_qos0_commands_does_not_starve_another_client(
        orch: Orchestrator, stack: Stack) -> None:
    """QoS 0 commands beyond an orchestrator's share of the inbox are dropped (nothing
    else bounds them: 132 000 pings once made a ping wait 29 s and grew the ingress by
    590 MB); another orchestrator's QoS 1 ping is answered at once."""
    s = stack.settings
    flood = 20_000
    payload = json.dumps({"id": "flood-x", "cmd": "ping"})
    for i in range(flood):
        orch.client.publish(s.cmd_topic, payload.replace("x", str(i)), qos=0)
    started = time.monotonic()
    rid = new_id("second-client")
    orch.send({"id": rid, "cmd": "ping"}, properties=_as_client("second"))
    (pong,) = orch.wait_final(rid, timeout=30)
    assert pong["type"] == "pong"
    assert time.monotonic() - started < 10, time.monotonic() - started
    answered = {b.get("id") for t, b, _ in list(orch.messages) if b.get("type") == "pong"}
    assert len([i for i in answered if str(i).startswith("flood-")]) <= flood


def test_a_qos1_flood_is_refused_unread_beyond_its_share_and_another_client_is_served(
        orch: Orchestrator, stack: Stack) -> None:
    """An orchestrator that sends more than it may have waiting (ingress/inbox.py: 200
    commands or 16 MiB) gets `limit_exceeded` for the rest, unread, so its flood drains
    from the broker at the speed of refusals; every command is answered, and another
    orchestrator's ping does not wait behind the flood (once it waited behind every
    command sent before it: the broker delivers in order)."""
    s = stack.settings
    flood = [new_id("flood") for _ in range(3000)]  # sent far faster than handled
    for rid in flood:
        orch.client.publish(s.cmd_topic, json.dumps({"id": rid, "cmd": "ping"}), qos=1,
                            properties=_as_client("flooder"))
    started = time.monotonic()
    rid = new_id("second")
    orch.send({"id": rid, "cmd": "ping"}, properties=_as_client("second"))
    (pong,) = orch.wait_final(rid, timeout=30)
    waited = time.monotonic() - started
    assert pong["type"] == "pong"
    deadline = time.monotonic() + 120
    while True:  # every one answered: a pong, or refused unread
        firsts = {r: orch.replies(r)[:1] for r in flood}
        if all(firsts.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    codes = [f[0].get("code") or f[0]["type"] for f in firsts.values() if f]
    assert len(codes) == len(flood), f"{len(flood) - len(codes)} unanswered"
    refused = [c for c in codes if c == "limit_exceeded"]
    assert refused and set(codes) <= {"pong", "limit_exceeded"}, set(codes)
    assert waited < 5, (waited, len(refused))
    one = next(f[0] for f in firsts.values() if f[0].get("code") == "limit_exceeded")
    assert "'flooder' has 200 commands waiting" in one["message"] and one["path"] == "cmd"


def test_long_runs_holding_every_batch_slot_do_not_starve_a_static_run(
        orch: Orchestrator, stack: Stack) -> None:
    """Four tiny-step dynamic runs once held both workers for up to 600 s each; a static
    run or a call has a slot of its own (`twinctl up --short`, the compose short-worker)."""
    hogs = [new_id("hog") for _ in range(stack.workers + 1)]
    try:
        for rid in hogs:
            orch.send({"id": rid, "cmd": "run", "scenario": {
                "mode": "dynamic",
                "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
                "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 1e5, "step": 1000},
                "solver": {"max_step": 1e-2}}})  # 1e7 solver steps: minutes of work each
        deadline = time.monotonic() + 20
        while True:  # every batch slot taken
            jobs = orch.request({"id": new_id("jobs"), "cmd": "jobs"})[0]["jobs"]
            if sum(j["state"] == "running" for j in jobs if j["id"] in hogs) == stack.workers:
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.2)
        started = time.monotonic()
        assert orch.request(pump_run(new_id("static")))[-1]["type"] == "result"
        assert orch.request({"id": new_id("call"), "cmd": "call", "function": "mean",
                             "args": {"x": [1, 2, 3]}})[-1]["value"] == 2
        assert time.monotonic() - started < 10
    finally:
        for rid in hogs:
            orch.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
        for rid in hogs:
            final = orch.wait_final(rid, timeout=30)[-1]
            assert final.get("status") == "stopped", final
