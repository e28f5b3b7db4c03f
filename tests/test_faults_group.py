"""Fault injection: two controllers in one group (a shared subscription); one of them
dies, before or in the middle of a burst of group commands.

Each test has its own Redis, Mosquitto and controller processes (:mod:`tests.faults`).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import new_id
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import proxies as proxies
from tests.faults.fixtures import servers as servers
from tests.faults.harness import (
    LPUSH,
    BugSymptom,
    Parts,
    Servers,
    assert_gapless,
    controller_env,
    diagnose,
    wait_worker,
)
from tests.faults.scenarios import static_run
from tests.orchestrator import FINAL, Orchestrator
from tests.services import HoldingProxy, MosquittoProcess, RedisProcess

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def group_env(redis: RedisProcess, broker: MosquittoProcess, tmp: Path, prefix: str,
              group: str) -> dict[str, str]:
    return {**controller_env(redis, broker, tmp), "TWIN_MQTT_PREFIX": prefix,
            "TWIN_GROUP": group}


@pytest.mark.timeout(90)
def test_group_commands_sent_after_a_member_died_are_all_answered_by_the_survivor(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    """Guaranteed: a command sent to the group once the broker knows a member is gone
    (its last will published, none of its connections left) goes to a live member.
    (Found: the group subscription lived in the ingress's persistent session, so
    mosquitto went on queueing every other group command for the dead member. Fixed in
    29a2bf0: the group subscription has a session that ends with its connection.)"""
    redis, broker = servers.redis(), servers.mosquitto()
    tag = uuid.uuid4().hex[:8]
    prefix, group = f"test-{tag}", f"g-{tag}"
    a = Parts(group_env(redis, broker, tmp_path, prefix, group), tmp_path / "a")
    b = Parts(group_env(redis, broker, tmp_path, prefix, group), tmp_path / "b")
    ca, cb = a.env["TWIN_CONTROLLER_ID"], b.env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, "+")
    try:
        a.ingress()
        b.ingress()
        orch.wait(lambda: orch.status(ca)[-1:] == ["online"] == orch.status(cb)[-1:], 30,
                  "both controllers online")
        warm = [new_id("w") for _ in range(4)]
        for rid in warm:
            orch.send({"id": rid, "cmd": "ping"}, f"{prefix}/group/{group}/cmd")
        orch.wait(lambda: all(orch.finals(r) for r in warm), 20, "the warm-up pings")
        a.kill("ingress")
        orch.wait(lambda: orch.status(ca)[-1:] == ["offline"], 10, f"{ca}'s last will")
        broker.wait_gone(ca)  # every MQTT connection of the dead member is closed
        # the member is dead and the broker knows it: the group is now {cb} alone
        ids = [new_id("g") for _ in range(12)]
        for rid in ids:
            orch.send({"id": rid, "cmd": "ping"}, f"{prefix}/group/{group}/cmd")
        try:
            orch.wait(lambda: all(orch.finals(r) for r in ids), 8,
                      "the survivor's answers to every command sent after the death")
        except AssertionError:
            missing = [r for r in ids if not orch.finals(r)]
            raise BugSymptom(f"{len(missing)} of {len(ids)} group commands sent after "
                                 f"{ca} died are unanswered: {missing}") from None
        for rid in ids:
            (pong,) = assert_gapless(orch, rid, ["pong"])
            assert pong["controller"] == cb
    finally:
        a.stop()
        b.stop()


@pytest.mark.timeout(120)
def test_a_group_burst_spanning_a_members_death_is_answered_at_least_once(
        servers: Servers, orchestrators: Callable[..., Orchestrator],
        proxies: Callable[[RedisProcess], HoldingProxy], tmp_path: Path) -> None:
    """Asserted: every command of a burst sent to the group while a member dies is
    answered at least once — by the survivor, or by the dead member once it is back (it
    is started again at the end, same controller id) — and never twice by one
    controller (its duplicate-id guard). Not asserted: exactly once across the group (a
    broker MAY re-route an unacknowledged command to another member and so have it run
    twice; mosquitto does not; the test prints any id answered by both).

    Member A dies mid-burst at the worst moment for one command: its Redis traffic goes
    through a proxy that holds A's next ``LPUSH`` (the job of a command whose ack is
    stored), so A hangs there, as on a stalled Redis, with group commands piling up
    unacknowledged, and is SIGKILLed.

    The held command was acked by A: A closes it with an ``error`` naming B
    (``taken_over_by``), and B answers it with its own ack and result.

    (Found: with A's group subscription on a session that ended with the connection,
    mosquitto 2.0 dropped the shared-subscription messages in flight to it instead of
    handing them to another member (MQTT 5 sec. 4.8.2: it SHOULD; eclipse-mosquitto
    #2662): the held command was acked, never answered, and the others A had received
    were answered by nobody. Fixed: the group session persists and B, seeing A's last
    will, takes the session over and drains it, ingress/takeover.py.)"""
    redis, broker = servers.redis(), servers.mosquitto()
    proxy = proxies(redis)
    tag = uuid.uuid4().hex[:8]
    prefix, group = f"test-{tag}", f"g-{tag}"
    a = Parts(group_env(redis, broker, tmp_path, prefix, group), tmp_path / "a")
    b = Parts(group_env(redis, broker, tmp_path, prefix, group), tmp_path / "b")
    ca, cb = a.env["TWIN_CONTROLLER_ID"], b.env["TWIN_CONTROLLER_ID"]
    orch = orchestrators(broker, prefix, "+")
    via_proxy = {"TWIN_REDIS_URL": proxy.url(), "TWIN_LOG_LEVEL": "INFO"}
    try:
        a.ingress(env=via_proxy)
        b.ingress(env={"TWIN_LOG_LEVEL": "INFO"})
        a.worker(concurrency=1)
        b.worker(concurrency=1)
        orch.wait(lambda: orch.status(ca)[-1:] == ["online"] == orch.status(cb)[-1:], 30,
                  "both controllers online")
        wait_worker(redis.url)
        ids = [new_id("b") for _ in range(60)]
        topic = f"{prefix}/group/{group}/cmd"
        for k, rid in enumerate(ids):
            if k == 30:
                proxy.arm(LPUSH)
            if k == 40:
                assert proxy.held.wait(10), f"{ca} queued no job after the 30th command"
                a.kill("ingress")  # mid-burst: 40 sent, 20 to come
            orch.send(static_run(rid, 900 + 10 * k), topic)
        a.ingress(env=via_proxy)  # the dead member comes back (same client id: its session)
        try:
            orch.wait(lambda: all(orch.finals(r) for r in ids), 15,
                      "an answer to every command of the burst")
        except AssertionError as exc:
            raise BugSymptom(f"{exc}\n{diagnose(orch, redis, [ca, cb], ids)}") from None
        # every controller that acked a command answers it too: the survivor at once, the
        # dead member (its request closed by the survivor) once its publisher runs again
        # after its restart, which takes longer on a loaded machine
        orch.wait(lambda: all(
            any(r["type"] in FINAL for r in orch.distinct(rid, c))
            for rid in ids for c in orch.controllers(rid)), 30,
            "a final reply from every controller that acked a command")
        time.sleep(1.5)
        by: Counter[str] = Counter()
        closed = []
        for rid in ids:
            controllers = orch.controllers(rid)
            by.update(controllers)
            for c in controllers:  # at most once per controller, gapless
                replies = orch.distinct(rid, c)
                if [r["type"] for r in replies] == ["ack", "error"]:
                    assert replies[1]["taken_over_by"] == cb, replies
                    assert c == ca and cb in controllers, (rid, controllers)
                    closed.append(rid)
                    continue
                assert_gapless(orch, rid, ["ack", "result"], controller=c)
        assert len(closed) <= 1, f"only the held command is closed by {ca}: {closed}"
        assert not orch.conflicts
        doubles = [r for r in ids if len(orch.controllers(r)) > 1]
        print(f"answers per controller {dict(by)}; answered by both: {doubles}; "
              f"closed by {ca} as taken over: {closed}")
    finally:
        a.stop()
        b.stop()
