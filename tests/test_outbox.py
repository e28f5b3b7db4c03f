"""The outbox on a real Redis, and its publisher on a real Mosquitto."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis

from common.settings import MqttEndpoint
from ingress.mqttconn import MqttConnection
from ingress.publisher import Publisher
from tasks.jobboard import JobBoard
from tasks.outbox import Outbox, legacy_keys, outbox_stream, request_key

pytestmark = pytest.mark.integration


@pytest.fixture()
def rclient(redis_server: Any) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/15")
    client.flushdb()
    return client


def put(box: Outbox, cid: str, rid: str, key: str, rtype: str = "data") -> int:
    return box.put(controller=cid, request_id=rid, key=key, rtype=rtype, fields={"k": key},
                   topic=f"t/{rid}").seq


def test_seq_is_gapless_and_each_logical_reply_is_stored_once(rclient: redis.Redis) -> None:
    box = Outbox(rclient)
    assert [put(box, "c", "r1", k) for k in ("ack", "data:0", "data:1")] == [0, 1, 2]
    # a task that runs again after a crash stores nothing new and gets the same seq
    stored = box.put(controller="c", request_id="r1", key="data:0", rtype="data",
                     fields={"k": "again"}, topic="t/r1")
    assert (stored.seq, stored.new) == (1, False)
    assert put(box, "c", "r1", "final", "result") == 3
    assert put(box, "c", "r2", "ack") == 0  # each request counts on its own
    entries = rclient.xrange(outbox_stream("c"))
    payloads = [json.loads(f[b"p"]) for _, f in entries]
    assert [(p["id"], p["seq"]) for p in payloads] == [
        ("r1", 0), ("r1", 1), ("r1", 2), ("r1", 3), ("r2", 0)]
    assert rclient.ttl(request_key("c", "r1")) > 0
    # one key per request: its seq counter and logical keys, nothing else of it
    assert sorted(k.decode() for k in rclient.keys("twin:c:req:*")) == [
        "twin:c:req:r1", "twin:c:req:r2"]


def _writer(url: str, rid: str, start: int, n: int) -> None:
    box = Outbox(redis.Redis.from_url(url))
    for i in range(start, start + n):
        box.put(controller="c", request_id=rid, key=f"data:{i}", rtype="data", fields={},
                topic="t")
        # every process also tries the other processes' keys: duplicates must vanish
        box.put(controller="c", request_id=rid, key=f"data:{(i + n) % (4 * n)}", rtype="data",
                fields={}, topic="t")


def test_concurrent_writers_in_several_processes_never_gap_or_double(
    rclient: redis.Redis, redis_server: Any
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/15"
    procs = [multiprocessing.get_context("spawn").Process(target=_writer,
                                                          args=(url, "r", k * 50, 50))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    seqs = sorted(json.loads(f[b"p"])["seq"] for _, f in rclient.xrange(outbox_stream("c")))
    assert seqs == list(range(200))


def test_publisher_sends_what_was_stored_while_disconnected_then_deletes_it(
    rclient: redis.Redis, mqtt_server: Any
) -> None:
    cid = f"pub-{uuid.uuid4().hex[:6]}"
    box = Outbox(rclient)
    for i in range(30):  # stored before any connection exists
        box.put(controller=cid, request_id="r", key=f"data:{i}", rtype="data",
                fields={"i": i}, topic=f"{cid}/reply/r")
    got: list[dict] = []
    done = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(json.loads(msg.payload))
        if len(got) >= 30:
            done.set()

    subscribed = threading.Event()
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    ep = MqttEndpoint.parse(mqtt_server.url)
    sub.connect(ep.host, ep.port)
    sub.subscribe(f"{cid}/reply/#", 1)
    sub.loop_start()
    assert subscribed.wait(5)
    conn = MqttConnection(endpoint=ep, client_id=f"{cid}-pub", protocol="5", persistent=False)
    publisher = Publisher(client=rclient, connection=conn, controller=cid, window=7)
    publisher.start()
    conn.start()
    try:
        assert done.wait(10), f"only {len(got)} of 30 arrived"
        assert [m["seq"] for m in got] == list(range(30))  # in order
        deadline = time.monotonic() + 5
        while rclient.xlen(outbox_stream(cid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rclient.xlen(outbox_stream(cid)) == 0  # deleted after PUBACK
    finally:
        publisher.stop()
        conn.stop()
        sub.disconnect()
        sub.loop_stop()


def test_a_full_outbox_drops_the_oldest_data_never_a_result_and_says_so(
    rclient: redis.Redis,
) -> None:
    box = Outbox(rclient, max_entries=5)
    put(box, "c", "r", "ack", "ack")
    for i in range(6):  # data:4 and data:5 find the outbox full: data:0 and data:1 go
        put(box, "c", "r", f"data:{i}")
    assert rclient.xlen(outbox_stream("c")) == 5
    put(box, "c", "r", "final", "result")  # full again: data:2 goes, the result stays
    payloads = [json.loads(f[b"p"]) for _, f in rclient.xrange(outbox_stream("c"))]
    assert [(p["type"], p["seq"]) for p in payloads] == [
        ("ack", 0), ("data", 4), ("data", 5), ("data", 6), ("result", 7)]
    # each loss is reported in the next reply of the request, never silently
    assert [p.get("dropped_data") for p in payloads] == [None, None, 1, 1, 1]
    for _ in range(10):  # only results and acks left to drop: they are kept
        put(box, "c", f"x{_}", "final", "result")
    kinds = [json.loads(f[b"p"])["type"] for _, f in rclient.xrange(outbox_stream("c"))]
    assert kinds.count("result") == 11 and "ack" in kinds


def test_the_ack_enters_its_job_and_the_final_reply_ends_it(rclient: redis.Redis) -> None:
    """The job board learns of a job with its ack and forgets it with its final reply,
    each in the one Lua call that stores the reply: no round trip of its own, and no
    read of Celery's queues to know what waits."""
    box, cid, rid = Outbox(rclient), f"c-{uuid.uuid4().hex[:6]}", "job-1"
    board = JobBoard(rclient, cid)
    first = box.put_first(controller=cid, request_id=rid, key="ack", rtype="ack",
                          fields={"queue": "twin.short"}, topic="t/r", duplicate={},
                          job=board.waiting(rid, {"task": "twin.run", "summary": "static"}))
    assert first.outcome == "new"
    entry = board.get(rid)
    assert entry is not None and entry["state"] == "queued" and entry["task"] == "twin.run"
    again = box.put_first(controller=cid, request_id=rid, key="ack", rtype="ack", fields={},
                          topic="t/r", duplicate={"code": "duplicate_id", "message": "m"},
                          job=board.waiting(rid, {"task": "twin.call"}))
    assert again.outcome == "duplicate" and board.get(rid)["task"] == "twin.run"  # untouched
    assert not board.begin(rid, {"task": "twin.run"})
    assert board.get(rid)["state"] == "running"
    board.add_client_job("plant-a", rid)
    stored = box.put_final(controller=cid, request_id=rid, rtype="result",
                           fields={"status": "ok"}, topic="t/r", job=board.keys_of(rid))
    assert stored.new and stored.seq == 2
    assert board.get(rid) is None and board.entries() == {}
    assert board.client_jobs("plant-a") == {}
    assert box.finished(cid, [rid, "other"]) == [True, False]


def test_a_stop_before_a_short_jobs_result_makes_it_stopped(rclient: redis.Redis) -> None:
    """A static run or call is not marked running (a round trip less): the stop it may
    get while it waits is checked in the Lua call that stores its final reply."""
    box, cid = Outbox(rclient), f"c-{uuid.uuid4().hex[:6]}"
    board = JobBoard(rclient, cid)
    stream = outbox_stream(cid)
    for rid, stop in (("short-1", True), ("short-2", False)):
        if stop:
            board.request_stop(rid)
        box.put_final(controller=cid, request_id=rid, rtype="result",
                      fields={"status": "ok", "values": {"pump.head": 19.6}}, topic="t/r",
                      job=board.keys_of(rid), if_stopped={"status": "stopped", "stats": {}})
        payloads = [json.loads(f[b"p"]) for _, f in rclient.xrange(stream)
                    if json.loads(f[b"p"])["id"] == rid]
        assert [p["status"] for p in payloads] == (["stopped"] if stop else ["ok"])
        assert "values" not in payloads[0] if stop else payloads[0]["values"]
        assert not rclient.exists(board.steer_key(rid))  # the stop flag went with the job


def test_an_id_used_in_the_24_h_before_an_upgrade_stays_used(rclient: redis.Redis) -> None:
    """Versions before one key per request kept the guard (``twin:{cid}:id:{id}``) and
    the seq (``…:req:{id}:seq``) in keys of their own: an id they guarded is a duplicate
    after the upgrade, and its duplicate error goes on with its seq (a captured signed
    command cannot be replayed across an upgrade)."""
    box, cid = Outbox(rclient), f"c-{uuid.uuid4().hex[:6]}"
    guard, seq = legacy_keys(cid, "old-1")
    rclient.set(guard, "2026-11-30T10:00:00Z token", ex=86_400)
    rclient.set(seq, 2, ex=86_400)  # it had an ack (0) and a result (1)
    first = box.put_first(controller=cid, request_id="old-1", key="ack", rtype="ack",
                          fields={}, topic="t/r", duplicate={"code": "duplicate_id",
                                                             "message": "m"})
    assert (first.outcome, first.seq) == ("duplicate", 2)
    redelivered = box.put_first(controller=cid, request_id="old-1", key="ack", rtype="ack",
                                fields={}, topic="t/r", duplicate={}, redelivered=True)
    assert redelivered.outcome == "redelivered"
    new = box.put_first(controller=cid, request_id="new-1", key="ack", rtype="ack",
                        fields={}, topic="t/r", duplicate={})
    assert (new.outcome, new.seq) == ("new", 0)
    assert not rclient.exists(*legacy_keys(cid, "new-1"))  # never written
