"""Fault injection: Redis crashes (and comes back from its append-only file) with
jobs queued, with replies stored but not sent, while the ingress queues a job, and
just after a reply's PUBACK.

Each test has its own Redis, Mosquitto and controller processes (:mod:`tests.faults`);
a :class:`~tests.services.HoldingProxy` stops a process at a chosen Redis command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import new_id
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import proxies as proxies
from tests.faults.fixtures import servers as servers
from tests.faults.harness import (
    LPUSH,
    BugSymptom,
    Parts,
    Servers,
    assert_gapless,
    controller,
    controller_env,
    diagnose,
    outbox_len,
    wait_outbox,
    wait_persisted,
    wait_queue,
    wait_worker,
)
from tests.faults.scenarios import acked_static_runs, static_run
from tests.orchestrator import Orchestrator
from tests.services import HoldingProxy, RedisProcess

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.mark.timeout(120)
def test_queued_jobs_survive_a_redis_crash_with_appendonly(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """Redis with appendonly yes / appendfsync always; an ingress but no worker yet:
    8 static runs are acked and wait in the Celery queue. Redis is SIGKILLed and started
    again on the same port and directory; the 8 jobs are still queued, and once a
    worker starts each is answered, once."""
    redis, broker = servers.redis(appendonly=True), servers.mosquitto()
    env = controller_env(redis, broker, tmp_path)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid)
    parts = Parts(env, tmp_path / "logs")
    try:
        parts.ingress()
        orch.wait(lambda: orch.status(cid)[-1:] == ["online"], 30, "the ingress online")
        ids = acked_static_runs(orch, f"{prefix}/{cid}/cmd", 8, "q")
        # no worker yet: every job is acked and waits in Redis. (The ack is stored before
        # the job is queued, and a reply is deleted from the outbox just after its PUBACK:
        # wait for both, the crash in those windows is another test's.)
        wait_queue(redis, "twin.short", len(ids), 10)
        wait_outbox(redis, cid, lambda n: n == 0, 10, "0 (the acks sent)")
        redis.kill()
        redis.start()
        client = redis.client()
        queued = client.llen("twin.short")
        client.close()
        assert queued == len(ids), f"{queued} of {len(ids)} queued jobs after the Redis crash"
        parts.worker(concurrency=2)
        orch.wait(lambda: all(orch.finals(r) for r in ids), 60,
                  "the results of all queued jobs")
        time.sleep(1.0)
        for rid in ids:
            replies = assert_gapless(orch, rid, ["ack", "result"])
            assert replies[-1]["values"]["pump.head"] > 0
        assert not orch.conflicts
        wait_outbox(redis, cid, lambda n: n == 0, 15, "0 (drained)")
    finally:
        parts.stop()


@pytest.mark.timeout(120)
def test_replies_stored_but_not_sent_survive_a_redis_crash(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """6 static runs acked and queued; the broker is SIGKILLed, then a worker starts
    and stores the 6 results in the outbox (nothing can be sent). Redis (append-only)
    is SIGKILLed and restarted: the 6 stored results are still there; the broker comes
    back and the orchestrator gets each result once; the outbox drains."""
    redis, broker = servers.redis(appendonly=True), servers.mosquitto()
    env = controller_env(redis, broker, tmp_path)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid)
    parts = Parts(env, tmp_path / "logs")
    try:
        parts.ingress()
        orch.wait(lambda: orch.status(cid)[-1:] == ["online"], 30, "the ingress online")
        ids = acked_static_runs(orch, f"{prefix}/{cid}/cmd", 6, "s")
        wait_persisted(orch)
        broker.kill()
        parts.worker(concurrency=2)  # the results are stored while the broker is down
        wait_outbox(redis, cid, lambda n: n >= len(ids), 60, f">= {len(ids)} results")
        redis.kill()
        redis.start()
        assert outbox_len(redis, cid) >= len(ids), "stored replies lost in the Redis restart"
        broker.start()
        orch.wait(lambda: all(orch.finals(r) for r in ids), 60,
                  "the results after Redis and the broker came back")
        time.sleep(1.0)
        for rid in ids:
            assert_gapless(orch, rid, ["ack", "result"])
        assert not orch.conflicts
        wait_outbox(redis, cid, lambda n: n == 0, 30, "0 (drained)")
    finally:
        parts.stop()


@pytest.mark.timeout(90)
def test_a_redis_outage_while_the_ingress_queues_a_job_loses_nothing(
        servers: Servers, orchestrators: Callable[..., Orchestrator],
        proxies: Callable[[RedisProcess], HoldingProxy], tmp_path: Path) -> None:
    """Redis (append-only, fsync always) crashes just as the ingress sends the ``LPUSH``
    that queues an acked job (a proxy holds that command, deterministically) and is
    back 3 s later. The ingress retries every other Redis call until it works; the job
    must be queued and answered once Redis is back. (Found: Celery gives up after
    ~0.6 s and raises kombu's OperationalError, which the ingress did not retry; the
    command was MQTT-acked anyway: an ack, never a result. Fixed in 29a2bf0.)"""
    redis, broker = servers.redis(appendonly=True), servers.mosquitto()
    proxy = proxies(redis)
    env = controller_env(redis, broker, tmp_path)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid)
    parts = Parts(env, tmp_path / "logs")
    try:
        parts.ingress(env={"TWIN_REDIS_URL": proxy.url(), "TWIN_LOG_LEVEL": "INFO"})
        parts.worker(concurrency=1)
        orch.wait(lambda: orch.status(cid)[-1:] == ["online"], 30, "the ingress online")
        wait_worker(redis.url)
        rid = new_id("outage")
        proxy.arm(LPUSH)
        orch.send(static_run(rid), f"{prefix}/{cid}/cmd")
        assert proxy.held.wait(15), "the ingress never tried to queue the job"
        redis.kill()  # the ack is stored (and fsynced); the job's LPUSH is lost with Redis
        time.sleep(3.0)
        redis.start()
        try:
            orch.wait(lambda: orch.finals(rid) >= 1, 10,
                      f"the result of {rid} after Redis came back")
        except AssertionError as exc:
            log = [line for line in parts.log("ingress").splitlines()
                   if rid in line or "Error" in line or "could not" in line]
            raise BugSymptom(f"{exc}\n{diagnose(orch, redis, [cid], [rid])}\n"
                                 f"  ingress log: {log[-8:]}") from None
        assert_gapless(orch, rid, ["ack", "result"])
    finally:
        parts.stop()


@pytest.mark.timeout(60)
def test_the_outbox_drains_when_redis_crashes_just_after_a_puback(
        servers: Servers, orchestrators: Callable[..., Orchestrator],
        proxies: Callable[[RedisProcess], HoldingProxy], tmp_path: Path) -> None:
    """A reply is deleted from the outbox on its PUBACK; Redis (append-only) crashes just
    then (a proxy holds the publisher's ``XDEL``) and is back a second later. Nothing is
    lost — the orchestrator has the reply — but the stored copy must go too, or it is
    sent again at some later restart and the outbox never reads empty. (Found: the
    publisher dropped a failed XDEL, its cursor already past the entry. Fixed in
    29a2bf0.)"""
    redis, broker = servers.redis(appendonly=True), servers.mosquitto()
    proxy = proxies(redis)
    env = controller_env(redis, broker, tmp_path)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid)
    parts = Parts(env, tmp_path / "logs")
    try:
        parts.ingress(env={"TWIN_REDIS_URL": proxy.url(), "TWIN_LOG_LEVEL": "INFO"})
        orch.wait(lambda: orch.status(cid)[-1:] == ["online"], 30, "the ingress online")
        rid = new_id("xdel")
        proxy.arm(b"\r\nXDEL\r\n")
        orch.send({"id": rid, "cmd": "ping"}, f"{prefix}/{cid}/cmd")
        assert proxy.held.wait(10), "the publisher never deleted the pong"
        redis.kill()
        time.sleep(1.0)
        redis.start()
        orch.wait(lambda: orch.finals(rid) >= 1, 10, f"the pong of {rid}")
        after = time.monotonic()
        ping2 = new_id("after")  # the outbox works again
        orch.send({"id": ping2, "cmd": "ping"}, f"{prefix}/{cid}/cmd")
        orch.wait(lambda: orch.finals(ping2) >= 1, 15, f"the pong of {ping2}")
        try:
            wait_outbox(redis, cid, lambda n: n == 0, max(1.0, after + 8 - time.monotonic()),
                        "0 (drained)")
        except AssertionError as exc:
            client = redis.client()
            left = [(k, f[b"p"][:60]) for k, f in client.xrange(f"twin:{cid}:outbox")]
            client.close()
            raise BugSymptom(f"{exc}: {left}") from None
    finally:
        parts.stop()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("outage", [3.0, 20.0])
def test_a_redis_outage_under_a_busy_batch_worker_loses_no_job(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path,
        outage: float) -> None:
    """A dynamic run is running when Redis goes away for a few seconds (SIGKILL, then
    started again from its append-only file). Its stop-flag reads fail while it runs and
    its final reply cannot be stored at first: once the job was answered
    `internal_error`, that answer could not be stored either, Celery's autoretry could
    not queue a retry, and the job was acked and never answered. Now the run goes on,
    its result waits for Redis, and it is answered once, with its result."""
    ctl = controller(servers, orchestrators, tmp_path, appendonly=True)
    redis, orch, parts, cid = ctl.redis, ctl.orch, ctl.parts, ctl.cid
    try:
        ctl.online()
        parts.worker(concurrency=1)
        rid = new_id("busy")
        orch.send({"id": rid, "cmd": "run", "scenario": {
            "mode": "dynamic",
            "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
            "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 1500, "step": 100},
            "solver": {"max_step": 0.01}}})  # 150 000 solver steps: several seconds
        client = redis.client()
        deadline = time.monotonic() + 30
        while b"running" not in (client.hget(f"twin:{cid}:jobs", rid) or b""):
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.05)
        client.close()
        time.sleep(0.5)
        redis.kill()
        time.sleep(outage)
        redis.start()
        orch.wait(lambda: orch.finals(rid) > 0, 120, "the job's final reply")
        time.sleep(1.0)
        replies = assert_gapless(orch, rid, ["ack", "result"])
        assert replies[-1]["status"] == "ok", replies[-1]
        assert parts.procs["worker"].poll() is None, "the worker died: " + parts.log("worker")
    finally:
        parts.stop()
