"""The ingress process: MQTT commands in, errors and acks out, valid work onto Celery.

One :class:`Ingress` per controller owns the MQTT connections and the threads.
paho's network thread only queues each command message, in its orchestrator's
queue of the fair, bounded inbox (:mod:`ingress.inbox`); two handler threads (one
for any command, one for small ones) take them round robin and handle each, one
command of an orchestrator at a time (:class:`ingress.handler.Handler`: size →
signature → JSON → envelope → fields → plan → duplicate-id guard and first reply →
action), and the command
is acknowledged to the broker (manual QoS 1 ack) only when handled, so a command
the ingress received but had not handled when it died is delivered again.

``ping`` and ``describe`` are answered here, without a worker round trip: they
need no computation, only what the ingress already holds (the libraries).

Every reply, errors included, goes through the Redis outbox and is sent by the
:class:`ingress.publisher.Publisher` running in this process, on its connection.

The parts, one module each: :mod:`~ingress.handler` (one command),
:mod:`~ingress.inbox` (waiting commands, fair between orchestrators),
:mod:`~ingress.plans` (what each command does), :mod:`~ingress.admission`
(refusing work when full), :mod:`~ingress.jobcontrol` (``jobs``, ``stop``, ``set``),
:mod:`~ingress.routing` (response topics and clients), :mod:`~ingress.replies`
(storing replies), :mod:`~ingress.monitor` (depths, status, lost jobs).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import cast

import paho.mqtt.client as mqtt
import redis

from common.retry import Backoff
from common.settings import Settings
from instances import SHIPPED_INSTANCES, InstanceLibrary
from modellib import units
from modellib.plugins import load_plugins
from tasks.alarmboard import AlarmBoard
from tasks.jobboard import JobBoard
from tasks.outbox import Outbox

from .admission import Admission
from .alarmcontrol import AlarmControl
from .handler import Handler
from .inbox import RECEIVE_MAXIMUM, SMALL, Acks, Inbox, Item
from .jobcontrol import JobControl
from .monitor import Monitor, status_message
from .mqttconn import MqttConnection, Will, negotiate_protocol
from .mqttread import ChunkedClient, RawPublish
from .plans import Planner
from .policy import Policy
from .publisher import Publisher
from .replies import Durable, Replies
from .routing import claimed_client
from .takeover import Takeover, group_client_id, status_filter

__all__ = ["Ingress"]

log = logging.getLogger("twinctl.ingress")


class Ingress:
    """The MQTT front of one controller."""

    def __init__(self, settings: Settings, *, protocol: str | None = None) -> None:
        self.settings = settings
        # the operator's models first: the policy and every check know them
        self.plugins = load_plugins(model_path=settings.model_path, allow=settings.plugins)
        for skipped in self.plugins.skipped:
            log.error("plugin skipped: %s: %s", skipped.where, skipped.why)
        self.cid = settings.controller_id
        self.redis = redis.Redis.from_url(settings.redis_url, health_check_interval=30,
                                          **settings.redis_options)
        self.outbox = Outbox(self.redis, ttl=settings.duplicate_ttl,
                             max_entries=settings.outbox_max)
        self.library = InstanceLibrary(settings.instances_dir, seed=SHIPPED_INSTANCES)
        self.board = JobBoard(self.redis, self.cid, ttl=settings.duplicate_ttl)
        self.policy = Policy.from_settings(settings)
        self.protocol = protocol or settings.mqtt_protocol
        self._stop = threading.Event()
        durable = Durable(self._stop)
        self.replies = Replies(settings, self.outbox, durable)
        self.admission = Admission(settings, self.board, self.outbox, durable)
        jobs = JobControl(self.board, self.replies, durable)
        self.alarms = AlarmBoard(self.redis, self.cid, settings.alarms_topic,
                                 max_entries=settings.outbox_max)
        self.planner = Planner(settings, self.policy, self.library, self.admission, jobs,
                               self.replies, durable, on_library_change=self._publish_status,
                               alarms=AlarmControl(self.alarms, self.replies, durable))
        self.handler = Handler(settings, self.policy, self.planner, self.replies)
        self.monitor = Monitor(settings, self.redis, self.board, self.admission, self.replies,
                               self._stop, self._publish_status, alarms=self.alarms)
        self.inbox = Inbox()
        self.takeover = Takeover(settings, self.redis, self.outbox, receive=self._receive,
                                 stopping=self._stop)
        self.conn: MqttConnection | None = None
        self.group_conn: MqttConnection | None = None
        self.publisher: Publisher | None = None
        self.handled = 0
        self._count_lock = threading.Lock()
        self._dropped_said = 0.0

    # ----- lifecycle ------------------------------------------------------
    def start(self) -> None:
        units.dimension("m3/s")  # the units library read now (~0.35 s), not in a command's check
        if self.protocol == "auto":
            self.protocol = self._negotiate()
        conn = self.conn = MqttConnection(
            endpoint=self.settings.mqtt,
            client_id=f"twinctl-ingress-{self.cid}",
            protocol=self.protocol,
            persistent=True,
            will=Will(self.settings.topic("status"), self._status("offline")),
            subscriptions=[(self.settings.cmd_topic, 1)],
            on_message=lambda msg: self._receive(conn, msg),
            on_connected=lambda session_present: self._publish_status(),
            manual_ack=True,
            retained=False,  # a retained message is never a command
            receive_maximum=RECEIVE_MAXIMUM,
        )
        if self.protocol == "5":
            # The group's shared subscription has a persistent session of its own, which
            # the watch of the members' statuses shares: when a member is gone, a live
            # one drains its session (ingress/takeover.py), so that the commands the
            # broker had given it are answered, and the broker gives it no more.
            gid = self.settings.group
            watch = status_filter(self.settings)
            group = self.group_conn = MqttConnection(
                endpoint=self.settings.mqtt,
                client_id=group_client_id(self.cid),
                protocol="5",
                persistent=True,
                subscriptions=[(f"$share/{gid}/{self.settings.group_cmd_topic}", 1),
                               (watch, 1)],
                on_message=lambda msg: self._receive_group(group, msg),
                manual_ack=True,
                retained=False,
                retained_topics=[watch],
                receive_maximum=RECEIVE_MAXIMUM,
            )
        for c in (self.conn, self.group_conn):
            if c is not None and isinstance(c.client, ChunkedClient):
                c.client.qos0_gate = self._takes_qos0
        self.publisher = Publisher(client=self.redis, connection=self.conn, controller=self.cid,
                                   reply_topic=self.settings.reply_topic, outbox=self.outbox)
        # one handler for any command, one for small ones (a ping is not kept behind
        # the check of a 1 MB run); each orchestrator's commands are handled in order
        self._handlers = [
            threading.Thread(target=self._handle_loop, args=(largest,), daemon=True,
                             name=f"ingress-handler-{'small' if largest else 'any'}")
            for largest in (None, SMALL)]
        for thread in self._handlers:
            thread.start()
        self.monitor.start()
        self.publisher.start()
        self.conn.start()
        if self.group_conn is not None:
            self.group_conn.start()
        log.info("ingress %s listening on %s (MQTT %s, Redis %s)", self.cid,
                 self.settings.cmd_topic, self.protocol, self.settings.redis_url_safe)

    def stop(self) -> None:
        self._stop.set()
        self.inbox.close()
        if self.publisher is not None:
            self.publisher.wait_idle(3.0)
            self.publisher.stop()
        if self.group_conn is not None:
            self.group_conn.stop()
        if self.conn is not None:
            self.conn.stop(final=(self.settings.topic("status"), self._status("offline")))

    def _negotiate(self) -> str:
        delays, said = Backoff(0.5, 30.0), ""
        while not self._stop.is_set():
            try:
                return negotiate_protocol(self.settings.mqtt)
            except Exception as exc:  # noqa: BLE001  (any failure: wait and ask again)
                # one line per cause, not one per retry
                log.log(logging.DEBUG if str(exc) == said else logging.ERROR,
                        "%s; retrying", exc)
                said = str(exc)
                self._stop.wait(delays.next())
        return "5"

    def _status(self, state: str) -> str:
        return status_message(self.settings, state, protocol=self.protocol, policy=self.policy,
                              plugins=self.plugins,
                              library=self.library, depths=self.admission.depths,
                              restarts=self.monitor.restarts)

    def _publish_status(self) -> None:
        if self.conn is not None:
            self.conn.publish(self.settings.topic("status"), self._status("online"),
                              retain=True)

    # ----- the inbox and the handler thread ---------------------------------------
    @property
    def dropped(self) -> int:
        """QoS 0 commands dropped because their orchestrator had too much waiting."""
        return self.inbox.dropped

    def _receive(self, conn: Acks, msg: mqtt.MQTTMessage) -> None:
        """paho's network thread: queue a command for the handler, in its orchestrator's
        queue of the fair, bounded inbox (:mod:`ingress.inbox`): beyond its bounds a
        QoS 1 command is refused unread, a QoS 0 one dropped (counted, logged every 5 s)."""
        item = Item(conn, msg, claimed_client(msg), len(msg.payload))
        if self.inbox.put(item, qos=msg.qos) == "dropped":
            self._say_dropped()

    def _say_dropped(self) -> None:
        now = time.monotonic()
        if now - self._dropped_said >= 5.0:
            log.warning("inbox full: %d QoS 0 command(s) dropped so far (a flood?); "
                        "QoS 1 commands are refused with an answer, never dropped",
                        self.inbox.dropped)
            self._dropped_said = now

    def _takes_qos0(self, raw: RawPublish) -> bool:
        """paho's network thread, before a QoS 0 command is decoded: dropped at once when
        its orchestrator's QoS 0 share is used up (:meth:`ingress.inbox.Inbox.takes_qos0`)."""
        if raw.topic.endswith("/status"):
            return True  # (the group connection's watch: not a command)
        if self.inbox.takes_qos0(claimed_client(cast(mqtt.MQTTMessage, raw))):
            return True
        self._say_dropped()
        return False

    def _receive_group(self, conn: MqttConnection, msg: mqtt.MQTTMessage) -> None:
        """paho's network thread, the group connection: a group command, or a status
        (a member gone is taken over)."""
        if msg.topic.endswith("/status"):
            if msg.qos:
                conn.ack(msg.mid, msg.qos)
            self.takeover.on_status(msg)
        else:
            self._receive(conn, msg)

    def _handle_loop(self, largest: int | None) -> None:
        while True:
            item = self.inbox.get(largest=largest)
            if item is None or self._stop.is_set():
                return
            try:
                self._handle_one(item)
            finally:
                self.inbox.done(item)

    def _handle_one(self, item: Item) -> None:
        conn, msg = item.conn, item.msg
        started = time.perf_counter()
        rid: str | None = None
        cmd: str | None = None
        outcome = "failed"  # handle() raised: see the exception logged just before
        try:
            rid, cmd, outcome = (self.handler.handle(msg) if item.refused is None else
                                 self.handler.refuse_unread(msg, item.refused))
        except Exception:  # noqa: BLE001  (no input may kill the ingress)
            log.exception("could not handle a command on %s", msg.topic)
        finally:
            if msg.qos > 0:
                conn.ack(msg.mid, msg.qos)
        with self._count_lock:
            self.handled += 1
        ms = round((time.perf_counter() - started) * 1000, 2)
        # one line per command; with TWIN_LOG_FORMAT=json the extra are fields
        log.info("request %s %s: %s in %.2f ms", rid or "-", cmd or "-", outcome, ms,
                 extra={"request_id": rid, "cmd": cmd, "outcome": outcome,
                        "duration_ms": ms})
