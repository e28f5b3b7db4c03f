"""A live group member takes over a dead member's group session and drains it.

The members of a group (``TWIN_GROUP``) share the group's command topic by an MQTT 5
shared subscription, each on a persistent session of its own
(``twinctl-ingress-{cid}-group``). When a member dies, the broker keeps its session:
the commands in flight to it (received, not yet acknowledged) and the share of the
group's commands it goes on assigning to it until the session is gone. Mosquitto does
not hand those to another member (MQTT 5 §4.8.2 says it SHOULD; eclipse-mosquitto#2662),
and a session that ended with its connection would drop them. So:

1. Every member watches the group's members' retained status (``{prefix}/+/status``,
   with the group in it). A member's ``offline`` — its last will, or its clean stop —
   starts a takeover of that member's session, unless another live member claimed it
   first (``SET NX`` in Redis: ``twin:group:{group}:takeover:{cid}``, 2 minutes; the
   others look again every 10 s while the member stays offline, in case the claimer
   dies too).
2. The taker connects with the dead member's group client id, ``clean_start`` false
   (the session resumes: its queue and its in-flight commands, re-sent with the DUP
   flag) and a session expiry of 0 (the session ends with this connection), and at
   once unsubscribes the session from the group topic: the broker assigns it nothing
   new, every new group command goes to the live members.
3. The commands the session held arrive and go into the taker's own inbox; they are
   handled and acknowledged like its own (a command the dead member had stored the
   ack of gets answered by the taker under its own controller id: at least once per
   group). Once none has arrived for :data:`QUIET_S` and all are acknowledged, the
   taker disconnects, and the session is gone.

A command in flight to the dead member (re-sent with the DUP flag) may have been half
handled by it: its ``ack`` stored, its job never queued (it died in between). The taker
closes such a request of the dead member (:meth:`Takeover.close_dangling`): an ``error``
(``internal_error``, ``taken_over_by``: the taker) as its final reply from the dead
member, sent when its publisher runs again, and its job's entry removed; the taker's
own ``ack`` and ``result`` follow. A job the dead member did queue runs and answers
under its id as well.

If the dead member comes back meanwhile it connects with the same client id: the
broker ends the taker's connection (session taken over) and the member resumes its
session itself, with whatever the taker had not acknowledged. The taker never
reconnects.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.settings import Settings
from tasks.jobboard import JobBoard
from tasks.outbox import Outbox, request_key

from .commands import sniff_id
from .mqttconn import new_client
from .orphans import unacked_messages

__all__ = ["Takeover", "group_client_id", "status_filter", "QUIET_S"]

log = logging.getLogger("twinctl.ingress")

QUIET_S = 1.0
"""A taken-over session is drained once nothing arrived for this long (and all is acked)."""
MAX_S = 120.0
"""A takeover ends after this long whatever happens (the Redis claim lasts as long)."""
RETRY_S = 10.0
"""How often a member whose takeover another member claimed looks again."""


def group_client_id(cid: str) -> str:
    """The MQTT client id of controller ``cid``'s group session."""
    return f"twinctl-ingress-{cid}-group"


def status_filter(settings: Settings) -> str:
    """The topic filter of every controller's retained status under the prefix."""
    return f"{settings.mqtt_prefix}/+/status"


class _Session:
    """One taken-over session: acks what the inbox's handler has handled."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.unacked: set[int] = set()
        self.received = 0
        self.last = time.monotonic()
        self.gone = threading.Event()
        """the connection ended (drained, or taken over by the member itself)"""
        self.ready = threading.Event()
        """the session resumed and was unsubscribed from the group"""
        self.present = False
        self.ended_by: str | None = None
        """why the broker ended the connection (None: we did, or not yet)"""

    def ack(self, mid: int, qos: int) -> None:
        with self.lock:
            self.unacked.discard(mid)
        self.client.ack(mid, qos)

    def drained(self) -> bool:
        with self.lock:
            return not self.unacked and time.monotonic() - self.last >= QUIET_S


class Takeover:
    """Watches the group's statuses; drains a dead member's group session."""

    def __init__(self, settings: Settings, client: redis.Redis, outbox: Outbox, *,
                 receive: Callable[[Any, mqtt.MQTTMessage], None],
                 stopping: threading.Event) -> None:
        """``receive(conn, msg)`` queues a command taken over (``conn.ack`` acknowledges
        it once handled), as the ingress's own connections do."""
        self.settings = settings
        self.redis = client
        self.outbox = outbox
        self.receive = receive
        self.stopping = stopping
        self.cid = settings.controller_id
        self._prefix = f"{settings.mqtt_prefix}/"
        self._running: set[str] = set()
        self._state: dict[str, str] = {}
        """the last status state seen of each member"""
        self._lock = threading.Lock()
        self.taken = 0
        """commands received from taken-over sessions"""

    def claim_key(self, cid: str) -> str:
        return f"twin:group:{self.settings.group}:takeover:{cid}"

    # ----- paho's network thread: a status arrived ---------------------------------
    def on_status(self, msg: mqtt.MQTTMessage) -> None:
        """A controller's status: an ``offline`` member of our group is taken over (in a
        thread of its own)."""
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        cid = body.get("controller")
        if (body.get("group") != self.settings.group or not isinstance(cid, str)
                or cid == self.cid or msg.topic != f"{self._prefix}{cid}/status"):
            return
        with self._lock:
            self._state[cid] = str(body.get("state"))
            if self._state[cid] != "offline" or cid in self._running:
                return
            self._running.add(cid)
        threading.Thread(target=self._run, args=(cid,), daemon=True,
                         name=f"ingress-takeover-{cid}").start()

    # ----- the takeover's thread ---------------------------------------------------
    def _run(self, cid: str) -> None:
        token = f"{self.cid} {uuid.uuid4().hex}"
        try:
            # Another live member's claim: it drains the session. If that member dies
            # too, its claim runs out: look again every RETRY_S while ``cid`` is offline
            # (a session already drained is gone: the look costs one connection).
            while not self.redis.set(self.claim_key(cid), token, nx=True, ex=int(MAX_S)):
                if self.stopping.wait(RETRY_S) or not self._offline(cid):
                    return
            if not self._offline(cid):
                return  # back meanwhile: its session is its own again
            try:
                self._drain(cid)
            finally:
                if self.redis.get(self.claim_key(cid)) == token.encode():
                    self.redis.delete(self.claim_key(cid))
        except redis.RedisError as exc:
            log.warning("group takeover of %s not done: Redis: %s", cid, exc)
        except Exception:  # noqa: BLE001  (a takeover must not kill the ingress)
            log.exception("group takeover of %s failed", cid)
        finally:
            with self._lock:
                self._running.discard(cid)

    def _offline(self, cid: str) -> bool:
        with self._lock:
            return self._state.get(cid) == "offline"

    def _drain(self, cid: str) -> None:
        client = new_client(self.settings.mqtt, client_id=group_client_id(cid),
                            protocol=mqtt.MQTTv5, manual_ack=True)
        session = _Session(client)
        group_topic = f"$share/{self.settings.group}/{self.settings.group_cmd_topic}"

        def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
            if rc.is_failure:
                session.gone.set()
                return
            session.present = bool(flags.session_present)
            if not session.present:
                session.gone.set()  # nothing kept: nothing to drain
                c.disconnect()
                return
            c.unsubscribe([group_topic, status_filter(self.settings)])

        def on_unsubscribe(c: mqtt.Client, *a: Any) -> None:
            session.ready.set()

        def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
            if not msg.topic.startswith(self._prefix) or msg.topic.endswith("/status"):
                if msg.qos:
                    c.ack(msg.mid, msg.qos)  # a status the session had queued
                return
            if msg.dup:
                try:
                    self.close_dangling(cid, bytes(msg.payload))
                except redis.RedisError as exc:
                    log.warning("group takeover of %s: a half-handled command not checked: "
                                "Redis: %s", cid, exc)
            with session.lock:
                session.received += 1
                session.last = time.monotonic()
                if msg.qos:
                    session.unacked.add(msg.mid)
            self.receive(session, msg)

        def on_disconnect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
            if rc.is_failure and session.present:
                session.ended_by = str(rc)  # e.g. "Session taken over": the member is back
            session.gone.set()

        client.on_connect = on_connect
        client.on_unsubscribe = on_unsubscribe
        client.on_message = on_message
        client.on_disconnect = on_disconnect
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0  # the session ends with this connection
        props.ReceiveMaximum = 100
        client.reconnect_delay_set(3600, 3600)  # (never: the loop is stopped first)
        client.connect(self.settings.mqtt.host, self.settings.mqtt.port, keepalive=30,
                       clean_start=False, properties=props)
        client.loop_start()
        started = time.monotonic()
        try:
            while not session.gone.is_set() and not self.stopping.is_set():
                if time.monotonic() - started > MAX_S:
                    log.warning("group takeover of %s: still not drained after %.0f s; "
                                "leaving it", cid, MAX_S)
                    break
                if session.ready.is_set() and session.drained():
                    break
                session.gone.wait(0.1)
        finally:
            if not session.gone.is_set():
                client.disconnect()
                session.gone.wait(5.0)
            client.loop_stop()
        if session.present:
            self.taken += session.received
            log.warning("group member %s is gone: took over its group session, %d "
                        "command(s) drained in %.1f s%s", cid, session.received,
                        time.monotonic() - started,
                        f" (ended by the broker: {session.ended_by})" if session.ended_by
                        else "")

    # ----- a command the dead member had half handled -------------------------------
    def close_dangling(self, dead: str, payload: bytes) -> bool:
        """Close the dead member's request for this command if it stored the ``ack``
        and never queued the job (its entry still ``queued``, its Celery message in no
        queue and held by no worker): True if it was closed."""
        rid = sniff_id(payload)
        if rid is None:
            return False
        claimed, final = self.redis.hmget(request_key(dead, rid), "!", "final")
        if claimed is None or final is not None:
            return False  # never claimed by it, or answered
        board = JobBoard(self.redis, dead, ttl=self.settings.duplicate_ttl)
        info = board.get(rid)
        if info is None or info.get("state") != "queued" or self._queued(
                str(info.get("queue") or ""), f"{rid!r}, {dead!r}".encode()):
            return False  # no job, or one that a worker will run and answer
        self.outbox.put(
            controller=dead, request_id=rid, key="final", rtype="error", fields={
                "code": "internal_error", "taken_over_by": self.cid,
                "message": f"controller {dead} stopped after its ack of this command and "
                           f"before queueing its job; group member {self.cid} took the "
                           "command over and answers it"},
            topic=str(info.get("reply_to") or f"{self.settings.mqtt_prefix}/{dead}/reply/"
                                               f"{rid}"),
            correlation=info.get("correlation"))
        board.end(rid)
        log.warning("request %s: half handled by %s when it died (ack stored, job not "
                    "queued): closed with an error there; answered here", rid, dead)
        return True

    def _queued(self, queue: str, needle: bytes) -> bool:
        """Whether a Celery message whose arguments start with ``needle`` (its
        ``argsrepr``) waits in ``queue`` or is held by a worker. Read only for a
        command re-sent from a dead member's session."""
        if queue:
            length = int(self.redis.llen(queue))
            for start in range(0, length, 500):
                chunk: list[bytes] = self.redis.lrange(queue, start, start + 499)  # type: ignore[assignment]
                if any(needle in raw for raw in chunk):
                    return True
        return any(needle in raw for _, raw in unacked_messages(self.redis))

