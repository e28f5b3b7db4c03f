"""Shared fixtures: real Redis and Mosquitto servers for the tests, and a real stack.

The servers are started by the tests from the ``redis-server`` and ``mosquitto``
binaries on free ports (``.ci/run`` installs them when missing), never the
machine's shared ones, so the tests can neither disturb nor be disturbed by
them. Each stack gets its own MQTT prefix, controller id and Redis database.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from tests.orchestrator import Orchestrator
from twinctl import embedded
from twinctl.stack import Stack

_db = itertools.count(1)


def _require(binary: str) -> None:
    if shutil.which(binary) is None and not os.environ.get("TWIN_TEST_ALLOW_EMBEDDED"):
        pytest.fail(f"{binary} is not installed: run the tests through `make test` "
                    "(or .ci/run), which installs it")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[embedded.EmbeddedService]:
    _require("redis-server")
    svc = embedded.start_redis()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def mqtt_server() -> Iterator[embedded.EmbeddedService]:
    _require("mosquitto")
    svc = embedded.start_mqtt()
    yield svc
    svc.stop()


_FOLDERS: list[str] = []
"""the instance folders the stacks of this session were given (removed at its end)"""


@pytest.fixture(scope="session", autouse=True)
def _remove_instance_folders() -> Iterator[None]:
    """No ``twinctl-test-*`` folder is left in the temporary directory after a run."""
    yield
    for folder in _FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)


def stack_env(redis_server: Any, mqtt_server: Any, *, fresh_db: bool = True,
              **extra: str) -> dict[str, str]:
    """Settings for one isolated stack: own controller id, prefix, Redis database and
    instance folder (seeded from the shipped set on first start). ``fresh_db``: empty
    the database first (off for a Redis of the test's own that needs a password)."""
    tag = uuid.uuid4().hex[:8]
    base = redis_server.url.rsplit("/", 1)[0]
    url = f"{base}/{next(_db) % 16}"
    # The 16 databases are used again and again in a session: what an earlier stack
    # left in this one (a queued open-ended real-time job its workers never took, which
    # this stack's real-time worker would take first and run for ever) goes first.
    if fresh_db:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    folder = os.path.join(tempfile.gettempdir(), f"twinctl-test-{tag}")
    _FOLDERS.append(folder)
    return {
        "TWIN_INSTANCES": os.path.join(folder, "instances"),
        "TWIN_CONTROLLER_ID": f"ctl-{tag}",
        "TWIN_MQTT_PREFIX": f"test-{tag}",
        "TWIN_MQTT_URL": mqtt_server.url,
        "TWIN_REDIS_URL": url,
        "TWIN_LOG_LEVEL": "WARNING",
        **extra,
    }


@contextmanager
def running_stack(env: dict[str, str], log_dir: Any, **parts: Any) -> Iterator[Stack]:
    """A stack started as a user would (``parts``: workers, realtime, flower…), ready."""
    s = Stack(env=env, quiet=True, log_dir=log_dir, **parts)
    try:
        s.start(embedded_ok=False)  # a part that started is stopped even if another failed
        s.wait_ready(timeout=60)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def stack(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    """Ingress and two worker processes, started as a user would, for one test module."""
    with running_stack(stack_env(redis_server, mqtt_server),
                       tmp_path_factory.mktemp("stack-logs"), workers=2) as s:
        yield s


@contextmanager
def orchestrator_of(stack: Stack) -> Iterator[Orchestrator]:
    """A test orchestrator on ``stack``'s broker, prefix and controller."""
    s = stack.settings
    o = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
    try:
        yield o
    finally:
        o.close()


@pytest.fixture()
def orch(stack: Stack, mqtt_server: Any) -> Iterator[Orchestrator]:
    with orchestrator_of(stack) as o:
        yield o


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
