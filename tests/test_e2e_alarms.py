"""Alarms over MQTT with real workers: a dynamic run's predicted alarms against the
closed form; a real-time run's live alarms through ISA-18.2 with acknowledge and
shelve; the alarm commands and their errors."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scipy.optimize import brentq

from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator
from tests.test_alarms import H0, T_OFF, C, Q, fill_and_drain, t_drain, t_fill

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def orch(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Orchestrator]:
    env = stack_env(redis_server, mqtt_server)
    with running_stack(env, tmp_path_factory.mktemp("logs"), workers=1, realtime=1) as stack:
        s = stack.settings
        o = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        yield o
        o.close()


def alarm_messages(orch: Orchestrator, source: str | None = None) -> list[dict[str, Any]]:
    """The alarm messages of the controller (of one source), by seq, once each."""
    topic = f"{orch.prefix}/{orch.cid}/alarms"
    found = {m["seq"]: m for t, m, _ in list(orch.messages) if t == topic}
    return [found[k] for k in sorted(found) if source is None or found[k]["source"] == source]


def command(orch: Orchestrator, body: dict[str, Any]) -> dict[str, Any]:
    return orch.request({"id": new_id(body["cmd"]), **body})[-1]


def test_a_dynamic_runs_tank_crossing_its_high_limit_is_one_raise_and_one_clear(
        orch: Orchestrator) -> None:
    rule = {"name": "T1-high", "on": "tank.level", "high": 1.8, "deadband": 0.1,
            "on_delay": 5.0, "priority": "high"}
    result = orch.request({"id": new_id("dyn"), "cmd": "run",
                           "scenario": fill_and_drain(1.0, [rule])}, timeout=30)[-1]
    assert result["type"] == "result" and result["status"] == "ok", result
    events = result["alarms"]
    assert [e["event"] for e in events] == ["raised", "cleared"]
    h1 = brentq(lambda h: t_fill(h) - T_OFF, H0, (Q / C) ** 2 * (1 - 1e-12))
    assert events[0]["t"] == pytest.approx(t_fill(1.8) + 5.0, abs=0.01)
    assert events[1]["t"] == pytest.approx(T_OFF + t_drain(h1, 1.7), abs=0.01)
    assert math.isfinite(events[0]["value"]) and events[0]["priority"] == "high"


def realtime_pair(rid: str) -> dict[str, Any]:
    """A model and a meter (two fast first-order lags): the meter's input is the measured
    value an orchestrator `set`s; the rule watches their deviation."""
    lag = {"model": "FirstOrderLag", "params": {"time_constant": 0.05}}
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "realtime", "elements": {"model": lag, "meter": lag},
        "inputs": {"model.u": 1.0, "meter.u": 1.0},
        "outputs": ["model.y", "meter.y"],
        "time": {"start": 0, "step": 0.05}, "realtime": {"speed": 1.0, "publish_every": 10},
        "alarms": [{"name": "flow-dev", "on": "meter.y", "from": "model.y",
                    "deviation": 0.5, "deadband": 0.1, "priority": "medium"}]}}


def wait_alarm(orch: Orchestrator, rid: str, n: int, timeout: float = 15) -> list[dict[str, Any]]:
    orch.wait(lambda: len(alarm_messages(orch, rid)) >= n, timeout,
              f"{n} alarm message(s) of {rid}")
    return alarm_messages(orch, rid)


def test_a_live_deviation_alarm_is_raised_acknowledged_and_returns_to_normal(
        orch: Orchestrator) -> None:
    rid = new_id("rt")
    orch.send(realtime_pair(rid))
    orch.wait(lambda: orch.has(rid, "data"), 30, f"the first rows of {rid}")
    assert alarm_messages(orch, rid) == []  # meter and model agree
    assert command(orch, {"cmd": "set", "target": rid, "inputs": {"meter.u": 3.0}})["status"] \
        == "ok"
    raised = wait_alarm(orch, rid, 1)[0]
    assert (raised["alarm"], raised["event"], raised["state"], raised["priority"]) == (
        "flow-dev", "raised", "unack_active", "medium")
    assert raised["value"] > 0.5 and raised["limit"] == 0.5
    assert "meter.y" in raised["message"] and "away from model.y" in raised["message"]
    live = command(orch, {"cmd": "alarms"})["alarms"]
    assert [(a["source"], a["alarm"], a["state"]) for a in live if a["source"] == rid] == [
        (rid, "flow-dev", "unack_active")]
    acked = command(orch, {"cmd": "ack_alarm", "alarm": "flow-dev", "source": rid})
    assert (acked["status"], acked["state"]) == ("ok", "ack_active")
    command(orch, {"cmd": "set", "target": rid, "inputs": {"meter.u": 1.0}})
    sent = wait_alarm(orch, rid, 3)
    assert [(m["event"], m["state"]) for m in sent] == [
        ("raised", "unack_active"), ("acknowledged", "ack_active"), ("cleared", "normal")]
    assert not [a for a in command(orch, {"cmd": "alarms"})["alarms"] if a["source"] == rid]
    # the end of the run: nothing left to clear; stopped
    orch.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    assert orch.wait_final(rid, timeout=30)[-1]["status"] == "stopped"
    seqs = [m["seq"] for m in alarm_messages(orch)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap in the alarm seq"


def test_a_shelved_alarm_sends_nothing_until_its_shelf_ends(orch: Orchestrator) -> None:
    rid = new_id("shelf")
    orch.send(realtime_pair(rid))
    orch.wait(lambda: orch.has(rid, "data"), 30, f"the first rows of {rid}")
    command(orch, {"cmd": "set", "target": rid, "inputs": {"meter.u": 3.0}})
    wait_alarm(orch, rid, 1)
    shelved = command(orch, {"cmd": "shelve_alarm", "alarm": "flow-dev", "source": rid,
                             "for": 3.0})
    assert shelved["state"] == "shelved" and shelved["until"] > time.time()
    assert wait_alarm(orch, rid, 2)[-1]["event"] == "shelved"
    for value in (1.0, 3.0, 1.0, 3.0):  # clear, raise, clear, raise: all silent
        command(orch, {"cmd": "set", "target": rid, "inputs": {"meter.u": value}})
        time.sleep(0.3)
    assert [m["event"] for m in alarm_messages(orch, rid)] == ["raised", "shelved"]
    assert command(orch, {"cmd": "ack_alarm", "alarm": "flow-dev", "source": rid})["state"] \
        == "shelved"  # nothing to acknowledge while shelved
    sent = wait_alarm(orch, rid, 3, timeout=10)
    assert (sent[2]["event"], sent[2]["state"]) == ("unshelved", "unack_active")  # still active
    assert time.time() >= shelved["until"] - 0.2  # not before its shelf ended
    orch.request({"id": new_id("stop"), "cmd": "stop", "target": rid})
    orch.wait_final(rid, timeout=30)
    last = wait_alarm(orch, rid, 4)[-1]
    assert (last["event"], last["state"]) == ("cleared", "unack_rtn")
    assert last["message"] == "the real-time run ended"
    assert not [a for a in command(orch, {"cmd": "alarms"})["alarms"] if a["source"] == rid]


def test_the_alarm_commands_refuse_what_is_not_there(orch: Orchestrator) -> None:
    missing = command(orch, {"cmd": "ack_alarm", "alarm": "nope", "source": "job-x"})
    assert missing["type"] == "error" and missing["code"] == "unknown_alarm"
    assert missing["path"] == "alarm" and "`alarms` lists them" in missing["message"]
    bad = command(orch, {"cmd": "shelve_alarm", "alarm": "a", "source": "b", "for": -1})
    assert bad["code"] == "invalid_argument" and bad["path"] == "for"
    wrong = orch.request({"id": new_id("bad"), "cmd": "run", "scenario": {
        **fill_and_drain(1.0, [{"name": "x", "on": "tank.lvel", "high": 1.0}])}})[-1]
    assert wrong["code"] == "invalid_argument" and wrong["path"] == "scenario.alarms[0].on"
