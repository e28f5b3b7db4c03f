"""Fault injection: the MQTT broker dies while a dynamic run streams its data.

Its own Redis, Mosquitto and stack (:mod:`tests.faults`); the orchestrator has a
persistent session, so the broker's persistence file brings its session back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import new_id, running_stack
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import servers as servers
from tests.faults.harness import (
    Servers,
    assert_gapless,
    controller_env,
    outbox_len,
    wait_outbox,
    wait_persisted,
)
from tests.faults.scenarios import draining
from tests.orchestrator import Orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.fault]

G = 9.80665


@pytest.mark.timeout(120)
def test_broker_killed_while_a_streamed_run_is_produced_loses_and_doubles_nothing(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """A dynamic run streamed as 40 ``data`` chunks (TWIN_MAX_RESULT_ROWS=50): the
    broker is SIGKILLed right after the ack, so the worker stores every chunk and the
    result in the outbox while there is no broker; it is started again (same port, same
    persistence file) after ~10 s. The orchestrator must get every reply: seq 0..41 with
    no gap, each once after de-duplication, all 2000 rows right; the outbox drains."""
    redis, broker = servers.redis(), servers.mosquitto()
    env = controller_env(redis, broker, tmp_path, TWIN_MAX_RESULT_ROWS="50")
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, cid, status=False)
    with running_stack(env, tmp_path / "logs", workers=1):
        wait_persisted(orch)
        rid = new_id("stream")
        # 2000 rows (t = 0 … 199.9) → 40 data chunks of 50 rows, then the result;
        # ~1.5 s of CPU before the first chunk is stored
        orch.send(draining(rid, 199.9, 0.1, max_step=0.02), f"{prefix}/{cid}/cmd")
        orch.wait(lambda: orch.has(rid, "ack"), 20, f"the ack of {rid}")
        killed = time.monotonic()
        broker.kill()
        assert not orch.has(rid, "data"), "the run finished before the broker was killed"
        # the worker stores the 40 chunks and the result while the broker is down
        stored = wait_outbox(redis, cid, lambda n: n >= 41, 30, ">= 41 (40 chunks + result)")
        time.sleep(max(0.0, killed + 10 - time.monotonic()))  # ~10 s without a broker
        assert outbox_len(redis, cid) >= 41
        broker.start()
        orch.wait(lambda: orch.finals(rid) >= 1 and len(orch.distinct(rid)) >= 42, 60,
                  f"every reply of {rid} after the broker came back")
        time.sleep(1.0)  # let late copies (re-sent after the reconnect) arrive
        replies = assert_gapless(orch, rid, ["ack", *["data"] * 40, "result"])
        assert not orch.conflicts, orch.conflicts[:3]
        data = replies[1:-1]
        assert [d["chunk"] for d in data] == list(range(40))
        t = np.array([x for d in data for x in d["t"]])
        level = np.array([x for d in data for x in d["values"]["tank.level"]])
        assert len(t) == 2000 and np.allclose(t, np.arange(2000) * 0.1)
        c = 0.62 * 0.01 * np.sqrt(G / 2)
        wet = t < np.sqrt(2.0) / c - 1
        assert np.allclose(level[wet], (np.sqrt(2.0) - c * t[wet]) ** 2, rtol=1e-3)
        result = replies[-1]
        assert (result["streamed"], result["chunks"], result["rows"]) == (True, 40, 2000)
        wait_outbox(redis, cid, lambda n: n == 0, 15, "0 (drained)")
        print(f"outbox held {stored} replies while the broker was down; "
              f"{orch.duplicates()} duplicate copies dropped")
