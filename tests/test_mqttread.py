"""The chunked paho client's raw reading of a QoS 0 PUBLISH (ingress/mqttread.py), on
packets paho itself builds, and its buffered socket reads on a real socket pair."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingress.mqttread import ChunkedClient, RawPublish
from ingress.routing import claimed_client


def publish_packet(topic: str, payload: bytes, props: Properties | None, *,
                   v5: bool = True) -> bytes:
    """The PUBLISH paho sends for this message: its bytes after the fixed header."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    a, b = socket.socketpair()
    client._sock = a  # (paho writes its packets to this socket)
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    try:
        client.publish(topic, payload, qos=0, properties=props)
        client.loop_write()
        raw = b.recv(65536)
    finally:
        a.close()
        b.close()
    assert raw[0] == 0x30
    at = 1
    while raw[at] & 0x80:
        at += 1
    return raw[at + 1:]


def test_a_qos0_publish_is_read_as_paho_would_for_the_gate() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("client", "plant-a"), ("signature", "k1:" + "ab" * 32)]
    props.ResponseTopic = "responses/plant-a/x"
    props.CorrelationData = b"\x00\x01corr"
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 30
    props.ContentType = "application/json"
    raw = RawPublish(publish_packet("twin/c1/cmd", b'{"id": "p"}', props), v5=True)
    assert raw.topic == "twin/c1/cmd" and raw.payload == b'{"id": "p"}'
    assert raw.properties.UserProperty == [("client", "plant-a"),
                                           ("signature", "k1:" + "ab" * 32)]
    assert raw.properties.ResponseTopic == "responses/plant-a/x"
    assert claimed_client(raw) == "k1"  # type: ignore[arg-type]  (the signature's key)
    plain = RawPublish(publish_packet("t/cmd", b"x:" + b"0" * 64, None, v5=False), v5=False)
    assert plain.topic == "t/cmd" and claimed_client(plain) == "x"  # type: ignore[arg-type]
    anonymous = RawPublish(publish_packet("t/cmd", b"{}", None), v5=True)
    assert claimed_client(anonymous) == "anonymous"  # type: ignore[arg-type]


@pytest.mark.parametrize("packet", [b"", b"\x00\x05ab", b"\x00\x01t\x05\x26\x00\x09ab",
                                    b"\x00\x01t\x02\x99\x00"])
def test_an_unreadable_packet_is_left_to_paho(packet: bytes) -> None:
    with pytest.raises((ValueError, IndexError, UnicodeDecodeError)):
        RawPublish(packet, v5=True)


def test_small_reads_are_served_from_one_large_read() -> None:
    client = ChunkedClient(mqtt.CallbackAPIVersion.VERSION2)
    a, b = socket.socketpair()
    a.setblocking(False)
    client._sock = a
    try:
        b.sendall(b"0123456789")
        assert client._sock_recv(1) == b"0"
        b.sendall(b"abc")  # read later: the first read took what was there
        assert client._sock_recv(4) == b"1234" and client._sock_recv(100) == b"56789"
        assert client._sock_recv(2) == b"ab" and client._sock_recv(2) == b"c"
        with pytest.raises(BlockingIOError):
            client._sock_recv(1)
    finally:
        client._sock = None
        a.close()
        b.close()
