"""The ingress process: MQTT commands in, errors and acks out, valid work onto Celery.

One :class:`Ingress` per controller. paho's network thread only queues each
command message; one handler thread checks it (size → JSON → envelope →
duplicate-id guard → fields → libraries) and either stores an error reply at
once, or stores the ``ack`` and sends a Celery task. Commands are acknowledged
to the broker (manual QoS 1 ack) only when handled, so a command the ingress
received but had not handled when it died is delivered again.

``ping`` and ``describe`` are answered here, without a worker round trip: they
need no computation, only what the ingress already holds (the libraries), and a
Celery hop would add latency and load for nothing.

Every reply, errors included, goes through the Redis outbox and is sent by the
:class:`ingress.publisher.Publisher` running in this process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import kombu.exceptions
import paho.mqtt.client as mqtt
import redis

from common import __version__
from common.settings import Settings
from ingress.mqttconn import MqttConnection, Will, negotiate_protocol
from ingress.publisher import Publisher
from instances import SHIPPED_INSTANCES, Instance, InstanceLibrary
from modellib import describe_models
from modellib.errors import CodedError, InvalidArgument, did_you_mean
from modellib.functions import check_call, describe_functions
from scenario_builder import (
    check_scenario,
    describe_templates,
    expand_template,
    settable_inputs,
)
from scenario_builder.templates import templates
from tasks.jobboard import JobBoard
from tasks.jobs import call as call_task
from tasks.jobs import realtime as realtime_task
from tasks.jobs import run as run_task
from tasks.outbox import Outbox, Stored, outbox_stream
from tasks.replies import encode_json, timestamp

from . import limits, signing
from .commands import Command, check_fields, parse_command, sniff_id
from .errors import DuplicateId, LimitExceeded, Overloaded, SignatureRefused, UnknownJob
from .policy import CLIENT_PROPERTY, Policy

__all__ = ["Ingress"]


@dataclass
class _Plan:
    """What to answer first (after the duplicate-id guard), and what to do then."""

    rtype: str
    fields: dict[str, Any]
    key: str = "final"
    then: Callable[[], None] | None = None

log = logging.getLogger("twinctl.ingress")
T = TypeVar("T")


class Ingress:
    """The MQTT front of one controller."""

    def __init__(self, settings: Settings, *, protocol: str | None = None) -> None:
        self.settings = settings
        self.cid = settings.controller_id
        self.redis = redis.Redis.from_url(settings.redis_url, health_check_interval=30,
                                          **settings.redis_options)
        self.outbox = Outbox(self.redis, ttl=settings.duplicate_ttl,
                             max_entries=settings.outbox_max)
        self.library = InstanceLibrary(settings.instances_dir, seed=SHIPPED_INSTANCES)
        self.board = JobBoard(self.redis, self.cid, ttl=settings.duplicate_ttl)
        self.policy = Policy.from_settings(settings)
        self.protocol = protocol or settings.mqtt_protocol
        self._inbox: queue.Queue[tuple[MqttConnection, mqtt.MQTTMessage] | None] = queue.Queue()
        self._stop = threading.Event()
        self.conn: MqttConnection | None = None
        self.group_conn: MqttConnection | None = None
        self.publisher: Publisher | None = None
        self.handled = 0
        self.depths: dict[str, int] = {}
        """jobs waiting per queue, and replies waiting in the outbox (refreshed twice a second)"""

    # ----- lifecycle ------------------------------------------------------
    def start(self) -> None:
        if self.protocol == "auto":
            self.protocol = self._negotiate()
        conn = self.conn = MqttConnection(
            endpoint=self.settings.mqtt,
            client_id=f"twinctl-ingress-{self.cid}",
            protocol=self.protocol,
            persistent=True,
            will=Will(self.settings.topic("status"), self._status("offline")),
            subscriptions=[(self.settings.cmd_topic, 1)],
            on_message=lambda msg: self._inbox.put((conn, msg)),
            on_connected=self._on_connected,
            manual_ack=True,
        )
        if self.protocol == "5":
            # The group's shared subscription has a session of its own that ends with
            # the connection: a dead member leaves the group at once, and the broker
            # hands the group's commands to the live ones. (On the persistent session
            # above, the broker would go on queueing a share for the dead member.)
            gid = self.settings.group
            group = self.group_conn = MqttConnection(
                endpoint=self.settings.mqtt,
                client_id=f"twinctl-ingress-{self.cid}-group",
                protocol="5",
                persistent=False,
                subscriptions=[(f"$share/{gid}/{self.settings.group_cmd_topic}", 1)],
                on_message=lambda msg: self._inbox.put((group, msg)),
                manual_ack=True,
            )
        self.publisher = Publisher(client=self.redis, connection=self.conn, controller=self.cid)
        self._handler = threading.Thread(target=self._handle_loop, name="ingress-handler",
                                         daemon=True)
        self._handler.start()
        self._monitor = threading.Thread(target=self._monitor_loop, name="ingress-monitor",
                                         daemon=True)
        self._monitor.start()
        self.publisher.start()
        self.conn.start()
        if self.group_conn is not None:
            self.group_conn.start()
        log.info("ingress %s listening on %s (MQTT %s, Redis %s)", self.cid,
                 self.settings.cmd_topic, self.protocol, self.settings.redis_url_safe)

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(None)
        if self.publisher is not None:
            self.publisher.wait_idle(3.0)
            self.publisher.stop()
        if self.group_conn is not None:
            self.group_conn.stop()
        if self.conn is not None:
            self.conn.stop(final=(self.settings.topic("status"), self._status("offline")))

    QUEUES = ("twin.short", "twin.long", "twin.realtime")

    def _monitor_loop(self) -> None:
        """Queue depths for admission and the status; the status again when they change
        (at most every 5 s)."""
        published: dict[str, int] = {}
        last = 0.0
        while not self._stop.wait(0.5):
            try:
                pipe = self.redis.pipeline(transaction=False)
                for q in self.QUEUES:
                    pipe.llen(q)
                pipe.xlen(outbox_stream(self.cid))
                counts = pipe.execute()
            except redis.RedisError as exc:
                log.debug("queue depths unavailable: %s", exc)
                continue
            self.depths = {**dict(zip(self.QUEUES, counts[:-1], strict=True)),
                           "outbox": counts[-1]}
            try:
                self._reap_lost()
            except redis.RedisError as exc:
                log.debug("lost real-time jobs not checked: %s", exc)
            now = time.monotonic()
            if self.depths != published and now - last >= 5.0:
                self._publish_status()
                published, last = dict(self.depths), now

    def _reap_lost(self) -> None:
        """A running real-time job whose heartbeat stopped: its worker died. Answer it
        (``runtime_error``) instead of leaving the orchestrator waiting."""
        for rid in self.board.lost():
            info = self.board.get_running(rid)
            if info is not None:
                at = f" at t = {info['t']:g} s" if isinstance(info.get("t"), int | float) else ""
                self._reply(rid, "final", "error", {
                    "code": "runtime_error",
                    "message": f"the worker running this real-time job ({info.get('worker')}) "
                               f"stopped answering{at}; the run is over, its rows so far were "
                               "sent: send a new run to go on"},
                    info.get("reply_to"), None,
                    correlation_hex=info.get("correlation"))
                log.error("request %s: real-time job lost with its worker %s", rid,
                          info.get("worker"))
            self.board.end(rid)

    def _admit(self) -> None:
        """Refuse new work at once when too much is waiting (instead of no answer)."""
        waiting = self.depths.get("twin.short", 0) + self.depths.get("twin.long", 0)
        if waiting >= self.settings.max_queued:
            raise Overloaded(
                f"this controller has {waiting} jobs waiting (its limit is "
                f"{self.settings.max_queued}); send the command again later",
                queued=waiting,
            )

    def _negotiate(self) -> str:
        delay, said = 0.5, ""
        while not self._stop.is_set():
            try:
                return negotiate_protocol(self.settings.mqtt)
            except Exception as exc:  # noqa: BLE001  (any failure: wait and ask again)
                # one line per cause, not one per retry
                log.log(logging.DEBUG if str(exc) == said else logging.ERROR,
                        "%s; retrying", exc)
                said = str(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        return "5"

    def _status(self, state: str) -> str:
        fields: dict[str, Any] = {"state": state, "controller": self.cid,
                                  "group": self.settings.group, "ts": timestamp()}
        if state == "online":
            fields.update(
                version=__version__, protocol=self.protocol,
                commands=self.policy.allowed_commands(), modes=self.policy.allowed_modes(),
                models=self.policy.allowed_models(),
                instances=self.policy.instance_ids(self.library.describe()),
                queues={q: self.depths.get(q, 0) for q in self.QUEUES},
                outbox=self.depths.get("outbox", 0),
            )
        return encode_json(fields)

    def _on_connected(self, session_present: bool) -> None:
        self._publish_status()

    def _publish_status(self) -> None:
        if self.conn is not None:
            self.conn.publish(self.settings.topic("status"), self._status("online"),
                              retain=True)

    # ----- the handler thread ---------------------------------------------
    def _handle_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None or self._stop.is_set():
                return
            conn, msg = item
            started = time.perf_counter()
            rid: str | None = None
            cmd: str | None = None
            outcome = "failed"  # handle() raised: see the exception logged just before
            try:
                rid, cmd, outcome = self.handle(msg)
            except Exception:  # noqa: BLE001  (no input may kill the ingress)
                log.exception("could not handle a command on %s", msg.topic)
            finally:
                if msg.qos > 0:
                    conn.ack(msg.mid, msg.qos)
            self.handled += 1
            ms = round((time.perf_counter() - started) * 1000, 2)
            # one line per command; with TWIN_LOG_FORMAT=json the extra are fields
            log.info("request %s %s: %s in %.2f ms", rid or "-", cmd or "-", outcome, ms,
                     extra={"request_id": rid, "cmd": cmd, "outcome": outcome,
                            "duration_ms": ms})

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        """Run a Redis or Celery call until it works: a command is never dropped for it."""
        delay = 0.2
        while True:
            try:
                return fn()
            except (redis.ConnectionError, redis.TimeoutError, OSError,
                    kombu.exceptions.OperationalError) as exc:
                if self._stop.is_set():
                    raise
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def handle(self, msg: mqtt.MQTTMessage) -> tuple[str | None, str | None, str]:
        """Handle one command message completely (its replies are in the outbox after).

        Returns ``(request id, cmd, outcome)`` for the log (``None`` where the
        command did not get that far): the outcome is the first reply's type
        (``ack``, ``pong``, ``description``), its error code, ``duplicate_id``,
        or ``redelivered`` (a QoS 1 re-delivery of a command already answered).

        The duplicate-id guard and the first reply are one Redis round trip
        (:meth:`Outbox.put_first`): the command is checked first, locally, and
        the guard then decides whether its answer (``ack``, ``pong``, an error…)
        or a ``duplicate_id`` error is stored. The outcome is the same as
        guarding first; it saves a round trip on every command.
        """
        reply_to, correlation = self._response_route(msg)
        props = self._user_properties(msg)
        secret = self.settings.command_secret
        verified = secret is None
        try:
            payload = bytes(msg.payload)
            if len(payload) <= self.settings.max_command_bytes + 65:  # (too large: below)
                payload = signing.verify(secret, payload, props.get(signing.SIGNATURE_PROPERTY))
                verified = True
            command = parse_command(payload, max_bytes=self.settings.max_command_bytes,
                                    allowed=self.policy.commands)
            if secret is not None:
                signing.check_ts(command.ts, max_age=self.settings.signature_max_age,
                                 request_id=command.id)
        except CodedError as exc:
            rid = getattr(exc, "request_id", None)
            if isinstance(exc, SignatureRefused) and rid is None:
                rid = sniff_id(bytes(msg.payload))
                exc.request_id = rid
            if not verified:
                # the bytes are not authentic: never publish where they say (response
                # topic), only on this controller's own topics
                reply_to, correlation = None, None
            if rid is None:
                self._error_without_id(exc)
            else:
                # keyed by the message's bytes: a QoS 1 re-delivery of it is not answered
                # twice; the same bytes sent again (not a re-delivery) are answered again
                key = f"rejected:{hashlib.sha1(msg.payload).hexdigest()}"
                first = self._reply(rid, key, "error", exc.as_reply(), reply_to, correlation)
                if not first.new and not msg.dup:
                    self._reply(rid, f"{key}:{uuid.uuid4().hex}", "error", exc.as_reply(),
                                reply_to, correlation)
            return rid, None, exc.code
        command.dup = bool(msg.dup)
        command.reply_to = reply_to
        command.correlation = correlation
        command.client = self._client_of(props, reply_to)
        try:
            check_fields(command)
            plan = self._plan(command)
        except CodedError as exc:
            plan = _Plan("error", exc.as_reply())
        except (OverflowError, RecursionError) as exc:
            # numbers or nesting beyond what can be computed with, deep in a command
            plan = _Plan("error", InvalidArgument(
                "a number in the command is too large to compute with (give finite values "
                "within ±1.8e308)" if isinstance(exc, OverflowError) else
                "the command is nested too deeply to check (at most ~300 levels)").as_reply())
        except Exception:  # noqa: BLE001  (a bug must still answer the command)
            log.exception("request %s: checking the command failed", command.id)
            plan = _Plan("error", {
                "code": "internal_error",
                "message": "the controller failed while checking this command; see its "
                           "log (it was not run)"})
        token = f"{timestamp()} {uuid.uuid4().hex}"
        stored = self._retry("storing the first reply", lambda: self.outbox.put_first(
            controller=self.cid, request_id=command.id, key=plan.key, rtype=plan.rtype,
            fields=plan.fields, topic=command.reply_to or self.settings.reply_topic(command.id),
            duplicate=self._duplicate(command.id), redelivered=command.dup,
            correlation=command.correlation.hex() if command.correlation else None,
            token=token,
        ))
        outcome = (str(plan.fields.get("code", "error")) if plan.rtype == "error"
                   else plan.rtype)
        if stored.outcome != "new":
            outcome = "duplicate_id" if stored.outcome == "duplicate" else "redelivered"
        if plan.then is None or stored.outcome == "duplicate":
            return command.id, command.cmd, outcome
        if stored.outcome == "redelivered":
            # A QoS 1 re-delivery: this ingress died after storing the first reply and
            # before acknowledging the command, perhaps before queueing its job. Do the
            # rest again: a job queued twice stores its replies once (logical keys), and
            # instance changes are idempotent. Rare, so no per-command bookkeeping.
            log.warning("request %s: re-delivered after an interrupted handling: "
                        "finishing it (its replies are stored once)", command.id)
        plan.then()
        return command.id, command.cmd, outcome

    def _plan(self, command: Command) -> _Plan:
        """Check ``command`` against the libraries (no side effects); say what to do."""
        body = command.body
        if command.cmd == "ping":
            return _Plan("pong", {})
        if command.cmd == "describe":
            return _Plan("description", self.describe())
        if command.cmd == "run":
            self._admit()
            job = self._prepare_run(command)
            self._check_client(command)
            return _Plan("ack", {"queue": job["queue"]}, "ack",
                         lambda: self._enqueue(job["task"], job, command))
        if command.cmd == "call":
            self._admit()
            job = self._prepare_call(command)
            self._check_client(command)
            return _Plan("ack", {"queue": job["queue"]}, "ack",
                         lambda: self._enqueue(call_task, job, command))
        if command.cmd == "put_instance":
            self.policy.check_instance(body["instance"], path="instance")
            inst = self.library.check(body["instance"], path="instance")
            return _Plan("ack", {}, "ack", lambda: self._put_instance(command, inst))
        if command.cmd == "delete_instance":
            if not (command.dup and body["instance_id"] not in self.library):
                self.library.get(body["instance_id"], path="instance_id")
            # (a re-delivery may find it deleted by its own interrupted first handling)
            return _Plan("ack", {}, "ack", lambda: self._delete_instance(command))
        if command.cmd == "jobs":
            return _Plan("result", {"status": "ok", "jobs": self._jobs()})
        if command.cmd == "stop":
            job = self._find_job(body["target"])
            return _Plan("ack", {}, "ack", lambda: self._stop_job(command, job))
        if command.cmd == "set":
            job = self._find_job(body["target"])
            values = self._check_set(job, body["inputs"])
            return _Plan("ack", {}, "ack", lambda: self._set_inputs(command, job, values))
        raise AssertionError(f"no plan for {command.cmd!r}")  # parse_command refused it

    def _enqueue(self, task: Any, job: dict[str, Any], command: Command) -> None:
        if self.settings.max_jobs_per_client:  # counted until the job ends (JobBoard.end)
            self._retry("counting the job", lambda: self.board.add_client_job(
                command.client, command.id))
        self._retry("queueing the job", lambda: task.apply_async(
            args=job["args"], kwargs=job["kwargs"], queue=job["queue"],
            **job.get("options", {})))

    # ----- jobs: list, stop, set ------------------------------------------------
    _SHOWN = ("id", "task", "queue", "state", "summary", "started", "worker", "worker_pid",
              "celery_id",
              "inputs", "t", "ticks", "rows", "overruns")

    def _jobs(self) -> list[dict[str, Any]]:
        """The jobs of this controller running or waiting, running first."""
        running = self._retry("reading the jobs", self.board.running)
        queued = self._retry("reading the queues", lambda: self.board.queued(self.QUEUES))
        jobs = [{"id": rid, **info} for rid, info in sorted(
            running.items(), key=lambda item: item[1].get("started", 0))]
        jobs += [j for j in queued if j["id"] not in running]
        return [{k: j[k] for k in self._SHOWN if k in j} for j in jobs]

    def _find_job(self, target: str) -> dict[str, Any]:
        """A job of this controller, running or waiting; ``unknown_job`` otherwise.

        A job taken from its queue by a worker that has not registered it yet is
        in neither place for a moment; a request that was acked and has no final
        reply yet is looked for again (a few times, 20 ms apart) before refusing."""
        for attempt in range(_FIND_ATTEMPTS):
            info = self._retry("reading the jobs", lambda: self.board.get_running(target))
            if info is not None:
                return {"id": target, **info}
            for job in self._retry("reading the queues",
                                   lambda: self.board.queued(self.QUEUES)):
                if job["id"] == target:
                    return job
            if attempt == 0:
                keys = self._retry("reading the request", lambda: self.outbox.logical_keys(
                    self.cid, target))
                if "ack" not in keys or "final" in keys:
                    break  # not a job in flight: no need to look again
            time.sleep(0.02)
        raise UnknownJob(
            f"no job {target!r} is running or waiting on this controller (it may have "
            "ended already; `jobs` lists those that are)", path="target")

    def _stop_job(self, command: Command, job: dict[str, Any]) -> None:
        target = job["id"]
        # the job looks at the flag: a real-time loop every tick, a dynamic run every
        # 0.2 s of integration, a waiting job when a worker takes it (no signals: a
        # signal can land in the wrong job or in the storing of a reply)
        self._retry("storing the stop", lambda: self.board.request_stop(target))
        self._final(command, "result", {"status": "ok", "target": target,
                                         "state": job["state"]})

    def _check_set(self, job: dict[str, Any], inputs: dict[str, Any]) -> dict[str, float]:
        target = job["id"]
        if job.get("task") != "twin.realtime":
            raise InvalidArgument(
                f"job {target!r} is not a real-time run ({job.get('summary') or job.get('task')}"
                "); `set` steers real-time runs only", path="target")
        ports = job.get("inputs")
        if ports is None:  # still waiting: its scenario is in the queued message
            ports = settable_inputs(check_scenario(job["scenario"]))
        values: dict[str, float] = {}
        for key, value in inputs.items():
            if key not in ports:
                raise InvalidArgument(
                    f"{key!r} is not an input of job {target!r} that can be set"
                    f"{did_you_mean(key, ports)}; settable: {', '.join(ports) or 'none'}",
                    path=f"inputs.{key}")
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise InvalidArgument(
                    f"inputs.{key} must be a finite number, got {json.dumps(value)[:60]}",
                    path=f"inputs.{key}")
            values[key] = float(value)
        return values

    def _set_inputs(self, command: Command, job: dict[str, Any],
                    values: dict[str, float]) -> None:
        self._retry("storing the inputs", lambda: self.board.set_inputs(job["id"], values))
        self._final(command, "result", {"status": "ok", "target": job["id"], "inputs": values,
                                         "state": job["state"]})

    def _put_instance(self, command: Command, inst: Instance) -> None:
        try:
            stored, created = self.library.put(inst.describe())
        except OSError as exc:
            log.error("could not store instance %s: %s", inst.id, exc)
            self._final(command, "error", {
                "code": "internal_error",
                "message": f"the instance {inst.id!r} could not be stored: {exc.strerror}"})
            return
        self._final(command, "result", {"status": "ok", "created": created,
                                         "instance": stored.describe()})
        self._publish_status()

    def _delete_instance(self, command: Command) -> None:
        iid = command.body["instance_id"]
        try:
            if not (command.dup and iid not in self.library):
                self.library.delete(iid)
        except CodedError as exc:  # deleted by an earlier command meanwhile
            self._final(command, "error", exc.as_reply())
            return
        except OSError as exc:
            self._final(command, "error", {
                "code": "internal_error",
                "message": f"the instance {iid!r} could not be deleted: {exc.strerror}"})
            return
        self._final(command, "result", {"status": "ok", "deleted": iid})
        self._publish_status()

    def _final(self, command: Command, rtype: str, fields: dict[str, Any]) -> None:
        self._reply(command.id, "final", rtype, fields, command.reply_to, command.correlation)

    @staticmethod
    def _duplicate(rid: str) -> dict[str, Any]:
        return DuplicateId(
            f"request id {rid!r} was already used on this controller; "
            "ids must be unique for 24 h: send the command again with a new id",
            path="id",
        ).as_reply()

    def _response_route(self, msg: mqtt.MQTTMessage) -> tuple[str | None, bytes | None]:
        props = getattr(msg, "properties", None)
        topic = getattr(props, "ResponseTopic", None) if props is not None else None
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        if topic and ("#" in topic or "+" in topic):
            topic = None  # not a topic one can publish to
        if topic and self._forbidden_response_topic(topic):
            log.warning("response topic %r refused (a system or command topic): replying on "
                        "the request's own reply topic", topic[:200])
            topic = None
        return topic or None, corr

    def _forbidden_response_topic(self, topic: str) -> bool:
        """A response topic may not make the controller publish commands or system
        messages: ``$…`` topics, and any ``…/cmd`` topic under this controller's prefix
        (its own, a peer's, a group's)."""
        prefix = self.settings.mqtt_prefix + "/"
        return topic.startswith("$") or (topic.startswith(prefix) and topic.endswith("/cmd"))

    def describe(self) -> dict[str, Any]:
        """The libraries, as far as the deployment policy allows them."""
        return self.policy.describe(
            {"models": describe_models(), "functions": describe_functions(),
             "instances": self.library.describe(), "templates": describe_templates()},
            templates())

    # ----- who sent it, and how many jobs it has ------------------------------------
    @staticmethod
    def _user_properties(msg: mqtt.MQTTMessage) -> dict[str, str]:
        """The MQTT 5 user properties of a message (the first value of each name)."""
        props = getattr(msg, "properties", None)
        out: dict[str, str] = {}
        for item in getattr(props, "UserProperty", None) or ():
            if isinstance(item, tuple) and len(item) == 2:
                out.setdefault(str(item[0]), str(item[1]))
        return out

    @staticmethod
    def _client_of(props: dict[str, str], reply_to: str | None) -> str:
        """The orchestrator: its user property ``client``, else its response topic,
        else ``anonymous`` (a long name is kept by its digest)."""
        name = props.get(CLIENT_PROPERTY, "").strip() or reply_to or "anonymous"
        if len(name) > 128:
            name = "sha256:" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
        return name

    def _check_client(self, command: Command) -> None:
        """``limit_exceeded`` when the orchestrator already has TWIN_MAX_JOBS_PER_CLIENT
        jobs queued or running here."""
        limit = self.settings.max_jobs_per_client
        if not limit:
            return
        client = command.client
        jobs = self._retry("counting the jobs", lambda: self.board.client_jobs(client))
        jobs.pop(command.id, None)  # (a re-delivery of this very command)
        if len(jobs) >= limit:
            jobs = self._forget_finished(client, jobs)
        if len(jobs) >= limit:
            jobs = self._forget_lost(client, jobs)
        if len(jobs) >= limit:
            raise LimitExceeded(
                f"orchestrator {client!r} already has {len(jobs)} job(s) queued or running "
                f"on this controller, as many as one orchestrator may have "
                f"(TWIN_MAX_JOBS_PER_CLIENT = {limit}); send this one again when one of them "
                "has ended (`jobs` lists them)", path="cmd", running=len(jobs), limit=limit)

    def _forget_finished(self, client: str, jobs: dict[str, float]) -> dict[str, float]:
        """Jobs whose final reply is stored are over, even if their worker has not yet
        (or never) ended them: an orchestrator may send the next job as soon as it has
        the last one's result."""
        rids = list(jobs)

        def finals() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for rid in rids:  # the outbox's logical keys of each request (tasks/outbox.py)
                pipe.hexists(f"twin:{self.cid}:req:{rid}:keys", "final")
            return list(pipe.execute())

        done = [rid for rid, final in zip(rids, self._retry("reading the jobs", finals),
                                          strict=True) if final]
        if done:
            self._retry("forgetting ended jobs",
                        lambda: self.board.drop_client_jobs(client, done))
        return {rid: at for rid, at in jobs.items() if rid not in done}

    def _forget_lost(self, client: str, jobs: dict[str, float]) -> dict[str, float]:
        """Jobs counted for ``client`` that are neither running nor waiting any more
        (a worker died before it could end them): no longer counted. Only jobs queued
        more than a minute ago are looked at (a job being handed to a worker is, for an
        instant, in neither place)."""
        old = [rid for rid, at in jobs.items() if time.time() - at > LOST_AFTER_S]
        if not old:
            return jobs
        running = self._retry("reading the jobs", self.board.running)
        waiting = {j["id"] for j in self._retry(
            "reading the queues", lambda: self.board.queued(self.QUEUES))}
        lost = [rid for rid in old if rid not in running and rid not in waiting]
        if lost:
            log.warning("orchestrator %s: %d job(s) counted but neither running nor "
                        "waiting (lost with a worker); no longer counted", client, len(lost))
            self._retry("forgetting lost jobs",
                        lambda: self.board.drop_client_jobs(client, lost))
        return {rid: at for rid, at in jobs.items() if rid not in lost}

    def _prepare_call(self, command: Command) -> dict[str, Any]:
        """Check a ``call`` against the function library; return the Celery job to send."""
        name, args = command.body["function"], command.body["args"]
        self.policy.check_function(name, "function")
        limits.check_args(args, self.settings.max_series, "args")
        check_call(name, args, path="args", function_path="function")
        reply_to = command.reply_to or self.settings.reply_topic(command.id)
        correlation = command.correlation.hex() if command.correlation else None
        return {"queue": "twin.short", "args": (command.id, self.cid, reply_to, name, args),
                "kwargs": {"correlation": correlation, "summary": f"call: {name}"}}

    def _prepare_run(self, command: Command) -> dict[str, Any]:
        """Check a ``run`` against the libraries; return the Celery job to send."""
        body, s = command.body, self.settings
        template = body.get("template")
        if template is not None:
            limits.check_args(body["args"], s.max_series, "args")
        raw = expand_template(template, body["args"]) if template else body["scenario"]
        limits.check_elements(raw, s.max_elements)
        limits.check_series(raw, s.max_series)
        scenario = self.library.resolve(raw)
        self.policy.check_scenario(scenario, template=template)
        checked = check_scenario(scenario)
        limits.check_steps(checked, s.max_steps)
        models = sorted({el.cls.name for el in checked.elements.values()})
        summary = f"{checked.mode}: {len(checked.elements)} element(s) {', '.join(models)}"
        reply_to = command.reply_to or self.settings.reply_topic(command.id)
        correlation = command.correlation.hex() if command.correlation else None
        args = (command.id, self.cid, reply_to, scenario)
        if checked.mode == "realtime":
            return {"queue": "twin.realtime", "task": realtime_task, "args": args,
                    "kwargs": {"correlation": correlation, "summary": summary},
                    "options": _realtime_limits(checked.time, checked.realtime)}
        return {"queue": "twin.short" if checked.mode == "static" else "twin.long",
                "task": run_task, "args": args,
                "kwargs": {"correlation": correlation, "summary": summary,
                           "max_rows": self.settings.max_result_rows}}

    # ----- replies -----------------------------------------------------------
    def _reply(self, rid: str, key: str, rtype: str, fields: dict[str, Any],
               reply_to: str | None, correlation: bytes | None, *,
               correlation_hex: str | None = None) -> Stored:
        topic = reply_to or self.settings.reply_topic(rid)
        corr = correlation.hex() if correlation else correlation_hex
        return self._retry("storing a reply", lambda: self.outbox.put(
            controller=self.cid, request_id=rid, key=key, rtype=rtype, fields=fields,
            topic=topic, correlation=corr,
        ))

    def _error_without_id(self, exc: CodedError) -> None:
        fields = {"controller": self.cid, "type": "error", **exc.as_reply(), "ts": timestamp()}
        self._retry("storing an error", lambda: self.outbox.put_plain(
            controller=self.cid, topic=self.settings.topic("errors"), fields=fields))
        log.info("command without a usable id refused: %s", json.dumps(exc.as_reply()))


def _realtime_limits(time_: dict[str, Any] | None, opts: dict[str, Any] | None) -> dict[str, Any]:
    """Celery time limits of a real-time run: its length in wall-clock time and a margin;
    an open-ended run has none (it runs until stopped)."""
    assert time_ is not None and opts is not None
    if time_.get("stop") is None:
        return {"soft_time_limit": OPEN_ENDED_S, "time_limit": OPEN_ENDED_S + 30}
    length = (float(time_["stop"]) - float(time_["start"])) / float(opts["speed"])
    soft = int(length * 1.1 + 60)
    return {"soft_time_limit": soft, "time_limit": soft + 30}


LOST_AFTER_S = 60.0
"""A job counted for an orchestrator may be found lost only this long after it was queued."""

_FIND_ATTEMPTS = 10

OPEN_ENDED_S = 10 * 365 * 86_400
"""The "time limit" of an open-ended real-time run: none in practice (Celery needs a number)."""
