"""A small orchestrator: send one command over MQTT and collect its replies.

Used by ``twinctl send`` and ``twinctl demo``. Replies are de-duplicated by
``(id, seq)``; one controller's publisher sends them in ``seq`` order (a
reused id continues its old ``seq``, so the first one seen need not be 0). The
command is final at a
``result``, ``error``, ``pong`` or ``description``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from tasks.replies import FINAL_TYPES

from .mqttconn import MqttConnection, negotiate_protocol
from .settings import Settings

__all__ = ["Exchange", "send_command", "FINAL_TYPES"]



@dataclass
class Exchange:
    """The replies to one command, in seq order."""

    command: dict[str, Any]
    replies: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False

    @property
    def final(self) -> dict[str, Any] | None:
        return next((r for r in self.replies if r.get("type") in FINAL_TYPES), None)


def send_command(
    settings: Settings,
    command: dict[str, Any],
    *,
    timeout: float = 30.0,
    on_reply: Callable[[dict[str, Any]], None] | None = None,
) -> Exchange:
    """Publish ``command`` (an ``id`` is added if missing) and wait for its final reply."""
    command = dict(command)
    command.setdefault("id", f"cli-{uuid.uuid4().hex[:12]}")
    rid = str(command["id"])
    exchange = Exchange(command)
    seen: set[int] = set()
    done = threading.Event()
    lock = threading.Lock()

    def on_message(msg: mqtt.MQTTMessage) -> None:
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        with lock:
            seq = reply.get("seq")
            if not isinstance(seq, int) or seq in seen:
                return  # a duplicate from at-least-once delivery
            seen.add(seq)
            exchange.replies.append(reply)
            if on_reply is not None:
                on_reply(reply)
            if reply.get("type") in FINAL_TYPES:
                done.set()

    protocol = settings.mqtt_protocol
    if protocol == "auto":
        protocol = negotiate_protocol(settings.mqtt)
    subscribed = threading.Event()
    conn = MqttConnection(
        endpoint=settings.mqtt, client_id=f"twinctl-cli-{uuid.uuid4().hex[:8]}",
        protocol=protocol, persistent=False,
        subscriptions=[(settings.reply_topic(rid), 1)], on_message=on_message,
    )
    conn.client.on_subscribe = lambda *a: subscribed.set()
    conn.start()
    try:
        if not conn.wait_connected(min(timeout, 10.0)) or not subscribed.wait(5.0):
            exchange.timed_out = True
            return exchange
        conn.publish(settings.cmd_topic, json.dumps(command), qos=1)
        deadline = time.monotonic() + timeout
        exchange.timed_out = not done.wait(max(0.0, deadline - time.monotonic()))
    finally:
        conn.stop()
    return exchange
