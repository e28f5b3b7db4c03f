"""A small orchestrator: send one command over MQTT and collect its replies.

Used by ``twinctl send``, ``describe`` and ``demo``. Replies are de-duplicated by
``(id, seq)``; one controller's publisher sends them in ``seq`` order (a
reused id continues its old ``seq``, so the first one seen need not be 0). The
command is final at a
``result``, ``error``, ``pong`` or ``description``. The timeout is the longest
wait for the *next* reply: every reply restarts it, so a long dynamic run that
streams ``data`` or a realtime run does not time out while rows keep arriving.

:func:`read_status` reads the retained ``{prefix}/+/status`` of every controller
(``twinctl status``).
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

from common.settings import Settings
from ingress.mqttconn import MqttConnection, MqttError, negotiate_protocol
from tasks.replies import FINAL_TYPES

__all__ = ["Exchange", "send_command", "read_status", "FINAL_TYPES"]


@dataclass
class Exchange:
    """The replies to one command, in seq order."""

    command: dict[str, Any]
    replies: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False
    alarms: list[dict[str, Any]] = field(default_factory=list)
    """the live alarm messages of its job (``source`` its id), in arrival order"""

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
    """Publish ``command`` (an ``id`` is added if missing) and wait for its final reply.

    ``timeout`` is the longest wait for the next reply (each reply restarts it);
    ``on_reply`` is called (in the MQTT thread) for each new reply, in arrival order,
    and for each live alarm message of the job (``type`` ``alarm``; a real-time run's).
    """
    command = dict(command)
    command.setdefault("id", f"cli-{uuid.uuid4().hex[:12]}")
    rid = str(command["id"])
    exchange = Exchange(command)
    seen: set[int] = set()
    done = threading.Event()
    lock = threading.Lock()
    last_reply = [time.monotonic()]

    alarms_seen: set[int] = set()

    def on_message(msg: mqtt.MQTTMessage) -> None:
        try:
            reply = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic == settings.alarms_topic:
            with lock:
                if not isinstance(reply, dict) or reply.get("source") != rid \
                        or reply.get("seq") in alarms_seen:
                    return
                alarms_seen.add(reply.get("seq"))  # type: ignore[arg-type]
                exchange.alarms.append(reply)
                if on_reply is not None:
                    on_reply(reply)
            return
        with lock:
            last_reply[0] = time.monotonic()
            seq = reply.get("seq")
            if not isinstance(seq, int) or seq in seen:
                return  # a duplicate from at-least-once delivery
            seen.add(seq)
            exchange.replies.append(reply)
            if on_reply is not None:
                on_reply(reply)
            if reply.get("type") in FINAL_TYPES:
                done.set()

    topics = [settings.reply_topic(rid)]
    if command.get("cmd") == "run":
        topics.append(settings.alarms_topic)
    conn, subscribed = _listen(settings, "twinctl-cli", topics, on_message)
    try:
        if not conn.wait_connected(min(timeout, 10.0)) or not subscribed.wait(5.0):
            exchange.timed_out = True
            return exchange
        conn.publish(settings.cmd_topic, signed_for(settings, command), qos=1)
        last_reply[0] = time.monotonic()
        while not done.is_set():
            left = last_reply[0] + timeout - time.monotonic()  # restarted by each reply
            if left <= 0:
                exchange.timed_out = True
                break
            done.wait(left)
    finally:
        conn.stop()
    return exchange


def signed_for(settings: Settings, command: dict[str, Any]) -> str | bytes:
    """The payload of ``command`` for this controller's command topic: signed (with a
    ``ts``) when a secret or a keys file is set — with the secret, else with the first
    key of the file (an orchestrator's file holds its own key)."""
    if settings.command_secret is not None:
        secret, key = settings.command_secret, None
    elif settings.command_keys:
        key, secret = next(iter(settings.command_keys.items()))
    else:
        return json.dumps(command)
    from ingress.signing import sign_command
    return sign_command(secret, command, topic=settings.cmd_topic, key=key)


def _listen(settings: Settings, name: str, topics: str | list[str],
            on_message: Callable[[mqtt.MQTTMessage], None]) -> tuple[MqttConnection,
                                                                    threading.Event]:
    """A started, non-persistent connection subscribed to ``topics``, and the event
    set when the broker has confirmed the subscription."""
    wanted = [topics] if isinstance(topics, str) else topics
    protocol = settings.mqtt_protocol
    if protocol == "auto":
        protocol = negotiate_protocol(settings.mqtt)
    subscribed = threading.Event()
    conn = MqttConnection(
        endpoint=settings.mqtt, client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        protocol=protocol, persistent=False, subscriptions=[(t, 1) for t in wanted],
        on_message=on_message,
    )
    conn.client.on_subscribe = lambda *a: subscribed.set()
    conn.start()
    return conn, subscribed


def read_status(settings: Settings, *, wait: float = 1.5) -> dict[str, dict[str, Any]]:
    """The retained status of every controller under ``{prefix}/+/status``, by controller id.

    Listens ``wait`` seconds after the subscription is confirmed (the broker sends
    the retained messages right after it). Raises :class:`MqttError` when the broker
    cannot be reached.
    """
    topic = f"{settings.mqtt_prefix}/+/status"
    statuses: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def on_message(msg: mqtt.MQTTMessage) -> None:
        try:
            status = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(status, dict):
            with lock:
                statuses[msg.topic.split("/")[-2]] = status

    conn, subscribed = _listen(settings, "twinctl-status", topic, on_message)
    try:
        if not conn.wait_connected(10.0) or not subscribed.wait(5.0):
            raise MqttError(f"could not subscribe to {topic} on {settings.mqtt.url}")
        time.sleep(wait)
    finally:
        conn.stop()
    with lock:
        return dict(sorted(statuses.items()))
