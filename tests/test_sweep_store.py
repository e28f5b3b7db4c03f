"""A sweep's rows in a real Redis (tasks.sweeps.SweepStore): each case stored once, each
chunk counted once, a stop and an expired ttl seen at a chunk's start, the table built
from what is stored."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from scenario_builder.sweeps import Sweep, Target
from tasks.jobboard import JobBoard
from tasks.sweeps import SweepStore, table_fields

pytestmark = pytest.mark.integration

SWEEP = Sweep((Target("tank.area", "param", "tank", "area", "m2"),), [[1.0], [2.0], [3.0]],
              ("tank.level",), ("minimize", "tank.level"), None, {"tank.area": "m2"})


@pytest.fixture()
def board(redis_server: Any) -> Iterator[JobBoard]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/15")
    yield JobBoard(client, f"c-{uuid.uuid4().hex[:8]}")
    client.close()


def test_each_case_and_each_chunk_counts_once(board: JobBoard) -> None:
    store = SweepStore(board, "s-1")
    board.redis.hset(board.jobs_key, "s-1", '{"state": "queued", "queued": 1}')
    assert store.start(None) == "run"
    first = [(0, "row", {"row": [0, 1.0, 0.5]}), (1, "row", {"row": [1, 2.0, 0.8]})]
    assert store.store(first, 3) == (2, 0)
    assert store.store(first, 3) == (2, 0)  # the chunk run again: nothing twice
    assert board.get("s-1") == {"state": "running", "queued": 1, "done": 2, "cases": 3,
                                "started": pytest.approx(time.time(), abs=5)}
    assert store.report(0) == 1 and store.report(0) == 1
    failed = {"code": "runtime_error", "message": "no operating point"}
    assert store.store([(2, "failed", {"row": [2, 3.0, None], "failed": failed})], 3) == (3, 0)
    assert store.report(1) == 2
    assert store.reported(3) == [True, True, False]
    found = store.read()
    rtype, fields = table_fields(SWEEP, found["cases"], total=3, chunks=2, max_rows=10,
                                 started=found["started"])
    assert rtype == "result" and fields["status"] == "ok"
    assert fields["rows"] == [[0, 1.0, 0.5], [1, 2.0, 0.8], [2, 3.0, None]]
    assert fields["failed"] == {"2": failed}
    assert fields["best"] == {"case": 0, "tank.area": 1.0, "tank.level": 0.5,
                              "objective": "minimize tank.level"}
    assert fields["stats"]["done"] == 3 and fields["stats"]["failed"] == 1  # (ran: 3)
    streamed = table_fields(SWEEP, found["cases"], total=3, chunks=2, max_rows=2)[1]
    assert streamed["streamed"] is True and "rows" not in streamed
    store.delete()
    assert not board.redis.exists(store.key)


def test_a_stop_drops_the_cases_not_run(board: JobBoard) -> None:
    store = SweepStore(board, "s-2")
    assert store.start(None) == "run"
    store.store([(0, "row", {"row": [0, 1.0, 0.5]})], 3)
    board.request_stop("s-2")
    assert store.start(None) == "stop"
    assert store.store([(1, "dropped", {"dropped": 1}), (2, "dropped", {"dropped": 1})],
                       3) == (1, 2)
    rtype, fields = table_fields(SWEEP, store.read()["cases"], total=3, chunks=2, max_rows=10)
    assert rtype == "result" and fields["status"] == "stopped"
    assert fields["rows"] == [[0, 1.0, 0.5]] and fields["stats"]["dropped"] == 2


def test_a_sweep_not_started_before_its_ttl_is_expired_and_stays_so(board: JobBoard) -> None:
    store = SweepStore(board, "s-3")
    assert store.start(time.time() - 1) == "expired"
    assert store.start(None) == "expired"  # every later chunk drops its cases too
    found = store.read()
    assert found["expired"]
    rtype, fields = table_fields(SWEEP, {}, total=3, chunks=1, max_rows=10, expired=True)
    assert rtype == "error" and fields["code"] == "expired" and fields["path"] == "ttl"
    started = SweepStore(board, "s-4")
    assert started.start(time.time() + 60) == "run"
    assert started.start(time.time() - 1) == "run"  # it started in time: it runs to its end
