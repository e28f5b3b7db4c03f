"""One MQTT connection: a paho-mqtt 2.x client that owns its socket.

- MQTT 5 with a persistent session (clean start off, session expiry 1 day), or
  MQTT 3.1.1 with ``clean_session=False`` when the broker speaks only that
  (``protocol="auto"`` asks the broker once, see :func:`negotiate_protocol`);
- TCP_NODELAY on every socket (without it a loopback round trip costs ~88 ms);
- TLS for ``mqtts://`` (TLS 1.2+, the broker's certificate and host name checked, a CA
  file, a client certificate), user and password, a last will: every paho client made
  from the settings is made by :func:`new_client`;
- reconnects in paho's background thread with capped, jittered exponential backoff
  (reset only after a successful CONNACK);
- a refused connection (bad password, TLS handshake failure, a plain client at a TLS
  listener) is logged as one line that says why and what to check, once per cause,
  not once per retry (:func:`refusal_line`, :func:`failure_line`);
- subscriptions are (re)made on every CONNACK.

Foreign errors (paho's return codes, socket errors) are translated into
:class:`MqttError` here.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from common.retry import Backoff
from common.settings import MqttEndpoint

from .mqtt_failures import closed_line, failure_line, refusal_line
from .mqttread import ChunkedClient

__all__ = ["MqttConnection", "MqttError", "Will", "failure_line", "negotiate_protocol",
           "new_client", "refusal_line", "PROTOCOLS"]

log = logging.getLogger("twinctl.mqtt")

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
SESSION_EXPIRY = 86_400
REPEAT_AFTER = 600.0
"""seconds after which an unchanged connection failure is logged again (else: debug)"""

_reported: dict[str, float] = {}  # connection failures logged (by this process), and when
_reported_lock = threading.Lock()


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


_insecure_warned = False


def new_client(endpoint: MqttEndpoint, *, client_id: str = "",
               protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
               **kwargs: Any) -> mqtt.Client:
    """A paho client for ``endpoint``: TLS for ``mqtts://`` (:meth:`MqttEndpoint.tls_context`:
    TLS 1.2+, certificate and host name checked, CA file, client certificate), user name
    and password, TCP_NODELAY, reads in large chunks (:mod:`ingress.mqttread`). Every MQTT
    client made from the settings is made here."""
    global _insecure_warned
    client = ChunkedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                           protocol=protocol, **kwargs)
    client.on_socket_open = _nodelay
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set_context(endpoint.tls_context())
        if endpoint.tls_insecure and not _insecure_warned:
            _insecure_warned = True
            log.warning("TWIN_MQTT_TLS_INSECURE=1: the MQTT broker's certificate and host name "
                        "are NOT checked (for tests and labs only)")
    return client




MQTT_MAX_PACKET = 268_435_455
"""The largest packet MQTT can carry at all (its remaining-length field)."""


class _LastError(logging.Handler):
    """Keeps the last error paho logged on a connection (e.g. the TLS alert that ended it),
    which paho's callbacks do not pass on; nothing is printed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, BaseException):
                self.error = arg


def negotiate_protocol(endpoint: MqttEndpoint, *, timeout: float = 5.0) -> str:
    """Ask the broker whether it speaks MQTT 5; return ``"5"`` or ``"3.1.1"``.

    A 3.1.1-only broker answers an MQTT 5 CONNECT with return code 1
    ("unacceptable protocol version") or closes the socket without a CONNACK.
    Raises :class:`MqttError` when nothing answers.
    """
    result: dict[str, str] = {}
    done = threading.Event()
    client = new_client(endpoint, client_id=f"twinctl-probe-{uuid.uuid4().hex[:8]}",
                        protocol=mqtt.MQTTv5)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        result["v"] = "3.1.1" if rc.value in (1, 0x84) else "5"
        if rc.is_failure and rc.value not in (1, 0x84):
            result["refused"] = refusal_line(endpoint, rc)
        done.set()

    def on_disconnect(c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        result.setdefault("v", "3.1.1")
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=10)
    except (OSError, ValueError) as exc:
        raise MqttError(failure_line(endpoint, exc)[1]) from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise MqttError(f"the MQTT broker at {endpoint.url} did not answer within {timeout} s")
        if "refused" in result:
            raise MqttError(result["refused"])
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
        retained: bool = True,
        retained_topics: Sequence[str] = (),
        receive_maximum: int | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, not {protocol!r}")
        if not client_id:
            raise ValueError("client_id must not be empty")
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self._delays = Backoff(*backoff)
        self._retained = retained
        self._retained_topics = frozenset(retained_topics)
        """subscriptions that get retained messages even with ``retained`` false"""
        self._receive_maximum = receive_maximum
        """MQTT 5: how many QoS 1 messages the broker may send before we acknowledge
        (back-pressure for a handler that acknowledges after handling); None: 65 535"""
        self.max_packet = MQTT_MAX_PACKET
        """the largest packet the broker takes (its CONNACK says, else MQTT's own limit)"""
        self.endpoint = endpoint
        self.protocol = protocol
        self.v5 = protocol == "5"
        self._persistent = persistent
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connected = on_connected
        self.connected = threading.Event()
        self._stopping = False
        self.publish_acked: Callable[[int, str | None], None] | None = None
        """called with the mid of each PUBACK, and the broker's reason when it refused
        the message (MQTT 5: a reason code of 0x80 or more, e.g. "Not authorized")"""
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": PROTOCOLS[protocol],
                                  "manual_ack": manual_ack}
        if not self.v5:
            kwargs["clean_session"] = not persistent
        self.client = new_client(endpoint, **kwargs)
        self.client.on_socket_open = self._handle_socket_open
        self._paho_errors = _LastError()
        paho_log = logging.Logger(f"twinctl.mqtt.paho.{client_id}", logging.ERROR)
        paho_log.propagate = False
        paho_log.addHandler(self._paho_errors)
        self.client.enable_logger(paho_log)
        self._answered = False  # a CONNACK came on the current socket
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self._next_delay()
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message
        self.client.on_publish = self._handle_publish
        self.client.on_connect_fail = self._handle_connect_fail

    # ----- lifecycle ------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; reconnects by itself until :meth:`stop`."""
        props = None
        clean_start: bool | int = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if self._receive_maximum is not None:
                props.ReceiveMaximum = self._receive_maximum
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
        delay = self._delays.next()
        self.client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]  # paho takes float seconds

    def _report(self, level: int, line: str) -> None:
        """Log why the connection failed: once per cause and process (the ingress's two
        connections fail alike; again after :data:`REPEAT_AFTER` s), not once per retry;
        the repeats go to debug."""
        now = time.monotonic()
        with _reported_lock:
            first = now - _reported.get(line, -REPEAT_AFTER) >= REPEAT_AFTER
            if first:
                _reported[line] = now
        log.log(level if first else logging.DEBUG, "%s; retrying", line)

    # ----- paho callbacks (network thread) -------------------------------
    def _handle_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._answered = False
        self._paho_errors.error = None
        _nodelay(client, userdata, sock)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError``: the exception is the current one
        exc = sys.exc_info()[1]
        self._next_delay()
        if exc is not None and not self._stopping:
            self._report(*failure_line(self.endpoint, exc))

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self._answered = True
        if rc.is_failure:
            self._report(logging.ERROR, refusal_line(self.endpoint, rc))
            return
        # MQTT 5: the broker may say the largest packet it takes
        self.max_packet = int(getattr(props, "MaximumPacketSize", 0) or MQTT_MAX_PACKET)
        with _reported_lock:
            _reported.clear()  # connected: a failure after this is news again
        self._delays.reset()  # only after a successful CONNACK
        self._next_delay()
        for topic, qos in self._subscriptions:
            if (self.v5 and not self._retained  # (commands: the broker keeps them back)
                    and topic not in self._retained_topics):
                client.subscribe(topic, options=SubscribeOptions(
                    qos=qos, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))
            else:
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
        elif not self._answered and not self._stopping:
            self._report(*closed_line(self.endpoint, self._paho_errors.error))

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is not None:
            self._on_message(msg)

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        if self.publish_acked is not None:
            refused = getattr(rc, "is_failure", False)
            self.publish_acked(mid, f"the broker refused it: {rc}" if refused else None)
