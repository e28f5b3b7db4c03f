"""The controller's health alarms (ingress.health) on a real Redis: each raised once while
its condition holds and cleared with its hysteresis; the messages say why."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from common.settings import load_settings
from ingress.health import Health
from tasks.alarmboard import AlarmBoard
from tasks.outbox import outbox_stream

pytestmark = pytest.mark.integration


@pytest.fixture()
def health(redis_server: Any) -> Iterator[Health]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/13")
    cid = f"c-{uuid.uuid4().hex[:8]}"
    settings = load_settings({"TWIN_CONTROLLER_ID": cid, "TWIN_MAX_QUEUED": "100",
                              "TWIN_OUTBOX_MAX": "1000"})
    yield Health(settings, AlarmBoard(client, cid, f"twin/{cid}/alarms"))
    client.close()


def sent(health: Health) -> list[tuple[str, str]]:
    board = health.board
    return [(m["alarm"], m["event"]) for m in (
        json.loads(f[b"p"]) for _, f in board.redis.xrange(outbox_stream(board.cid)))]


def test_queue_full_and_outbox_filling_raise_once_and_clear_below_their_hysteresis(
        health: Health) -> None:
    for _ in range(3):
        health.depths({"twin.long": 100, "outbox": 850})
    assert sent(health) == [("queue_full", "raised"), ("outbox_filling", "raised")]
    health.depths({"twin.long": 95, "outbox": 750})  # above 90 % and 70 %: still active
    assert len(sent(health)) == 2
    health.depths({"twin.long": 80, "outbox": 600})
    assert sent(health)[2:] == [("queue_full", "cleared"), ("outbox_filling", "cleared")]
    msg = health.board.get("controller", "queue_full")
    assert msg is not None and "TWIN_MAX_QUEUED = 100" in msg["message"]


def test_redis_away_is_reported_when_it_is_back_with_how_long(health: Health) -> None:
    health.redis_failed()
    health.redis_answered()  # away for less than a second: not reported
    assert sent(health) == []
    health.redis_failed()
    health._away_since = time.time() - 3.2  # (as if the first failure were 3.2 s ago)
    health.redis_answered()
    assert sent(health) == [("redis_unreachable", "raised"), ("redis_unreachable", "cleared")]
    rec = health.board.get("controller", "redis_unreachable")
    assert rec is not None and rec["value"] == pytest.approx(3.2, abs=0.1)
    assert [a["state"] for a in health.board.active()] == ["unack_rtn"]  # to acknowledge


def test_no_worker_needs_two_looks_and_clears_when_a_worker_consumes_the_queue(
        health: Health) -> None:
    depths = {"twin.long": 2, "twin.short": 0}
    health.workers(depths, {"twin.short"})
    assert sent(health) == []
    health.workers(depths, None)  # the workers could not be asked: nothing changes
    health.workers(depths, {"twin.short"})
    assert sent(health) == [("no_worker", "raised")]
    rec = health.board.get("controller", "no_worker")
    assert rec is not None and "twin.long (2 waiting)" in rec["message"]
    health.workers(depths, {"twin.short", "twin.long"})
    assert sent(health)[-1] == ("no_worker", "cleared")
