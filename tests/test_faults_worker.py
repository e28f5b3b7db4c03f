"""Fault injection: a worker's pool process dies while it runs a job.

Its own Redis, Mosquitto and stack (:mod:`tests.faults`); the pool child running the
job is found under /proc and SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingress.jobspec import task_id
from tasks import queues
from tasks.outbox import SPEC_FIELD, request_key
from tests.conftest import new_id, running_stack
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import proxies as proxies
from tests.faults.fixtures import servers as servers
from tests.faults.harness import (
    BugSymptom,
    Parts,
    Servers,
    assert_gapless,
    busy_child,
    controller,
    controller_env,
    log_text,
    pool_children,
    wait_worker,
)
from tests.faults.scenarios import pid_loop, static_run
from tests.orchestrator import Orchestrator
from tests.services import HoldingProxy, RedisProcess

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.mark.timeout(120)
def test_a_job_whose_worker_process_is_killed_is_run_again_and_answered_once(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """A ~4 s dynamic run on a 2-process prefork worker: the pool child running it
    (the one burning CPU, found under /proc) is SIGKILLed. acks_late and
    reject_on_worker_lost put the job back; it runs again and the orchestrator sees one
    ack and one result (seq 0, 1), the result right."""
    redis, broker = servers.redis(), servers.mosquitto()
    env = controller_env(redis, broker, tmp_path)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid, status=False)
    with running_stack(env, tmp_path / "logs", workers=2) as stack:
        rid = new_id("pid")
        orch.send(pid_loop(rid, 800), f"{prefix}/{cid}/cmd")
        orch.wait(lambda: orch.has(rid, "ack"), 20, f"the ack of {rid}")
        worker = stack.procs["worker"]
        victim = busy_child(worker.pid)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        orch.wait(lambda: orch.finals(rid) >= 1, 90, f"the result of {rid} after the kill")
        took = time.monotonic() - killed
        time.sleep(1.0)
        replies = assert_gapless(orch, rid, ["ack", "result"])
        result = replies[-1]
        assert result["values"]["plant.y"][-1] == pytest.approx(1.0, abs=1e-6)
        assert len(result["t"]) == 801
        assert not orch.conflicts
        assert worker.poll() is None, "the worker's main process died with its child"
        assert victim not in pool_children(worker.pid)
        assert stack.log_dir is not None
        log = log_text(stack.log_dir / "worker.log")
        assert "WorkerLostError" in log or "exited prematurely" in log, log[-3000:]
        print(f"result {took:.1f} s after the pool child {victim} was killed")


@pytest.mark.timeout(180)
def test_a_dead_worker_hosts_job_is_run_again_within_a_minute(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """Two worker processes; the one running a dynamic job is SIGKILLed whole (its main
    process and its pool together, as a container OOM kill or a power cut would). Once
    the job waited for Redis's visibility timeout (~22 minutes); now its lease runs out,
    the ingress finds the worker does not answer a ping, puts the job back in its queue,
    and the other worker runs it: answered once, within a minute of the death."""
    ctl = controller(servers, orchestrators, tmp_path)
    redis, orch, parts, cid = ctl.redis, ctl.orch, ctl.parts, ctl.cid
    try:
        ctl.online()
        workers = {name: parts.worker(name=name) for name in ("w1", "w2")}
        wait_worker(redis.url, 30)
        rid = new_id("orphan")
        orch.send({"id": rid, "cmd": "run", "scenario": {
            "mode": "dynamic",
            "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
            "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 300, "step": 100},
            "solver": {"max_step": 0.01}}})  # 30 000 solver steps: about a second
        client = redis.client()
        deadline = time.monotonic() + 60
        while True:
            raw = client.hget(f"twin:{cid}:jobs", rid)
            if raw and b'"running"' in raw:
                break
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.02)
        running_pid = json.loads(raw)["worker_pid"]
        holder = next(n for n, p in workers.items()
                      if running_pid in {p.pid, *pool_children(p.pid)})
        os.killpg(workers[holder].pid, signal.SIGKILL)  # the whole host, at once
        answered_again_within_a_minute(orch, parts, rid, time.monotonic())
        client.close()
    finally:
        parts.stop()


@pytest.mark.timeout(180)
def test_a_dead_worker_hosts_short_job_is_run_again_within_a_minute(
        servers: Servers, orchestrators: Callable[..., Orchestrator],
        proxies: Callable[[RedisProcess], HoldingProxy], tmp_path: Path) -> None:
    """A static run (a short job: never leased) is held by a worker whose host then
    dies: the worker's Redis traffic goes through a proxy that holds its final reply
    (the job's message taken, not acknowledged), and the worker is SIGKILLed whole.
    Once it waited for Redis's visibility timeout (~22 minutes); now the ingress's
    sweep finds a message no live worker holds and puts it back, and a second worker
    answers it, within a minute of the death."""
    ctl = controller(servers, orchestrators, tmp_path)
    redis, orch, parts = ctl.redis, ctl.orch, ctl.parts
    proxy = proxies(redis)
    try:
        ctl.online()
        doomed = parts.spawn("w1", "worker", "--concurrency", "1",
                             env={"TWIN_REDIS_URL": proxy.url()})
        wait_worker(redis.url, 30)
        rid = new_id("short")
        # the job's final reply: the first thing the worker sends that names the
        # request's hash (a script call; kombu may make script calls of its own first)
        proxy.arm(request_key(ctl.cid, rid).encode())
        orch.send(static_run(rid))
        assert proxy.held.wait(30), "the worker never stored a reply"
        client = redis.client()
        assert client.hlen("unacked") == 1, "the job's message is not held by the worker"
        time.sleep(0.5)
        assert orch.finals(rid) == 0, "answered before the worker died"
        os.killpg(doomed.pid, signal.SIGKILL)  # the whole host, at once
        died = time.monotonic()
        parts.worker(name="w2")
        answered_again_within_a_minute(orch, parts, rid, died)
        assert client.hlen("unacked") == 0
        client.close()
    finally:
        parts.stop()


@pytest.mark.timeout(180)
def test_a_message_taken_off_its_queue_and_never_read_is_sent_again_within_a_minute(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """What a worker whose connection dies just as Redis answers its BRPOP leaves: the
    job's message off its queue, never recorded as unacknowledged (kombu records it
    only once the worker has read it), held by no worker. Here the test takes it off
    the queue itself, as that worker would, and drops it. Once the job was never
    answered; now the ingress, which kept the job with its ack, finds its message
    nowhere (twice, 5 s apart, after 30 s queued) and sends it again, and a worker
    answers it once, within a minute."""
    ctl = controller(servers, orchestrators, tmp_path)
    redis, orch, parts, cid = ctl.redis, ctl.orch, ctl.parts, ctl.cid
    try:
        ctl.online()
        rid = new_id("vanish")
        orch.send(static_run(rid))
        orch.wait(lambda: orch.has(rid, "ack"), 20, f"the ack of {rid}")
        client = redis.client()
        taken = client.brpop([queues.SHORT], timeout=10)  # the read that never arrives
        assert taken is not None, "the job was never queued"
        lost_at = time.monotonic()
        assert json.loads(taken[1])["headers"]["id"] == task_id(cid, rid)
        assert client.hexists(request_key(cid, rid), SPEC_FIELD), "nothing kept to send again"
        parts.worker(name="w1")
        wait_worker(redis.url, 30)
        time.sleep(2.0)
        assert orch.finals(rid) == 0, "answered although its message was dropped"
        answered_again_within_a_minute(orch, parts, rid, lost_at)
        assert "was in no queue and held by no worker" in parts.log("ingress")
        assert not client.hexists(request_key(cid, rid), SPEC_FIELD), \
            "the kept job outlived its final reply"
        client.close()
    finally:
        parts.stop()


def answered_again_within_a_minute(orch: Orchestrator, parts: Parts, rid: str,
                                   died: float) -> None:
    """The job of a worker that died at ``died`` (monotonic) is queued again by the
    ingress and answered once, ``ok``, within a minute."""
    try:
        orch.wait(lambda: orch.finals(rid) > 0, 90, "the job's answer after the death")
    except AssertionError as exc:
        raise BugSymptom(str(exc)) from None
    took = time.monotonic() - died
    time.sleep(1.0)
    replies = assert_gapless(orch, rid, ["ack", "result"])
    assert replies[-1]["status"] == "ok", replies[-1]
    print(f"answered {took:.1f} s after its worker died")
    assert took < 60, f"answered {took:.0f} s after its worker died"
    assert "queued again" in parts.log("ingress")

