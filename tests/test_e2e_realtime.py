"""Real-time runs over MQTT with real workers: rows in order, `set`, `stop`, `jobs`,
real-time beside a burst of batch work, and a real-time worker that dies."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator

pytestmark = pytest.mark.integration

TAU, GAIN = 0.5, 2.0


@pytest.fixture(scope="module")
def rt(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Orchestrator]:
    with running_stack(stack_env(redis_server, mqtt_server),
                       tmp_path_factory.mktemp("logs"), workers=2, realtime=2) as stack:
        s = stack.settings
        orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        orch.redis_url = s.redis_url  # type: ignore[attr-defined]  # for Celery control
        yield orch
        orch.close()


def lag(rid: str, *, step: float, stop: float | None = None, every: int = 5, u: float = 1.0,
        **realtime: Any) -> dict[str, Any]:
    """A first-order lag K/(tau s + 1) driven by a constant input, in real time."""
    time_: dict[str, Any] = {"start": 0, "step": step}
    if stop is not None:
        time_["stop"] = stop
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "realtime",
        "elements": {"lag": {"model": "FirstOrderLag",
                             "params": {"gain": GAIN, "time_constant": TAU}}},
        "inputs": {"lag.u": u}, "outputs": ["lag.y"], "time": time_,
        "realtime": {"speed": 1.0, "publish_every": every, **realtime}}}


def rows_of(replies: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    t: list[float] = []
    y: list[float] = []
    for r in replies:
        if r["type"] == "data":
            t += r["t"]
            y += r["values"]["lag.y"]
    return t, y


def wait_for(orch: Orchestrator, rid: str, pred: Any, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = orch.replies(rid)
        if pred(got):
            return got
        time.sleep(0.01)
    raise AssertionError(f"condition not met for {rid} within {timeout} s: {orch.replies(rid)}")


def test_a_10_hz_run_for_2_s_delivers_its_rows_in_order_without_gaps(rt: Orchestrator) -> None:
    rid = new_id("rt")
    started = time.monotonic()
    replies = rt.request(lag(rid, step=0.1, stop=2.0, every=5), timeout=30)
    took = time.monotonic() - started
    assert [r["seq"] for r in replies] == list(range(len(replies)))
    kinds = [r["type"] for r in replies]
    assert kinds == ["ack", *["data"] * 5, "result"], kinds  # 21 rows: 4 x 5 + 1
    assert replies[0]["queue"] == "twin.realtime"
    assert [r["chunk"] for r in replies[1:-1]] == list(range(5))
    t, y = rows_of(replies)
    assert np.allclose(t, np.arange(21) * 0.1, atol=1e-9)  # every tick, once, in order
    exact = GAIN * (1 - np.exp(-np.asarray(t) / TAU))  # the analytic step response
    assert np.allclose(y, exact, atol=1e-5)
    result = replies[-1]
    assert result["status"] == "completed" and result["rows"] == 21
    stats = result["stats"]
    assert stats["ticks"] == 21 and stats["skipped"] == 0
    assert 1.9 <= took < 10  # paced by the wall clock: 2 s of simulated time
    assert stats["lateness_ms"]["max"] < stats["tolerance_ms"] == 100.0
    for r in replies[1:-1]:
        assert r["stats"]["ticks"] >= len(r["t"])


def test_set_changes_the_output_within_one_publish_interval(rt: Orchestrator) -> None:
    rid = new_id("rt-set")
    rt.send(lag(rid, step=0.05, every=4, u=1.0))  # open-ended, publishes every 0.2 s
    wait_for(rt, rid, lambda got: sum(r["type"] == "data" for r in got) >= 2)
    sid = new_id("set")
    set_replies = rt.request({"id": sid, "cmd": "set", "target": rid,
                              "inputs": {"lag.u": 5.0}})
    assert [r["type"] for r in set_replies] == ["ack", "result"]
    assert set_replies[-1]["inputs"] == {"lag.u": 5.0}
    seen = len([r for r in rt.replies(rid) if r["type"] == "data"])
    # the new input is used from the next tick: the first or second data reply after
    # the answer shows the lag moving to 2 * 5 = 10 (from 2 * 1 = 2)
    got = wait_for(rt, rid, lambda g: sum(r["type"] == "data" for r in g) >= seen + 2)
    after = [r for r in got if r["type"] == "data"][seen:seen + 2]
    assert max(max(r["values"]["lag.y"]) for r in after) > 2.2
    rt.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    final = rt.wait_final(rid, timeout=10)[-1]
    assert final["status"] == "stopped" and final["stats"]["inputs_set"] == 1


def test_stop_ends_an_open_ended_run_within_a_tick_and_a_publish(rt: Orchestrator) -> None:
    rid = new_id("rt-stop")
    rt.send(lag(rid, step=0.1, every=5))  # 10 Hz, publishes every 0.5 s, no time.stop
    wait_for(rt, rid, lambda got: any(r["type"] == "data" for r in got))
    time.sleep(0.27)  # mid-way between two publishes
    sent = time.monotonic()
    stop = rt.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    assert stop[-1] == {**stop[-1], "status": "ok", "target": rid, "state": "running"}
    replies = rt.wait_final(rid, timeout=5)
    took = time.monotonic() - sent
    assert took < 0.1 + 0.5, f"the run ended {took:.3f} s after the stop"
    result = replies[-1]
    assert result["status"] == "stopped"
    assert [r["seq"] for r in replies] == list(range(len(replies)))
    t, _ = rows_of(replies)
    assert len(t) == result["rows"] > 5  # the rows since the last publish were flushed
    assert np.allclose(t, np.arange(len(t)) * 0.1, atol=1e-9)


def test_jobs_lists_what_runs_and_set_is_checked(rt: Orchestrator) -> None:
    rid = new_id("rt-jobs")
    rt.send(lag(rid, step=0.1, every=2))
    wait_for(rt, rid, lambda got: any(r["type"] == "data" for r in got))
    jobs = rt.request({"id": new_id("jobs"), "cmd": "jobs"})
    assert [r["type"] for r in jobs] == ["result"]
    mine = [j for j in jobs[0]["jobs"] if j["id"] == rid]
    assert len(mine) == 1 and mine[0]["state"] == "running"
    assert mine[0]["task"] == "twin.realtime" and mine[0]["inputs"] == ["lag.u"]
    assert mine[0]["summary"].startswith("realtime: 1 element(s)")

    def refused(cmd: dict[str, Any]) -> dict[str, Any]:
        replies = rt.request({"id": new_id("bad"), **cmd})
        assert replies[-1]["type"] == "error", replies
        return replies[-1]

    e = refused({"cmd": "set", "target": rid, "inputs": {"lag.uu": 1}})
    assert (e["code"], e["path"]) == ("invalid_argument", "inputs.lag.uu")
    assert "lag.u" in e["message"]
    e = refused({"cmd": "set", "target": rid, "inputs": {"lag.u": "high"}})
    assert (e["code"], e["path"]) == ("invalid_argument", "inputs.lag.u")
    e = refused({"cmd": "set", "target": "no-such-job", "inputs": {"lag.u": 1}})
    assert (e["code"], e["path"]) == ("unknown_job", "target")
    e = refused({"cmd": "stop", "target": "no-such-job"})
    assert (e["code"], e["path"]) == ("unknown_job", "target")
    e = refused({"cmd": "stop"})
    assert (e["code"], e["path"]) == ("missing_argument", "target")
    rt.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    assert rt.wait_final(rid, timeout=5)[-1]["status"] == "stopped"
    e = refused({"cmd": "stop", "target": rid})  # over: not running any more
    assert e["code"] == "unknown_job"


def test_stop_reaches_batch_jobs_running_and_waiting(rt: Orchestrator) -> None:
    """Three long dynamic runs on two batch processes: two run, one waits; `stop`
    ends all three with `stopped`."""
    ids = [new_id("long") for _ in range(3)]
    for rid in ids:
        rt.send({"id": rid, "cmd": "run", "scenario": {
            "mode": "dynamic",
            "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1.0}}},
            "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 1e5, "step": 1000},
            "solver": {"max_step": 1e-2}}})  # 1e7 solver steps (TWIN_MAX_STEPS): minutes
    deadline = time.monotonic() + 20
    while True:
        jobs = rt.request({"id": new_id("jobs"), "cmd": "jobs"})[0]["jobs"]
        states = {j["id"]: j["state"] for j in jobs if j["id"] in ids}
        if sorted(states.values()) == ["queued", "running", "running"]:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    # the waiting one first: stopping a running one lets it start
    for rid in sorted(ids, key=lambda i: states[i] == "running"):
        answer = rt.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
        assert answer[-1]["state"] == states[rid]
    for rid in ids:
        final = rt.wait_final(rid, timeout=30)[-1]
        assert final["type"] == "result" and final["status"] == "stopped", final


def test_real_time_jobs_keep_their_deadlines_beside_a_batch_burst(rt: Orchestrator) -> None:
    tolerance = 0.05
    rts = [new_id("rt-burst") for _ in range(2)]
    for rid in rts:
        rt.send(lag(rid, step=0.05, stop=4.0, every=10, tolerance=tolerance))
    wait_for(rt, rts[-1], lambda got: any(r["type"] == "data" for r in got))
    batch = [new_id("static") for _ in range(200)]
    for rid in batch:
        rt.send({"id": rid, "cmd": "run", "scenario": {
            "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
            "inputs": {"pump.speed": 1300, "pump.flow": 0.025}}})
    for rid in rts:
        result = rt.wait_final(rid, timeout=30)[-1]
        assert result["status"] == "completed", result
        stats = result["stats"]
        assert stats["ticks"] == 81 and stats["skipped"] == 0
        assert stats["late"] == 0, f"ticks later than the tolerance: {stats}"
        assert stats["lateness_ms"]["max"] <= tolerance * 1000
    for rid in batch:
        assert rt.wait_final(rid, timeout=60)[-1]["type"] == "result"


def test_a_real_time_job_whose_worker_dies_is_reported(rt: Orchestrator) -> None:
    rid = new_id("rt-dies")
    rt.send(lag(rid, step=0.1, every=2))
    wait_for(rt, rid, lambda got: any(r["type"] == "data" for r in got))
    jobs = rt.request({"id": new_id("jobs"), "cmd": "jobs"})[0]["jobs"]
    (job,) = [j for j in jobs if j["id"] == rid]
    pid = int(job["worker_pid"])
    os.kill(pid, signal.SIGKILL)
    replies = rt.wait_final(rid, timeout=15)
    error = replies[-1]
    assert error["type"] == "error" and error["code"] == "runtime_error", error
    assert "stopped answering" in error["message"]
    assert [r["seq"] for r in replies] == list(range(len(replies)))
    # the pool replaced its process: real-time runs go on
    again = rt.request(lag(new_id("rt-again"), step=0.1, stop=0.5, every=2), timeout=20)
    assert again[-1]["status"] == "completed"


def test_a_run_that_falls_behind_follows_its_policy(rt: Orchestrator) -> None:
    """A tick period far shorter than one tick's work: `fail` ends the run with
    `runtime_error`; `skip` jumps over the missed ticks."""
    heavy = {"solver": {"max_step": 1e-5}}
    rid = new_id("rt-fail")
    command = lag(rid, step=0.002, stop=2.0, every=50, policy="fail", tolerance=0.01)
    command["scenario"].update(heavy)
    error = rt.request(command, timeout=20)[-1]
    assert (error["type"], error["code"], error["path"]) == (
        "error", "runtime_error", "scenario.realtime.tolerance")
    assert "fell behind" in error["message"]
    rid = new_id("rt-skip")
    command = lag(rid, step=0.002, stop=1.0, every=50, policy="skip")
    command["scenario"].update(heavy)
    replies = rt.request(command, timeout=30)
    result = replies[-1]
    assert result["status"] == "completed" and result["stats"]["skipped"] > 0
    t, y = rows_of(replies)
    assert len(t) == result["rows"] < 501 and math.isclose(t[-1], 1.0)
    assert np.all(np.diff(t) > 0)
    assert np.allclose(y, GAIN * (1 - np.exp(-np.asarray(t) / TAU)), atol=1e-4)


def test_a_worker_holding_a_real_time_job_answers_celery_control(rt: Orchestrator) -> None:
    """What Flower and `celery inspect` rely on: the worker's main process answers
    while its pool process runs the loop."""
    from tasks.app import make_app

    rid = new_id("rt-ctl")
    rt.send(lag(rid, step=0.1, every=2))
    wait_for(rt, rid, lambda got: any(r["type"] == "data" for r in got))
    jobs = rt.request({"id": new_id("jobs"), "cmd": "jobs"})[0]["jobs"]
    (job,) = [j for j in jobs if j["id"] == rid]
    app = make_app()
    app.conf.broker_url = rt.redis_url  # type: ignore[attr-defined]
    try:
        worker = job["worker"]
        assert app.control.ping(destination=[worker], timeout=2.0)
        active = app.control.inspect(destination=[worker], timeout=2.0).active() or {}
        running = [t for t in active.get(worker, []) if t["id"] == job["celery_id"]]
        assert running and running[0]["name"] == "twin.realtime"
        assert running[0]["args"][0] == rid  # the request id, as Flower shows it
    finally:
        app.close()
    rt.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    assert rt.wait_final(rid, timeout=5)[-1]["status"] == "stopped"


def test_a_waiting_real_time_job_takes_set_and_stop_before_it_starts(rt: Orchestrator) -> None:
    """Two slots: a third real-time job waits; `set` reaches it before its first
    tick, and `stop` of a waiting job means it never runs."""
    first = [new_id("rt-slot") for _ in range(2)]
    for rid in first:
        rt.send(lag(rid, step=0.1, every=2))
    for rid in first:
        wait_for(rt, rid, lambda got: any(r["type"] == "data" for r in got))
    waiting, never = new_id("rt-wait"), new_id("rt-never")
    rt.send(lag(waiting, step=0.1, every=2, u=1.0))
    rt.send(lag(never, step=0.1, every=2))
    deadline = time.monotonic() + 10
    while True:
        jobs = {j["id"]: j for j in rt.request({"id": new_id("jobs"), "cmd": "jobs"})[0]["jobs"]}
        if waiting in jobs and never in jobs:
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.1)
    assert jobs[waiting]["state"] == jobs[never]["state"] == "queued"
    answer = rt.request({"id": new_id("set"), "cmd": "set", "target": waiting,
                         "inputs": {"lag.u": 4.0}})
    assert answer[-1]["state"] == "queued"
    assert rt.request({"id": new_id("stop"), "cmd": "stop", "target": never})[-1]["state"] == (
        "queued")
    for rid in first:  # free the slots
        rt.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    got = wait_for(rt, waiting, lambda g: sum(r["type"] == "data" for r in g) >= 2)
    t, y = rows_of(got)
    # u = 4 from its first tick: the analytic response to 4, not to 1
    assert np.allclose(y, GAIN * 4.0 * (1 - np.exp(-np.asarray(t) / TAU)), atol=1e-5)
    final = rt.wait_final(never, timeout=10)
    assert [r["type"] for r in final] == ["ack", "result"] and final[-1]["status"] == "stopped"
    rt.request({"id": new_id("stop"), "cmd": "stop", "target": waiting})
    assert rt.wait_final(waiting, timeout=5)[-1]["status"] == "stopped"
