"""The publisher: drains a controller's outbox to MQTT, in order, deleting on PUBACK.

A reply that can never be sent — a topic the broker would refuse (and drop the
connection for), a payload larger than the broker takes — must not block the
outbox's head, or one bad reply silences the controller for everyone. Such a reply
is checked before it is handed to paho, moved to the dead-letter stream
``twin:{cid}:outbox:dead`` (bounded, with the reason), and its request gets an
``error`` on its own default reply topic instead; every other reply keeps flowing.

One publisher per controller, beside the ingress, on the ingress's own MQTT
connection (the seed design's "single data sender"). It blocks on the outbox
stream, hands new entries to paho (at most ``window`` awaiting PUBACK), and
deletes an entry only when the broker has acknowledged it. While the broker is
away it waits; paho resends what was in flight when the connection is back.
After a restart it starts from the oldest entry still stored, so nothing that
was not acknowledged is lost (it may be sent twice: the orchestrator drops the
second copy by ``(id, seq)``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import redis

from common.retry import Backoff
from tasks.outbox import Outbox, dead_letter_stream, outbox_stream

from .mqttconn import MqttConnection

__all__ = ["Publisher", "undeliverable", "DEAD_LETTERS_KEPT", "BROKER_TOPIC_LEVELS"]

DEAD_LETTERS_KEPT = 10_000
"""The dead-letter stream keeps about this many (the newest)."""
BROKER_TOPIC_LEVELS = 200
"""Brokers refuse deeper topics (Mosquitto: 200 levels) and drop the publisher."""
_ENVELOPE = re.compile(rb'\A\{"id":"([A-Za-z0-9._:-]{1,128})","controller":"[^"]*",'
                       rb'"type":"([a-z]+)","seq":(\d+)')


def undeliverable(topic: bytes, payload: bytes, max_packet: int) -> tuple[str, str] | None:
    """(error code, why) when a reply can never be published, else None: a topic that is
    not valid UTF-8, empty, longer than 65 535 bytes, with a wildcard, a NUL or more than
    :data:`BROKER_TOPIC_LEVELS` levels, or a packet larger than the broker takes."""
    try:
        text = topic.decode("utf-8")
    except UnicodeDecodeError:
        return "internal_error", "its topic is not UTF-8 text"
    if not text or len(topic) > 65_535 or "\x00" in text or "+" in text or "#" in text:
        return "internal_error", f"its topic {text[:60]!r} cannot be published to"
    if text.count("/") >= BROKER_TOPIC_LEVELS:
        return "internal_error", f"its topic has more than {BROKER_TOPIC_LEVELS} levels"
    size = len(payload) + len(topic) + 300  # (fixed header, properties, correlation)
    if size > max_packet:
        return "limit_exceeded", (f"{len(payload)} bytes, more than the MQTT broker takes "
                                  f"in one message ({max_packet} bytes)")
    return None


def _envelope_of(payload: bytes) -> tuple[str | None, int | None, str | None]:
    """(request id, seq, type) of a stored reply, read from its head only."""
    m = _ENVELOPE.match(payload[:400])
    if m is None:
        return None, None, None
    return m.group(1).decode(), int(m.group(3)), m.group(2).decode()

log = logging.getLogger("twinctl.publisher")


class Publisher:
    """Drain ``twin:{controller}:outbox`` into ``connection``."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        connection: MqttConnection,
        controller: str,
        window: int = 100,
        block_ms: int = 200,
        reply_topic: Callable[[str], str] | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.redis = client
        self.conn = connection
        self.controller = controller
        self.stream = outbox_stream(controller)
        self.dead_stream = dead_letter_stream(controller)
        self.reply_topic = reply_topic
        """a request's default reply topic, for the error about a reply that cannot go"""
        self.outbox = outbox or Outbox(client)
        self.dead = 0
        self.window = window
        self.block_ms = block_ms
        # handed to paho, oldest first; paho marks each info as published on PUBACK
        self._inflight: list[tuple[mqtt.MQTTMessageInfo, bytes]] = []
        self._puback = threading.Event()
        # mids acknowledged by the broker: consulted for messages handed to paho while the
        # connection was down (paho sends them after the reconnect, but their
        # MQTTMessageInfo never reports "published")
        self._acked_mids: set[int] = set()
        self._refused_mids: dict[int, str] = {}
        """mids the broker acknowledged with a refusal (e.g. an ACL), and why"""
        self._to_delete: list[bytes] = []  # acknowledged, not yet deleted (Redis was away)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.acknowledged = 0
        connection.publish_acked = self._on_puback

    def _on_puback(self, mid: int, refused: str | None) -> None:  # paho's network thread
        if refused is not None:
            self._refused_mids[mid] = refused
        self._acked_mids.add(mid)
        self._puback.set()

    def _published(self, info: mqtt.MQTTMessageInfo) -> bool:
        try:
            return info.is_published()
        except (RuntimeError, ValueError):  # handed over while disconnected
            return info.mid in self._acked_mids

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._puback.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._delete_acked()

    def _delete_acked(self) -> None:
        """Delete the entries whose PUBACK came; keep the rest in flight."""
        flags = [self._published(info) for info, _ in self._inflight]
        done = [entry for (_, entry), ok in zip(self._inflight, flags, strict=True) if ok]
        if self._refused_mids:
            refused = [(entry, self._refused_mids.pop(info.mid)) for (info, entry), ok
                       in zip(self._inflight, flags, strict=True)
                       if ok and info.mid in self._refused_mids]
            self._refused_mids.clear()
            for entry, why in refused:
                done.remove(entry)
                self._refused_by_broker(entry, why)
        if done:
            self._inflight = [item for item, ok in zip(self._inflight, flags, strict=True)
                              if not ok]
            self.acknowledged += len(done)
            self._to_delete.extend(done)
        elif len(self._acked_mids) > 4 * self.window:
            self._acked_mids.clear()  # acks of messages that are not ours
        if not self._to_delete:
            return
        try:
            self.redis.xdel(self.stream, *self._to_delete)
            self._to_delete.clear()
        except redis.RedisError as exc:  # kept, and deleted when Redis answers again
            log.warning("could not delete %d sent replies from the outbox yet: %s",
                        len(self._to_delete), exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._drain()
            except Exception:  # noqa: BLE001  (the publisher must outlive any surprise)
                log.exception("the outbox publisher failed; starting again in 1 s")
                self._stop.wait(1.0)

    def _drain(self) -> None:
        cursor: bytes | str = "0"  # from the oldest entry still stored
        if self._inflight:  # after a failure: what paho holds will be acknowledged
            cursor = self._inflight[-1][1]
        delays = Backoff(0.5, 10.0)
        while not self._stop.is_set():
            self._puback.clear()
            self._delete_acked()
            if not self.conn.connected.wait(0.2):
                continue
            room = self.window - len(self._inflight)
            if room <= 0:
                self._puback.wait(0.05)
                continue
            try:
                batch: Any = self.redis.xread(
                    {self.stream: cursor}, count=room, block=self.block_ms)
                delays.reset()
            except redis.RedisError as exc:
                delay = delays.next()
                log.warning("outbox read failed (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                continue
            for _stream, entries in batch or ():
                for entry_id, fields in entries:
                    self._send(entry_id, fields)
                    cursor = entry_id

    def _send(self, entry_id: bytes, fields: dict[bytes, Any]) -> None:
        why = undeliverable(fields[b"t"], fields[b"p"], self.conn.max_packet)
        if why is not None:
            self._dead_letter(entry_id, fields, *why)
            return
        topic = fields[b"t"].decode()
        corr_hex = fields.get(b"c")
        correlation = bytes.fromhex(corr_hex.decode()) if corr_hex else None
        try:
            info = self.conn.publish(topic, fields[b"p"], qos=1, correlation=correlation)
        except ValueError as exc:  # paho refuses the topic or the payload: never sendable
            self._dead_letter(entry_id, fields, "internal_error", f"MQTT refuses it: {exc}")
            return
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._acked_mids.discard(info.mid)  # a stale ack of an older message with this mid
        self._inflight.append((info, entry_id))
        self.sent += 1

    def _refused_by_broker(self, entry_id: bytes, why: str) -> None:
        """A reply the broker acknowledged with a refusal (not authorized to publish to
        its topic, say): dead-lettered like one that cannot be sent, never lost."""
        try:
            found: Any = self.redis.xrange(self.stream, entry_id, entry_id)
            if found:
                self._dead_letter(entry_id, found[0][1], "not_permitted", why)
        except redis.RedisError as exc:  # left in the outbox: sent again after a restart
            log.warning("could not dead-letter a reply the broker refused (%s): %s", why, exc)

    def _dead_letter(self, entry_id: bytes, fields: dict[bytes, Any], code: str,
                     why: str) -> None:
        """Move a reply that can never be sent to the dead-letter stream, and answer its
        request with an ``error`` on the request's own reply topic instead."""
        payload: bytes = fields[b"p"]
        rid, seq, rtype = _envelope_of(payload)
        log.error("reply %s of request %s (%s, %d bytes to %r) cannot be sent: %s; moved to "
                  "%s", seq, rid, rtype, len(payload), fields[b"t"][:80], why, self.dead_stream)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.dead_stream, {"t": fields[b"t"][:1024], "id": rid or "",
                                     "seq": "" if seq is None else seq, "type": rtype or "",
                                     "bytes": len(payload), "why": why,
                                     "head": payload[:512]},
                  maxlen=DEAD_LETTERS_KEPT, approximate=True)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()
        self.dead += 1
        if rid is None or self.reply_topic is None or fields[b"t"] == \
                self.reply_topic(rid).encode():
            return  # (on the default reply topic already: there is nowhere else)
        what = f"reply seq {seq} ({rtype})" if seq is not None else "a reply"
        self.outbox.put(
            controller=self.controller, request_id=rid, key=f"undeliverable:{seq}",
            rtype="error", topic=self.reply_topic(rid), fields={
                "code": code, "undelivered": {"seq": seq, "type": rtype},
                "message": f"{what} of this request could not be sent ({why}); it was "
                           "kept aside by the controller (dead letters), the request's "
                           "other replies were not held up"})

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything stored has been acknowledged (for a clean stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._published(info) for info, _ in self._inflight):
                try:
                    if self.redis.xlen(self.stream) <= len(self._inflight):
                        return True
                except redis.RedisError:
                    return False
            time.sleep(0.02)
        return False
