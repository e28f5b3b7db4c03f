"""A reply the broker refuses is dead-lettered and answered, never lost or retried.

Against a real Mosquitto with an ACL (anonymous clients may publish only under the
test's prefix and ``allowed/``) and a real stack: a command whose response topic the
controller may not publish to (``forbidden/…``) is acknowledged by the broker with
a refusal (MQTT 5 PUBACK "Not authorized"). Before, the publisher took that PUBACK as
delivery and deleted the reply: the orchestrator waited for ever. Now the reply goes
to the dead letters and an ``error`` with ``undelivered`` to the request's default
reply topic, and the next request is answered as usual.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tasks.outbox import dead_letter_stream
from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator
from tests.services import HOST, MosquittoProcess, free_port
from twinctl.stack import Stack

pytestmark = pytest.mark.integration

PREFIX = f"acl-{uuid.uuid4().hex[:8]}"


class AclMosquitto(MosquittoProcess):
    name = "mosquitto-acl"

    def argv(self) -> list[str]:
        acl = self.dir / "acl"
        acl.write_text(f"topic readwrite {PREFIX}/#\ntopic readwrite allowed/#\n"
                       "topic read forbidden/#\n", encoding="utf-8")
        lines = [f"listener {self.port} {HOST}", "allow_anonymous true",
                 f"acl_file {acl}", "set_tcp_nodelay true", "persistence false",
                 "log_dest stderr", "log_type all"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [self.exe, "-c", str(self.conf)]


@pytest.fixture(scope="module")
def acl_stack(redis_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    broker = AclMosquitto(free_port(), tmp_path_factory.mktemp("acl-broker"))
    broker.start()
    try:
        class Url:
            url = broker.url

        env = stack_env(redis_server, Url, TWIN_MQTT_PREFIX=PREFIX)
        with running_stack(env, tmp_path_factory.mktemp("acl-logs"), workers=1) as stack:
            yield stack
    finally:
        broker.stop()


def test_a_reply_the_broker_refuses_is_dead_lettered_and_answered(acl_stack: Stack) -> None:
    s = acl_stack.settings
    orch = Orchestrator(s.mqtt.host, s.mqtt.port, PREFIX, s.controller_id,
                        topics=[f"{PREFIX}/#", "allowed/#"])
    try:
        rid = new_id("refused")
        forbidden = f"forbidden/{rid}"
        orch.send({"id": rid, "cmd": "ping"},
                  properties=Orchestrator.response_props(forbidden, b"corr"))
        (err,) = orch.wait_final(rid, 20)  # on the default reply topic
        assert (err["type"], err["code"]) == ("error", "not_permitted"), err
        assert err["undelivered"]["type"] == "pong", err
        assert "Not authorized" in err["message"], err
        dead: Any = redis.Redis.from_url(s.redis_url).xrange(dead_letter_stream(s.controller_id))
        assert [d[b"t"] for _, d in dead] == [forbidden.encode()]
        # the others keep flowing: an allowed response topic, and the default one
        ok = new_id("allowed")
        orch.send({"id": ok, "cmd": "ping"},
                  properties=Orchestrator.response_props(f"allowed/{ok}", b"c"))
        assert orch.wait_final(ok, 20, topic=f"allowed/{ok}")[0]["type"] == "pong"
        assert orch.request({"id": new_id("plain"), "cmd": "ping"})[0]["type"] == "pong"
    finally:
        orch.close()
