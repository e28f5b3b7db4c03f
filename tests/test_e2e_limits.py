"""Policy, limits and hostile input over MQTT, against a real stack (own module stack):

- the deployment policy (TWIN_ALLOW_*): refused commands, models, functions and modes
  with ``not_permitted`` and their path; ``describe`` and the status list only what
  is allowed;
- the limits (elements, steps, series, jobs of one orchestrator) with
  ``limit_exceeded``; a run that would take hours is stopped at the soft time limit
  (TWIN_SOFT_TIME_LIMIT=3) and answered ``timeout``;
- names that look like code (``os.system``, ``__import__``…) are only unknown names;
- a pickle-serialized task injected into the Celery queue is refused by a real worker
  and never unpickled or run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import new_id, orchestrator_of, running_stack, stack_env
from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

pytestmark = pytest.mark.integration

POLICY = {
    "TWIN_ALLOW_COMMANDS": "ping,describe,run,call,jobs,stop",
    "TWIN_ALLOW_MODELS": "FirstOrderLag,Tank,Pipe",
    "TWIN_ALLOW_FUNCTIONS": "mean,max",
    "TWIN_ALLOW_MODES": "static,dynamic",
    "TWIN_MAX_ELEMENTS": "3",
    "TWIN_MAX_STEPS": "1000",
    "TWIN_MAX_SERIES": "100",
    "TWIN_MAX_JOBS_PER_CLIENT": "1",
    "TWIN_SOFT_TIME_LIMIT": "3",
}


@pytest.fixture(scope="module")
def limited(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    with running_stack(stack_env(redis_server, mqtt_server, **POLICY),
                       tmp_path_factory.mktemp("limits-logs"), workers=2) as stack:
        yield stack


@pytest.fixture()
def orch(limited: Stack) -> Iterator[Orchestrator]:
    with orchestrator_of(limited) as o:
        yield o


def as_client(name: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("client", name)
    return props


def ask(orch: Orchestrator, command: dict[str, Any], timeout: float = 20.0,
        client: str | None = None) -> list[dict[str, Any]]:
    """One request as its own orchestrator (TWIN_MAX_JOBS_PER_CLIENT is 1 here)."""
    orch.send(command, properties=as_client(client or f"test-{uuid.uuid4().hex[:8]}"))
    return orch.wait_final(command["id"], timeout)


def error_of(orch: Orchestrator, command: dict[str, Any]) -> dict[str, Any]:
    replies = ask(orch, command)
    assert [r["type"] for r in replies] == ["error"], replies
    assert replies[0]["message"]
    return replies[0]


def lag(rid: str, mode: str = "dynamic", **scenario: Any) -> dict[str, Any]:
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": mode, "elements": {"lag": {"model": "FirstOrderLag",
                                           "params": {"time_constant": 2.0}}},
        "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"],
        "time": {"start": 0, "stop": 10, "step": 1}, **scenario}}


# ----- policy -------------------------------------------------------------------------

def test_allowed_things_still_work(orch: Orchestrator) -> None:
    replies = ask(orch, lag(new_id("ok"), post=[{"function": "max", "args": {"x": "lag.y"}}]))
    assert [r["type"] for r in replies] == ["ack", "result"]
    assert replies[1]["post"]["max"] == pytest.approx(1 - 2.718281828 ** -5, rel=1e-3)
    call = ask(orch, {"id": new_id("call"), "cmd": "call", "function": "mean",
                      "args": {"x": [1, 2, 3]}})
    assert call[-1]["value"] == 2


@pytest.mark.parametrize(
    ("command", "path", "words"),
    [
        ({"cmd": "put_instance", "instance": {"id": "X", "model": "Tank", "params": {}}},
         "cmd", "allows: ping, describe, run, call, stop, jobs"),
        ({"cmd": "run", "scenario": {
            "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
            "inputs": {"pump.speed": 1450, "pump.flow": 0.01}}},
         "scenario.elements.pump.model", "allowed models: FirstOrderLag, Pipe, Tank"),
        ({"cmd": "call", "function": "rms", "args": {"x": [1, 2]}}, "function",
         "allows: max, mean"),
        ({"cmd": "run", "template": "pump_to_tank", "args": {}}, "template",
         "template 'pump_to_tank': element 'pump' uses model 'CentrifugalPump'"),
    ],
)
def test_what_the_policy_does_not_allow_is_not_permitted(
        orch: Orchestrator, command: dict[str, Any], path: str, words: str) -> None:
    err = error_of(orch, {"id": new_id("np"), **command})
    assert (err["code"], err["path"]) == ("not_permitted", path), err
    assert words in err["message"], err


def test_modes_and_post_functions_outside_the_policy(orch: Orchestrator) -> None:
    err = error_of(orch, lag(new_id("rt"), mode="realtime", time={"start": 0, "step": 0.1}))
    assert (err["code"], err["path"]) == ("not_permitted", "scenario.mode")
    assert "runs: static, dynamic" in err["message"]
    err = error_of(orch, lag(new_id("post"), post=[{"function": "std", "args": {"x": "lag.y"}}]))
    assert (err["code"], err["path"]) == ("not_permitted", "scenario.post[0].function")


def test_describe_and_the_status_list_only_what_is_allowed(orch: Orchestrator) -> None:
    (desc,) = ask(orch, {"id": new_id("d"), "cmd": "describe"})
    assert sorted(desc["models"]) == ["FirstOrderLag", "Pipe", "Tank"]
    assert sorted(desc["functions"]) == ["max", "mean"]
    assert {i["model"] for i in desc["instances"].values()} <= {"FirstOrderLag", "Pipe", "Tank"}
    assert "pump_to_tank" not in desc["templates"] and "tank_draining" in desc["templates"]
    deadline = time.monotonic() + 10
    while not (status := [b for t, b, _ in orch.messages if t.endswith("/status")]):
        assert time.monotonic() < deadline, "no retained status"
        time.sleep(0.05)
    st = status[-1]
    assert st["commands"] == ["ping", "describe", "run", "call", "stop", "jobs"]
    assert st["modes"] == ["static", "dynamic"]
    assert st["models"] == ["FirstOrderLag", "Pipe", "Tank"]
    assert "P-101" not in st["instances"] and "T-1" in st["instances"]


# ----- limits -------------------------------------------------------------------------

def test_elements_steps_and_series_above_the_limits(orch: Orchestrator) -> None:
    many = {f"t{i}": {"model": "Tank", "instance": "T-1"} for i in range(4)}
    err = error_of(orch, {"id": new_id("el"), "cmd": "run",
                          "scenario": {"elements": many}})
    assert (err["code"], err["path"], err["limit"]) == ("limit_exceeded", "scenario.elements", 3)
    assert "4 elements" in err["message"] and "TWIN_MAX_ELEMENTS" in err["message"]

    err = error_of(orch, lag(new_id("steps"), time={"start": 0, "stop": 1000, "step": 0.5}))
    assert (err["code"], err["path"]) == ("limit_exceeded", "scenario.time.step")
    assert "2001 rows" in err["message"] and "at most 1000" in err["message"]
    assert ask(orch, lag(new_id("steps"), time={"start": 0, "stop": 999, "step": 1})
               )[-1]["type"] == "result"  # 1000 rows: just allowed

    series = {"t": list(range(101)), "v": [1.0] * 101}
    err = error_of(orch, lag(new_id("series"), inputs={"lag.u": series}))
    assert (err["code"], err["path"]) == ("limit_exceeded", "scenario.inputs.lag.u")
    assert "101 points" in err["message"] and "TWIN_MAX_SERIES" in err["message"]
    err = error_of(orch, {"id": new_id("series"), "cmd": "call", "function": "mean",
                          "args": {"x": [1.0] * 101}})
    assert (err["code"], err["path"]) == ("limit_exceeded", "args.x")
    err = error_of(orch, lag(new_id("series"), post=[{"function": "max",
                                                      "args": {"x": [0.0] * 200}}]))
    assert (err["code"], err["path"]) == ("limit_exceeded", "scenario.post[0].args.x")


SLOW = {"elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1e-6}}},
        "time": {"start": 0, "stop": 1e5, "step": 1000}}
"""A stiff FirstOrderLag (a time constant of 1 µs) over 1e5 s: the explicit solver's steps
stay near the time constant, about 3e10 of them, hours of work (a tiny solver.max_step
would be refused, TWIN_MAX_STEPS)."""


def test_a_run_of_hours_is_stopped_at_the_time_limit_and_one_client_gets_one_job(
        orch: Orchestrator, limited: Stack) -> None:
    slow = lag(new_id("slow"), **SLOW)
    started = time.monotonic()
    orch.send(slow, properties=as_client("plant-a"))
    deadline = time.monotonic() + 10
    while not any(r["type"] == "ack" for r in orch.replies(slow["id"])):
        assert time.monotonic() < deadline, "the slow run was not acked"
        time.sleep(0.05)
    # the same orchestrator may not queue a second job meanwhile (limit 1)...
    second = new_id("second")
    err = error_of_client(orch, lag(second), "plant-a")
    assert (err["code"], err["path"], err["running"], err["limit"]) == (
        "limit_exceeded", "cmd", 1, 1)
    assert "plant-a" in err["message"] and "TWIN_MAX_JOBS_PER_CLIENT" in err["message"]
    # ... another one may, and so may an orchestrator known by its response topic
    assert ask(orch, lag(new_id("other")), client="plant-b")[-1]["type"] == "result"
    topic = f"{limited.settings.mqtt_prefix}/answers/plant-c"
    rid = new_id("rt")
    orch.send(lag(rid), properties=orch.response_props(topic, b"c"))
    assert orch.wait_final(rid, topic=topic)[-1]["type"] == "result"

    replies = orch.wait_final(slow["id"], 40)
    took = time.monotonic() - started
    assert [r["type"] for r in replies] == ["ack", "error"]
    err = replies[-1]
    assert err["code"] == "timeout"
    assert "3 s" in err["message"] and "TWIN_SOFT_TIME_LIMIT" in err["message"]
    assert "max_step" in err["message"]  # what to do
    assert took < 25, f"the time limit stopped the run after {took:.1f} s"
    # the job is over: the orchestrator may run again, and nothing is left running
    assert ask(orch, lag(new_id("again")), client="plant-a")[-1]["type"] == "result"
    (jobs,) = ask(orch, {"id": new_id("jobs"), "cmd": "jobs"})
    assert jobs["jobs"] == []


def error_of_client(orch: Orchestrator, command: dict[str, Any], client: str) -> dict[str, Any]:
    replies = ask(orch, command, client=client)
    assert [r["type"] for r in replies] == ["error"], replies
    return replies[0]


# ----- hostile names and messages -----------------------------------------------------

HOSTILE = ["os.system", "__import__", "..", "modellib.base.Model", "builtins.eval",
           "../../../etc/passwd", "__class__"]


@pytest.mark.parametrize("name", HOSTILE)
def test_names_that_look_like_code_are_unknown_names(orch: Orchestrator, name: str) -> None:
    err = error_of(orch, {"id": new_id("h"), "cmd": "run",
                          "scenario": {"elements": {"e": {"model": name}}}})
    assert (err["code"], err["path"]) == ("unknown_model", "scenario.elements.e.model")
    err = error_of(orch, {"id": new_id("h"), "cmd": "call", "function": name,
                          "args": {"x": [1]}})
    assert (err["code"], err["path"]) == ("unknown_function", "function")
    err = error_of(orch, lag(new_id("h"), post=[{"function": name, "args": {"x": "lag.y"}}]))
    assert (err["code"], err["path"]) == ("unknown_function", "scenario.post[0].function")
    err = error_of(orch, {"id": new_id("h"), "cmd": "run", "template": name, "args": {}})
    assert (err["code"], err["path"]) == ("unknown_template", "template")


class _OpensAFile:
    """Unpickling this creates a file: the proof that a message was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_a_pickled_task_in_the_queue_is_refused_by_the_worker_and_never_run(
        orch: Orchestrator, limited: Stack, tmp_path: Path) -> None:
    from celery import Celery

    s = limited.settings
    marker = tmp_path / "unpickled"
    rid = new_id("pickle")
    producer = Celery("attacker", broker=s.redis_url)
    try:
        producer.send_task(
            "twin.call", queue="twin.short", routing_key="twin.short", serializer="pickle",
            args=(rid, s.controller_id, s.reply_topic(rid), "mean",
                  {"x": [1.0], "y": _OpensAFile(str(marker))}))
    finally:
        producer.close()
    assert limited.log_dir is not None
    logs = [limited.log_dir / f"{part}.log" for part in ("worker", "short-worker")]

    def text() -> str:  # (either worker that takes the short queue may get it)
        return "".join(p.read_text("utf-8", "replace") for p in logs if p.exists())

    deadline = time.monotonic() + 20
    while "untrusted content of type pickle" not in text():
        assert time.monotonic() < deadline, (
            "the worker did not report the pickled message: " + text()[-2000:])
        time.sleep(0.2)
    # never unpickled, never run (no reply), and the worker still works
    time.sleep(1.0)
    assert not marker.exists()
    assert orch.replies(rid) == []
    call = ask(orch, {"id": new_id("after"), "cmd": "call", "function": "mean",
                      "args": {"x": [2, 4]}})
    assert call[-1]["value"] == 3
    # and the queue holds nothing of it
    import redis

    r = redis.Redis.from_url(s.redis_url)
    assert not [m for m in r.lrange("twin.short", 0, -1) if rid.encode() in m]
    assert json.dumps(orch.replies(rid)) == "[]"


def test_a_job_killed_at_the_hard_time_limit_is_answered_timeout(
        redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that ignores its soft limit is killed at the hard one (soft + 30 s) by the
    worker's main process, which then answers it (Celery's task_failure signal) and
    ends it: its orchestrator gets ``timeout``, not silence, and its job is not counted."""
    import redis
    from billiard.exceptions import TimeLimitExceeded

    from tasks import jobs
    from tasks.jobboard import JobBoard
    from tasks.outbox import Outbox, outbox_stream

    client = redis.Redis.from_url(redis_server.url)
    box = Outbox(client)
    monkeypatch.setattr(jobs, "outbox", lambda: box)
    cid, rid = f"ctl-{uuid.uuid4().hex[:8]}", new_id("killed")
    board = JobBoard(client, cid)
    board.add_client_job("plant-a", rid)
    board.begin(rid, {"task": "twin.run"})
    for _ in range(2):  # (Celery may report it twice: answered once)
        jobs._killed_at_time_limit(sender=jobs.run, exception=TimeLimitExceeded(33.0),
                                   args=[rid, cid, f"x/{cid}/reply/{rid}", {}],
                                   kwargs={"correlation": None})
    (entry,) = client.xrange(outbox_stream(cid))
    reply = json.loads(entry[1][b"p"])
    assert (reply["id"], reply["type"], reply["code"]) == (rid, "error", "timeout")
    assert "longer than 3 s" in reply["message"] and "killed at 33 s" in reply["message"]
    assert "TWIN_SOFT_TIME_LIMIT" in reply["message"]
    assert board.entries() == {} and board.client_jobs("plant-a") == {}
    # other failures are not its business
    jobs._killed_at_time_limit(sender=jobs.run, exception=ValueError("x"), args=[rid])
    assert client.xlen(outbox_stream(cid)) == 1
    client.delete(outbox_stream(cid))
