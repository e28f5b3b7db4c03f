"""The pytest fixtures of the fault tests; each ``tests/test_faults_*.py`` imports the
ones it uses (``from tests.faults.fixtures import servers as servers``, …)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Servers
from tests.orchestrator import Orchestrator
from tests.services import HOST, HoldingProxy, MosquittoProcess, RedisProcess


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[Servers]:
    """The test's own Redis and Mosquitto servers, started on demand."""
    s = Servers(tmp_path / "servers")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture()
def proxies() -> Iterator[Callable[[RedisProcess], HoldingProxy]]:
    """A :class:`~tests.services.HoldingProxy` in front of a Redis, on demand."""
    made: list[HoldingProxy] = []

    def make(redis: RedisProcess) -> HoldingProxy:
        made.append(HoldingProxy(redis.port))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.fixture()
def orchestrators() -> Iterator[Callable[..., Orchestrator]]:
    """``make(broker, prefix, cid, status=True, alarms=False)``: an orchestrator with a
    persistent session on ``broker``, subscribed to the replies of controller ``cid``
    (``+``: of every controller, for a group) and, with ``status``, to its status, with
    ``alarms`` to its alarms."""
    made: list[Orchestrator] = []

    def make(broker: MosquittoProcess, prefix: str, cid: str, *,
             status: bool = True, alarms: bool = False) -> Orchestrator:
        topics = [f"{prefix}/{cid}/reply/#", *([f"{prefix}/{cid}/status"] if status else []),
                  *([f"{prefix}/{cid}/alarms"] if alarms else [])]
        o = Orchestrator(HOST, broker.port, prefix, cid, topics=topics, session_expiry=600,
                         name="orch")
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()
