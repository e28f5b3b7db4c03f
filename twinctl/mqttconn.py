"""One MQTT connection: a paho-mqtt 2.x client that owns its socket.

- MQTT 5 with a persistent session (clean start off, session expiry 1 day), or
  MQTT 3.1.1 with ``clean_session=False`` when the broker speaks only that
  (``protocol="auto"`` asks the broker once, see :func:`negotiate_protocol`);
- TCP_NODELAY on every socket (without it a loopback round trip costs ~88 ms);
- TLS for ``mqtts://``, user and password from the URL, a last will;
- reconnects in paho's background thread with capped, jittered exponential backoff
  (reset only after a successful CONNACK);
- subscriptions are (re)made on every CONNACK.

Foreign errors (paho's return codes, socket errors) are translated into
:class:`MqttError` here.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .settings import MqttEndpoint

__all__ = ["MqttConnection", "MqttError", "Will", "negotiate_protocol", "PROTOCOLS"]

log = logging.getLogger("twinctl.mqtt")

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
SESSION_EXPIRY = 86_400


class MqttError(Exception):
    """The MQTT connection failed; the message says why in one line."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = True


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # TLS-wrapped or non-TCP sockets
        pass


def _configure(client: mqtt.Client, endpoint: MqttEndpoint) -> None:
    client.on_socket_open = _nodelay
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)


def negotiate_protocol(endpoint: MqttEndpoint, *, timeout: float = 5.0) -> str:
    """Ask the broker whether it speaks MQTT 5; return ``"5"`` or ``"3.1.1"``.

    A 3.1.1-only broker answers an MQTT 5 CONNECT with return code 1
    ("unacceptable protocol version") or closes the socket without a CONNACK.
    Raises :class:`MqttError` when nothing answers.
    """
    result: dict[str, str] = {}
    done = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"twinctl-probe-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    _configure(client, endpoint)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        result["v"] = "3.1.1" if rc.value in (1, 0x84) else "5"
        result["rc"] = str(rc)
        done.set()

    def on_disconnect(c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        result.setdefault("v", "3.1.1")
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=10)
    except (OSError, ValueError) as exc:
        raise MqttError(f"cannot reach the MQTT broker at {endpoint.url}: {exc}") from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise MqttError(f"the MQTT broker at {endpoint.url} did not answer within {timeout} s")
        if result.get("rc") in ("Not authorized", "Bad user name or password"):
            raise MqttError(f"the MQTT broker at {endpoint.url} refused us: {result['rc']}")
    finally:
        client.disconnect()
        client.loop_stop()
    return result["v"]


MessageHandler = Callable[[mqtt.MQTTMessage], None]


class MqttConnection:
    """One long-lived MQTT client: connect, resubscribe, publish, reconnect.

    All arguments are keyword-only. ``on_message`` runs in paho's network thread:
    keep it short (hand the message to a queue). With ``manual_ack`` the caller
    acknowledges a QoS 1 message with :meth:`ack` once it is safely handled.
    """

    def __init__(
        self,
        *,
        endpoint: MqttEndpoint,
        client_id: str,
        protocol: str = "5",
        persistent: bool = True,
        will: Will | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: MessageHandler | None = None,
        on_connected: Callable[[bool], None] | None = None,
        manual_ack: bool = False,
        max_inflight: int = 100,
        backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, not {protocol!r}")
        if not client_id:
            raise ValueError("client_id must not be empty")
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError("backoff must be (first, cap) with 0 < first <= cap seconds")
        self._backoff = backoff
        self._attempt = 0
        self.endpoint = endpoint
        self.protocol = protocol
        self.v5 = protocol == "5"
        self._persistent = persistent
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connected = on_connected
        self.connected = threading.Event()
        self._stopping = False
        self.publish_acked: Callable[[int], None] | None = None
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": PROTOCOLS[protocol],
                                  "manual_ack": manual_ack}
        if not self.v5:
            kwargs["clean_session"] = not persistent
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        _configure(self.client, endpoint)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self._next_delay()
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message
        self.client.on_publish = self._handle_publish
        self.client.on_connect_fail = lambda client, userdata: self._next_delay()

    # ----- lifecycle ------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; reconnects by itself until :meth:`stop`."""
        props = None
        clean_start: bool | int = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if self._persistent:
                props.SessionExpiryInterval = SESSION_EXPIRY
                clean_start = False
            else:
                clean_start = True
        kwargs: dict[str, Any] = {"keepalive": 30}
        if self.v5:
            kwargs.update(clean_start=clean_start, properties=props)
        self.client.connect_async(self.endpoint.host, self.endpoint.port, **kwargs)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self, *, final: tuple[str, str] | None = None) -> None:
        """Publish ``final`` (topic, payload; retained) if connected, then disconnect."""
        self._stopping = True
        if final is not None and self.connected.is_set():
            info = self.client.publish(final[0], final[1], qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    # ----- use ------------------------------------------------------------
    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False,
        correlation: bytes | None = None,
    ) -> mqtt.MQTTMessageInfo:
        props = None
        if correlation is not None and self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def ack(self, mid: int, qos: int) -> None:
        self.client.ack(mid, qos)

    def _next_delay(self) -> None:
        """Capped exponential backoff with jitter for paho's next reconnect attempt,
        so a fleet of controllers does not reconnect in step after a broker restart."""
        first, cap = self._backoff
        delay = min(cap, first * 2 ** self._attempt) * random.uniform(0.5, 1.0)
        self._attempt = min(self._attempt + 1, 30)
        self.client.reconnect_delay_set(min_delay=delay, max_delay=delay)

    # ----- paho callbacks (network thread) -------------------------------
    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("MQTT broker %s refused the connection: %s", self.endpoint.url, rc)
            return
        self._attempt = 0  # reset only after a successful CONNACK
        self._next_delay()
        for topic, qos in self._subscriptions:
            client.subscribe(topic, qos)
        log.info("connected to MQTT broker %s (MQTT %s, session %s)", self.endpoint.url,
                 self.protocol, "resumed" if flags.session_present else "new")
        self.connected.set()
        if self._on_connected is not None:
            self._on_connected(bool(flags.session_present))

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self._next_delay()
        if was and not self._stopping:
            log.warning("lost the MQTT broker %s (%s); reconnecting", self.endpoint.url, rc)

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is not None:
            self._on_message(msg)

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        if self.publish_acked is not None:
            self.publish_acked(mid)
