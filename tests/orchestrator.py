"""A test orchestrator written straight on paho-mqtt (not on twinctl's own client).

It subscribes to everything a controller sends under its prefix, keeps every
message, and waits for the replies of a request id.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tasks.replies import FINAL_TYPES

FINAL = FINAL_TYPES


def subscribed_client(host: str, port: int, prefix: str, on_message: Any, *, name: str,
                      protocol: int = mqtt.MQTTv5, inflight: int = 20) -> mqtt.Client:
    """A running paho client subscribed (QoS 1) to everything under ``prefix``."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"{name}-{uuid.uuid4().hex[:8]}", protocol=protocol)
    client.max_inflight_messages_set(inflight)
    client.on_message = on_message
    ready = threading.Event()
    client.on_subscribe = lambda *a: ready.set()
    client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/#", 1)
    client.connect(host, port)
    client.loop_start()
    assert ready.wait(10), f"the test client {name} could not subscribe"
    return client


class Orchestrator:
    def __init__(self, host: str, port: int, prefix: str, cid: str, *,
                 protocol: int = mqtt.MQTTv5) -> None:
        self.prefix, self.cid = prefix, cid
        self.messages: list[tuple[str, dict[str, Any], Any]] = []
        self.raw: list[bytes] = []
        self._cond = threading.Condition()
        self.client = subscribed_client(host, port, prefix, self._on_message,
                                        name="test-orch", protocol=protocol)

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.raw.append(msg.payload)
            try:
                body = json.loads(msg.payload)
            except (ValueError, RecursionError):
                body = {"unparsed": msg.payload.decode("utf-8", "replace")}
            self.messages.append((msg.topic, body, msg.properties))
            self._cond.notify_all()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, command: dict[str, Any] | bytes | str, *, topic: str | None = None,
             properties: Properties | None = None) -> None:
        payload = command if isinstance(command, bytes | str) else json.dumps(command)
        info = self.client.publish(topic or f"{self.prefix}/{self.cid}/cmd", payload, qos=1,
                                   properties=properties)
        info.wait_for_publish(10)

    def replies(self, rid: str, topic: str | None = None) -> list[dict[str, Any]]:
        topic = topic or f"{self.prefix}/{self.cid}/reply/{rid}"
        with self._cond:
            return [b for t, b, _ in self.messages if t == topic and b.get("id") == rid]

    def wait_final(self, rid: str, timeout: float = 20.0, topic: str | None = None,
                   count: int = 1) -> list[dict[str, Any]]:
        """The replies of ``rid`` once ``count`` final ones have arrived (by seq)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = self.replies(rid, topic)
                if sum(r.get("type") in FINAL for r in got) >= count:
                    return sorted(got, key=lambda r: r["seq"])
                left = deadline - time.monotonic()
                assert left > 0, f"no final reply for {rid!r} within {timeout} s; got {got}"
                self._cond.wait(left)

    def request(self, command: dict[str, Any], timeout: float = 20.0) -> list[dict[str, Any]]:
        self.send(command)
        return self.wait_final(command["id"], timeout)

    def errors_topic(self, since: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
        topic = f"{self.prefix}/{self.cid}/errors"
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [b for t, b, _ in self.messages[since:] if t == topic]
                if got:
                    return got
                left = deadline - time.monotonic()
                assert left > 0, "nothing on the errors topic"
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    @staticmethod
    def response_props(topic: str, correlation: bytes) -> Properties:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = topic
        props.CorrelationData = correlation
        return props
