"""The limits that keep one small command from holding a worker for its whole time limit
or for ever, over MQTT against a real stack (own module stack, TWIN_MAX_REALTIME_S=3):

- a dynamic run whose ``solver.max_step`` implies more solver steps than TWIN_MAX_STEPS
  is refused before anything is queued; the smallest ``max_step`` its message advises
  is accepted;
- an open-ended real-time run is handed the cap and ends by itself at TWIN_MAX_REALTIME_S,
  as a ``stop`` ends it;
- a real-time run whose ``time.stop`` is further away than the cap is refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import new_id, orchestrator_of, running_stack, stack_env
from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

pytestmark = pytest.mark.integration

CAP = 3
"""TWIN_MAX_REALTIME_S of the module's stack"""


@pytest.fixture(scope="module")
def capped(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    with running_stack(stack_env(redis_server, mqtt_server, TWIN_MAX_REALTIME_S=str(CAP)),
                       tmp_path_factory.mktemp("runlimits-logs"), workers=1,
                       realtime=1) as stack:
        yield stack


@pytest.fixture()
def orch(capped: Stack) -> Iterator[Orchestrator]:
    with orchestrator_of(capped) as o:
        yield o


def dynamic(rid: str, max_step: float) -> dict[str, Any]:
    """246 bytes that once held a worker for its whole time limit (max_step 1e-3)."""
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
        "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 1e5, "step": 1000},
        "solver": {"max_step": max_step}}}


def realtime(rid: str, stop: float | None = None) -> dict[str, Any]:
    time_: dict[str, Any] = {"start": 0, "step": 0.1}
    if stop is not None:
        time_["stop"] = stop
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "realtime",
        "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 0.5}}},
        "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"], "time": time_,
        "realtime": {"publish_every": 5}}}


def jobs(orch: Orchestrator) -> dict[str, dict[str, Any]]:
    return {j["id"]: j for j in orch.request({"id": new_id("jobs"), "cmd": "jobs"})[0]["jobs"]}


def test_a_tiny_max_step_over_a_long_span_is_refused_before_it_is_queued(
        orch: Orchestrator) -> None:
    rid = new_id("tiny")
    replies = orch.request(dynamic(rid, 1e-3))
    assert [r["type"] for r in replies] == ["error"], replies  # no ack: nothing queued
    err = replies[0]
    assert (err["code"], err["path"], err["limit"]) == (
        "limit_exceeded", "scenario.solver.max_step", 10_000_000)
    assert "at least 100000000 solver steps" in err["message"]
    assert "TWIN_MAX_STEPS" in err["message"]
    assert rid not in jobs(orch)
    found = re.search(r"make solver\.max_step at least (\S+) s", err["message"])
    assert found and float(found.group(1)) == 0.01, err["message"]
    # the advised max_step is accepted (minutes of work: stopped once it runs)
    rid = new_id("fits")
    orch.send(dynamic(rid, float(found.group(1))))
    deadline = time.monotonic() + 15
    while jobs(orch).get(rid, {}).get("state") != "running":
        assert time.monotonic() < deadline, orch.replies(rid)
        time.sleep(0.1)
    assert orch.replies(rid)[0]["type"] == "ack"
    orch.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    final = orch.wait_final(rid, timeout=15)[-1]
    assert (final["type"], final["status"]) == ("result", "stopped"), final


def test_an_open_ended_real_time_run_ends_by_itself_at_the_cap(
        orch: Orchestrator, capped: Stack) -> None:
    from tasks.app import make_app

    rid = new_id("rt-open")
    orch.send(realtime(rid))
    deadline = time.monotonic() + 15
    while not any(r["type"] == "data" for r in orch.replies(rid)):
        assert time.monotonic() < deadline, orch.replies(rid)
        time.sleep(0.01)
    started = time.monotonic()  # the first rows: the loop runs
    job = jobs(orch)[rid]
    app = make_app()
    app.conf.broker_url = capped.settings.redis_url
    try:  # the worker was handed the cap (the time limits: tests/test_limits_steps.py)
        active = app.control.inspect(destination=[job["worker"]], timeout=2.0).active() or {}
        (task,) = [t for t in active.get(job["worker"], []) if t["id"] == job["celery_id"]]
        assert task["kwargs"]["max_wall_s"] == CAP, task
    finally:
        app.close()
    replies = orch.wait_final(rid, timeout=CAP + 10)
    took = time.monotonic() - started
    final = replies[-1]
    assert (final["type"], final["status"]) == ("result", "stopped"), final
    assert final["stopped_by"] == "TWIN_MAX_REALTIME_S" and final["limit"] == CAP
    assert f"TWIN_MAX_REALTIME_S = {CAP} s" in final["message"]
    assert CAP - 1.0 < took < CAP + 2.0, took
    t = [x for r in replies if r["type"] == "data" for x in r["t"]]
    assert final["rows"] == len(t) == CAP * 10  # ticks released before the cap: 0 … 2.9 s
    assert t[-1] == pytest.approx(CAP - 0.1)
    assert rid not in jobs(orch)  # the slot is free
    again = orch.request(realtime(new_id("rt-again"), stop=0.5), timeout=15)[-1]
    assert again["status"] == "completed" and "stopped_by" not in again


def test_a_real_time_run_longer_than_the_cap_is_refused(orch: Orchestrator) -> None:
    rid = new_id("rt-long")
    replies = orch.request(realtime(rid, stop=CAP + 0.5))
    assert [r["type"] for r in replies] == ["error"], replies
    err = replies[0]
    assert (err["code"], err["path"], err["limit"]) == (
        "limit_exceeded", "scenario.time.stop", CAP)
    assert "3.5 s of wall-clock time" in err["message"]
    assert "TWIN_MAX_REALTIME_S" in err["message"] and f"at most {CAP} s" in err["message"]
    assert rid not in jobs(orch)
    fits = orch.request(realtime(new_id("rt-fits"), stop=CAP), timeout=15)[-1]
    assert fits["status"] == "completed", fits


def test_a_job_not_started_within_its_ttl_is_expired_and_not_run(orch: Orchestrator) -> None:
    """PROTOCOL.md, envelope `ttl`: a job that has not started within `ttl` seconds of
    the controller receiving its command is not run; it ends with `expired`. Here it
    waits behind a long run on the stack's one batch worker."""
    hog = new_id("hog")
    orch.send(dynamic(hog, 1e-2))  # 1e7 solver steps: minutes
    deadline = time.monotonic() + 20
    while jobs(orch).get(hog, {}).get("state") != "running":
        assert time.monotonic() < deadline, jobs(orch)
        time.sleep(0.1)
    late, fresh = new_id("late"), new_id("fresh")
    short = {"mode": "dynamic", "elements": {"lag": {"model": "FirstOrderLag",
                                                     "params": {"time_constant": 1}}},
             "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 2, "step": 1}}
    orch.send({"id": late, "cmd": "run", "ttl": 1, "scenario": short})
    orch.send({"id": fresh, "cmd": "run", "ttl": 600, "scenario": short})
    time.sleep(0.5)
    assert jobs(orch)[late]["expires_at"] > time.time() - 5  # it shows when it expires
    time.sleep(1.5)  # its ttl runs out while it waits
    orch.request({"id": new_id("stop"), "cmd": "stop", "target": hog})
    assert orch.wait_final(hog, 30)[-1]["status"] == "stopped"
    replies = orch.wait_final(late, 30)
    assert [r["type"] for r in replies] == ["ack", "error"], replies
    err = replies[-1]
    assert (err["code"], err["path"]) == ("expired", "ttl"), err
    assert "not run" in err["message"]
    assert orch.wait_final(fresh, 30)[-1]["type"] == "result"  # a ttl not run out: runs


@pytest.mark.parametrize("ttl", [0, -1, "5", True, None])
def test_a_bad_ttl_is_refused(orch: Orchestrator, ttl: Any) -> None:
    rid = new_id("ttl")
    command: dict[str, Any] = {"id": rid, "cmd": "ping", "ttl": ttl}
    (reply,) = orch.request(command)
    if ttl is None:  # (null: no ttl)
        assert reply["type"] == "pong"
        return
    assert (reply["code"], reply["path"]) == ("invalid_argument", "ttl"), reply
    assert "greater than 0" in reply["message"]
