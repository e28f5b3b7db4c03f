"""The test orchestrator, written straight on paho-mqtt (not on twinctl's own client).

It subscribes (QoS 1) to everything a controller sends under its prefix, or to the
topics it is given, keeps every message, and waits for the replies of a request id.

With a session expiry it is an orchestrator as one would be written from
``PROTOCOL.md`` alone, the one the fault tests need: a fixed client id and a
persistent MQTT 5 session (clean start off, session expiry), QoS 1 subscriptions
made again on every CONNACK. Its replies can then be read de-duplicated by
``(controller, id, seq)``: at-least-once delivery may repeat a reply, but a repeated
``(controller, id, seq)`` must be the very same message; another one is a *conflict*
(a seq used twice).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tasks.replies import FINAL_TYPES

FINAL = FINAL_TYPES

Key = tuple[str, str, int]
"""A reply's ``(controller, id, seq)``."""


def subscribed_client(host: str, port: int, prefix: str, on_message: Any, *, name: str,
                      protocol: int = mqtt.MQTTv5, inflight: int = 20,
                      topics: list[str] | None = None, session_expiry: int | None = None,
                      on_subscribe: Callable[[], None] | None = None) -> mqtt.Client:
    """A running paho client subscribed (QoS 1) to everything under ``prefix``, or to
    ``topics``, again on every CONNACK; ``on_subscribe`` is called on every SUBACK.

    With ``session_expiry`` (seconds, MQTT 5) its session is persistent: clean start
    off, a keep-alive of 10 s, and a reconnection within 1-2 s of a lost connection.
    """
    filters = [(t, 1) for t in (topics or [f"{prefix}/#"])]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"{name}-{uuid.uuid4().hex[:8]}", protocol=protocol)
    client.max_inflight_messages_set(inflight)
    client.on_message = on_message
    ready = threading.Event()

    def connected(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            c.subscribe(filters)

    def subscribed(c: mqtt.Client, u: Any, mid: int, rcs: Any, props: Any) -> None:
        assert all(not rc.is_failure for rc in rcs), rcs
        if on_subscribe is not None:
            on_subscribe()
        ready.set()

    client.on_connect = connected
    client.on_subscribe = subscribed
    if session_expiry is None:
        client.connect(host, port)
    else:
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        client.connect(host, port, keepalive=10, clean_start=False, properties=props)
    client.loop_start()
    assert ready.wait(10), f"the test client {name} could not subscribe"
    return client


class Orchestrator:
    """An orchestrator on ``prefix`` sending to controller ``cid`` (see the module).

    ``messages`` and ``raw`` hold every message as it came, copies and all;
    :meth:`replies` and :meth:`wait_final` read them so. :meth:`distinct` and what is
    built on it (:meth:`types`, :meth:`finals`, :meth:`controllers`, …) keep one copy
    of every reply by ``(controller, id, seq)`` — per controller, so that a group test
    sees a request answered by two controllers — and :attr:`conflicts` lists a second
    message with the same key but other bytes.
    """

    def __init__(self, host: str, port: int, prefix: str, cid: str, *,
                 protocol: int = mqtt.MQTTv5, topics: list[str] | None = None,
                 session_expiry: int | None = None, name: str = "test-orch") -> None:
        self.prefix, self.cid = prefix, cid
        self.messages: list[tuple[str, dict[str, Any], Any]] = []
        self.raw: list[bytes] = []
        self.subscribed_at = 0.0
        """when the last SUBACK came (time.monotonic)"""
        self._cond = threading.Condition()
        self.client = subscribed_client(host, port, prefix, self._on_message, name=name,
                                        protocol=protocol, topics=topics,
                                        session_expiry=session_expiry,
                                        on_subscribe=self._on_subscribe)

    # paho callbacks (network thread)
    def _on_subscribe(self) -> None:
        with self._cond:
            self.subscribed_at = time.monotonic()
            self._cond.notify_all()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.raw.append(msg.payload)
            try:
                body = json.loads(msg.payload)
            except (ValueError, RecursionError):
                body = {"unparsed": msg.payload.decode("utf-8", "replace")}
            self.messages.append((msg.topic, body, msg.properties))
            self._cond.notify_all()

    # use
    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, command: dict[str, Any] | bytes | str, topic: str | None = None, *,
             properties: Properties | None = None) -> None:
        """Publish (QoS 1) to ``topic``, by default the controller's command topic, and
        wait until the broker has taken it."""
        payload = command if isinstance(command, bytes | str) else json.dumps(command)
        info = self.client.publish(topic or f"{self.prefix}/{self.cid}/cmd", payload, qos=1,
                                   properties=properties)
        info.wait_for_publish(10)
        what = command.get("id") if isinstance(command, dict) else payload[:60]
        assert info.is_published(), f"the broker did not take {what!r}"

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``predicate()`` (checked on every message and twice a second)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(min(left, 0.5))

    def replies(self, rid: str, topic: str | None = None) -> list[dict[str, Any]]:
        """Every reply of ``rid`` on ``topic`` (by default its reply topic), as it came."""
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

    # replies de-duplicated by (controller, id, seq)
    def _copies(self, rid: str | None = None) -> Iterator[tuple[Key, str, bytes, dict[str, Any]]]:
        """Every reply copy with a seq (of ``rid``), in arrival order: its key, topic,
        bytes and body. With the lock held."""
        for (topic, body, _), payload in zip(self.messages, self.raw, strict=True):
            if "/reply/" in topic and isinstance(body.get("seq"), int):
                key = (str(body.get("controller")), str(body.get("id")), body["seq"])
                if rid is None or key[1] == rid:
                    yield key, topic, payload, body

    def distinct(self, rid: str, controller: str | None = None) -> list[dict[str, Any]]:
        """The distinct replies of ``rid`` (from ``controller``), by controller and seq."""
        with self._cond:
            first: dict[Key, dict[str, Any]] = {}
            for key, _, _, body in self._copies(rid):
                first.setdefault(key, body)
        return [b for (c, _, _), b in sorted(first.items(), key=lambda kv: kv[0])
                if controller in (None, c)]

    @property
    def conflicts(self) -> list[tuple[str, bytes, bytes]]:
        """``(topic, first bytes, other bytes)`` of each copy of a reply that differs
        from its first copy."""
        with self._cond:
            first: dict[Key, bytes] = {}
            out = []
            for key, topic, payload, _ in self._copies():
                if first.setdefault(key, payload) != payload:
                    out.append((topic, first[key], payload))
            return out

    def duplicates(self) -> int:
        """How many copies of a reply came beyond the first."""
        with self._cond:
            keys = [key for key, *_ in self._copies()]
        return len(keys) - len(set(keys))

    def controllers(self, rid: str) -> set[str]:
        with self._cond:
            return {key[0] for key, *_ in self._copies(rid)}

    def types(self, rid: str) -> list[str]:
        return [r["type"] for r in self.distinct(rid)]

    def finals(self, rid: str) -> int:
        return sum(t in FINAL for t in self.types(rid))

    def has(self, rid: str, rtype: str) -> bool:
        return rtype in self.types(rid)

    def last_status(self, controller: str) -> dict[str, Any] | None:
        """The last status message ``controller`` published, or None."""
        with self._cond:
            found = [b for t, b, _ in self.messages if t.endswith(f"/{controller}/status")]
        return found[-1] if found else None

    def status(self, controller: str) -> list[str]:
        """The states ``controller`` published on its status topic, in order."""
        with self._cond:
            return [b.get("state", "?") for t, b, _ in self.messages
                    if t.endswith(f"/{controller}/status")]
