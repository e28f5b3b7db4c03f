"""A group member closing the request a dead member half handled (ingress/takeover.py),
against a real Redis: the dead member stored the ``ack`` and its job's entry, and died
before or after queueing the job."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis

from common.settings import load_settings
from ingress.takeover import Takeover
from tasks.jobboard import JobBoard
from tasks.outbox import Outbox, outbox_stream, request_key

pytestmark = pytest.mark.integration

DEAD, ALIVE = "ctl-dead", "ctl-alive"


@pytest.fixture()
def rclient(redis_server: Any) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/14")
    client.flushdb()
    return client


def taker(client: redis.Redis) -> Takeover:
    settings = load_settings({"TWIN_CONTROLLER_ID": ALIVE, "TWIN_MQTT_PREFIX": "tk",
                              "TWIN_GROUP": "g"})
    return Takeover(settings, client, Outbox(client), receive=lambda c, m: None,
                    stopping=threading.Event())


def half_handled(client: redis.Redis, rid: str) -> None:
    """What the dead member's ingress stored in its put_first: the ack, the job entry."""
    board = JobBoard(client, DEAD)
    Outbox(client).put_first(
        controller=DEAD, request_id=rid, key="ack", rtype="ack", fields={"queue": "twin.short"},
        topic=f"tk/{DEAD}/reply/{rid}", duplicate={"code": "duplicate_id", "message": "m"},
        job=board.waiting(rid, {"task": "twinctl.run", "queue": "twin.short",
                                "reply_to": f"tk/{DEAD}/reply/{rid}", "correlation": "ab"}))


def payload(rid: str) -> bytes:
    return json.dumps({"id": rid, "cmd": "run"}).encode()


def test_a_request_acked_but_never_queued_is_closed_with_an_error_naming_the_taker(
        rclient: redis.Redis) -> None:
    half_handled(rclient, "r1")
    assert taker(rclient).close_dangling(DEAD, payload("r1"))
    entries = [json.loads(f[b"p"]) for _, f in rclient.xrange(outbox_stream(DEAD))]
    assert [(e["type"], e["seq"]) for e in entries] == [("ack", 0), ("error", 1)]
    assert entries[1]["code"] == "internal_error"
    assert entries[1]["taken_over_by"] == ALIVE and ALIVE in entries[1]["message"]
    (_, fields), = rclient.xrange(outbox_stream(DEAD))[1:]
    assert fields[b"t"] == f"tk/{DEAD}/reply/r1".encode() and fields[b"c"] == b"ab"
    assert JobBoard(rclient, DEAD).get("r1") is None  # no ghost job left queued
    # a second look (the command re-sent again) changes nothing
    assert not taker(rclient).close_dangling(DEAD, payload("r1"))
    assert rclient.xlen(outbox_stream(DEAD)) == 2


def test_a_request_whose_job_was_queued_or_is_held_is_left_to_run(rclient: redis.Redis) -> None:
    half_handled(rclient, "r2")
    message = {"headers": {"argsrepr": f"('r2', '{DEAD}', 'tk/{DEAD}/reply/r2', <...>)"}}
    rclient.lpush("twin.short", json.dumps({"headers": {"argsrepr": "('other', 'x')"}}))
    rclient.lpush("twin.short", json.dumps(message))
    assert not taker(rclient).close_dangling(DEAD, payload("r2"))
    rclient.delete("twin.short")  # a worker took it: kombu holds it in "unacked"
    rclient.hset("unacked", "tag-1", json.dumps([message, "", "twin.short"]))
    assert not taker(rclient).close_dangling(DEAD, payload("r2"))
    rclient.delete("unacked")
    assert taker(rclient).close_dangling(DEAD, payload("r2"))  # nowhere: closed


def test_commands_the_dead_member_answered_or_never_saw_are_left_alone(
        rclient: redis.Redis) -> None:
    t = taker(rclient)
    assert not t.close_dangling(DEAD, payload("never-seen"))
    half_handled(rclient, "r3")
    rclient.hset(request_key(DEAD, "r3"), "final", 1)
    assert not t.close_dangling(DEAD, payload("r3"))
    assert not t.close_dangling(DEAD, b"not json")


def test_a_takeover_claimed_by_a_member_that_dies_too_is_done_by_another(
        rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim of a member that died mid-takeover runs out; a live member that saw the
    same ``offline`` looks again and drains the session; none once the member is back."""
    import time

    import paho.mqtt.client as mqtt

    from ingress import takeover as module

    monkeypatch.setattr(module, "RETRY_S", 0.2)
    t = taker(rclient)
    drained: list[str] = []
    monkeypatch.setattr(t, "_drain", drained.append)
    rclient.set(t.claim_key(DEAD), "someone else", px=600)  # its claimer dies with it

    def status(state: str) -> mqtt.MQTTMessage:
        msg = mqtt.MQTTMessage(topic=f"tk/{DEAD}/status".encode())
        msg.payload = json.dumps({"state": state, "controller": DEAD, "group": "g"}).encode()
        return msg

    t.on_status(status("offline"))
    deadline = time.monotonic() + 5
    while not drained and time.monotonic() < deadline:
        time.sleep(0.05)
    assert drained == [DEAD]
    assert rclient.get(t.claim_key(DEAD)) is None  # released after the drain
    rclient.set(t.claim_key(DEAD), "someone else", px=600)
    t.on_status(status("offline"))
    t.on_status(status("online"))  # back before the claim ran out: nothing to do
    time.sleep(1.0)
    assert drained == [DEAD]
