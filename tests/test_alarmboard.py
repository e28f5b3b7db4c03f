"""Live alarms in a real Redis (tasks.alarmboard): the ISA-18.2 states an alarm moves
through, its messages in the outbox with a gapless seq per controller, shelving, and
the end of a run's alarms."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tasks.alarmboard import AlarmBoard, state_of, transition
from tasks.outbox import outbox_stream

pytestmark = pytest.mark.integration


@pytest.fixture()
def board(redis_server: Any) -> Iterator[AlarmBoard]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/14")
    cid = f"c-{uuid.uuid4().hex[:8]}"
    yield AlarmBoard(client, cid, f"twin/{cid}/alarms")
    client.close()


def messages(board: AlarmBoard) -> list[dict[str, Any]]:
    """The alarm messages in the controller's outbox, oldest first."""
    entries = board.redis.xrange(outbox_stream(board.cid))
    topic = board.topic.encode()
    return [json.loads(fields[b"p"]) for _, fields in entries if fields[b"t"] == topic]


def test_an_alarm_goes_through_the_isa_states_one_message_each(board: AlarmBoard) -> None:
    say = {"priority": "high", "limit": 1.8}
    assert board.event("job-1", "T1-high", "raised", value=1.81, t=3.0, **say) == "unack_active"
    assert board.event("job-1", "T1-high", "raised", value=1.9, t=4.0, **say) is None  # active
    assert board.event("job-1", "T1-high", "acknowledged") == "ack_active"
    assert board.event("job-1", "T1-high", "acknowledged") is None
    assert board.event("job-1", "T1-high", "cleared", value=1.6, t=9.0, **say) == "normal"
    assert board.get("job-1", "T1-high") is None  # normal: nothing kept
    assert board.event("job-1", "T1-high", "raised", value=1.85, t=12.0, **say) == "unack_active"
    assert board.event("job-1", "T1-high", "cleared", value=1.6, t=15.0, **say) == "unack_rtn"
    assert board.event("job-1", "T1-high", "acknowledged") == "normal"
    sent = messages(board)
    assert [(m["event"], m["state"]) for m in sent] == [
        ("raised", "unack_active"), ("acknowledged", "ack_active"), ("cleared", "normal"),
        ("raised", "unack_active"), ("cleared", "unack_rtn"), ("acknowledged", "normal")]
    assert [m["seq"] for m in sent] == list(range(6))
    first = sent[0]
    assert first["controller"] == board.cid and first["type"] == "alarm"
    assert (first["source"], first["alarm"], first["value"], first["limit"], first["t"]) == (
        "job-1", "T1-high", 1.81, 1.8, 3.0)
    assert first["priority"] == "high" and first["ts"].endswith("Z")


def test_a_shelved_alarm_sends_nothing_until_it_is_unshelved(board: AlarmBoard) -> None:
    until = time.time() + 60
    assert board.event("job-2", "dev", "shelved", until=until) == "shelved"
    assert board.event("job-2", "dev", "raised", value=2.0, priority="medium") == "shelved"
    assert board.event("job-2", "dev", "acknowledged") is None  # nothing to acknowledge
    assert board.due_shelves(now=until - 1) == []
    assert board.due_shelves(now=until + 1) == [("job-2", "dev")]
    assert board.event("job-2", "dev", "unshelved") == "unack_active"  # still active: again
    assert [(m["event"], m["state"]) for m in messages(board)] == [
        ("shelved", "shelved"), ("unshelved", "unack_active")]
    assert [a["state"] for a in board.active()] == ["unack_active"]


def test_the_end_of_a_run_clears_its_alarms_with_a_last_message(board: AlarmBoard) -> None:
    board.event("job-3", "a", "raised", value=1.0, priority="low")
    board.event("job-3", "b", "raised", value=1.0, priority="urgent")
    board.event("controller", "no_worker", "raised", priority="high", message="no worker")
    assert [a["alarm"] for a in board.active()] == ["b", "no_worker", "a"]  # urgent first
    assert board.end_source("job-3", "the real-time run ended") == 2
    assert [a["source"] for a in board.active()] == ["controller"]
    last = messages(board)[-2:]
    assert {(m["alarm"], m["event"], m["message"]) for m in last} == {
        ("a", "cleared", "the real-time run ended"), ("b", "cleared", "the real-time run ended")}


def test_a_change_computed_from_a_stale_record_is_computed_again(board: AlarmBoard) -> None:
    """An acknowledgement and a clear racing: both land, in one order or the other."""
    board.event("job-4", "x", "raised", value=1.0)
    real = board.redis.hget

    def stale_once(key: Any, field: Any) -> Any:
        raw = real(key, field)
        board.redis.hget = real  # type: ignore[method-assign]
        board.event("job-4", "x", "cleared", value=0.0)  # lands in between
        return raw

    board.redis.hget = stale_once  # type: ignore[method-assign]
    assert board.event("job-4", "x", "acknowledged") == "normal"
    assert [(m["event"], m["state"]) for m in messages(board)] == [
        ("raised", "unack_active"), ("cleared", "unack_rtn"), ("acknowledged", "normal")]


def test_transitions_without_redis() -> None:
    assert state_of(None) == "normal"
    raised = transition(None, "raised", {"value": 1.0})
    assert raised is not None and state_of(raised.record) == "unack_active" and raised.send
    assert transition(None, "cleared", {}) is None
    with pytest.raises(ValueError, match="no alarm event"):
        transition(None, "exploded", {})
