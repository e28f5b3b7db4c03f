"""A paho client that reads its socket in large chunks: a flood cannot out-read a command.

paho reads each packet with at least three ``recv`` calls (its first byte, the
remaining length, the rest) after one ``select`` per packet. Each of those system
calls gives up Python's interpreter lock, and getting it back waits up to the switch
interval (1 ms in the ingress) while a handler thread computes. So under load paho
read only a few hundred packets a second: a client flooding small QoS 0 commands
filled the socket between the broker and the ingress, and another client's ``ping``
waited behind thousands of them before it was even read (``bench/fairness.py``).

:class:`ChunkedClient` serves paho's small reads from a buffer that one ``recv`` of
up to :data:`CHUNK` bytes fills, and reads every complete packet in that buffer in
one go: one ``select`` and one ``recv`` per chunk instead of four system calls per
packet.

Decoding a packet costs paho about 30 µs of Python, so a client flooding QoS 0
commands still made every other client's command wait behind its burst. With a
:attr:`ChunkedClient.qos0_gate`, a QoS 0 PUBLISH is read only as far as its topic
and properties (:class:`RawPublish`, a few µs) and dropped before paho decodes it
when the gate says so (the ingress: its orchestrator's QoS 0 share is used up).

Nothing else of paho changes; the methods it overrides are the socket read, the read
step of paho's network loop, its packet dispatch (for the gate) and the socket's
close (the buffer goes with the connection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["ChunkedClient", "RawPublish", "CHUNK"]

CHUNK = 256 * 1024
"""The most one ``recv`` reads."""


_PUBLISH_QOS0 = 0x30
_STRING_PROPS = {0x03, 0x08}  # content type, response topic
_BINARY_PROPS = {0x09}  # correlation data
_FIXED_PROPS = {0x01: 1, 0x02: 4, 0x23: 2}  # payload format, message expiry, topic alias
_USER_PROPERTY, _RESPONSE_TOPIC, _SUBSCRIPTION_ID = 0x26, 0x08, 0x0B


class _Properties:
    """What :class:`RawPublish` read of a PUBLISH's properties (paho's names)."""

    def __init__(self) -> None:
        self.UserProperty: list[tuple[str, str]] = []
        self.ResponseTopic: str | None = None


class RawPublish:
    """A QoS 0 PUBLISH read only as far as a gate needs: ``topic``, ``properties``
    (``UserProperty``, ``ResponseTopic``) and ``payload``, shaped like paho's message.
    Raises ``ValueError`` on a packet it cannot read (paho then reads it itself)."""

    qos = 0

    def __init__(self, packet: bytes | bytearray, *, v5: bool) -> None:
        data = memoryview(packet)
        n = int.from_bytes(data[:2], "big")
        self.topic = bytes(data[2:2 + n]).decode("utf-8")
        at = 2 + n
        self.properties = _Properties()
        if v5:
            length, at = _varint(data, at)
            end = at + length
            while at < end:
                ident = data[at]
                at += 1
                if ident == _USER_PROPERTY:
                    key, at = _string(data, at)
                    value, at = _string(data, at)
                    self.properties.UserProperty.append((key, value))
                elif ident in _STRING_PROPS:
                    text, at = _string(data, at)
                    if ident == _RESPONSE_TOPIC:
                        self.properties.ResponseTopic = text
                elif ident in _BINARY_PROPS:
                    at += 2 + int.from_bytes(data[at:at + 2], "big")
                elif ident in _FIXED_PROPS:
                    at += _FIXED_PROPS[ident]
                elif ident == _SUBSCRIPTION_ID:
                    _, at = _varint(data, at)
                else:
                    raise ValueError(f"property {ident:#x}")
            if at != end:
                raise ValueError("properties")
        self.payload = bytes(data[at:])


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(4):
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise ValueError("variable byte integer")


def _string(data: memoryview, at: int) -> tuple[str, int]:
    n = int.from_bytes(data[at:at + 2], "big")
    if at + 2 + n > len(data):
        raise ValueError("string")
    return bytes(data[at + 2:at + 2 + n]).decode("utf-8"), at + 2 + n


class ChunkedClient(mqtt.Client):
    """:class:`paho.mqtt.client.Client` with buffered socket reads (see the module)."""

    _chunk = b""
    _at = 0
    qos0_gate: Callable[[RawPublish], bool] | None = None
    """called with each QoS 0 PUBLISH before paho decodes it: False drops it unread"""

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._chunk):
            data = super()._sock_recv(max(bufsize, CHUNK))  # (raises BlockingIOError)
            if len(data) <= bufsize:
                return data
            self._chunk, self._at = data, 0
        start, self._at = self._at, min(self._at + bufsize, len(self._chunk))
        return self._chunk[start:self._at]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        # paho reads one packet per select(): go on while the buffer holds more, so
        # that nothing waits in it for the next select (the socket may say "nothing").
        while True:
            rc = super().loop_read(max_packets)
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or self._at >= len(self._chunk):
                return rc

    def _packet_handle(self) -> Any:
        gate = self.qos0_gate
        if gate is not None and self._in_packet["command"] == _PUBLISH_QOS0:
            try:
                raw = RawPublish(self._in_packet["packet"], v5=self._protocol == mqtt.MQTTv5)
            except (ValueError, IndexError, UnicodeDecodeError):
                raw = None  # (paho reads it and says what is wrong)
            if raw is not None and not gate(raw):
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_handle()

    def _sock_close(self) -> None:
        # what was read of a lost connection is not read on the next one
        self._chunk, self._at = b"", 0
        super()._sock_close()
