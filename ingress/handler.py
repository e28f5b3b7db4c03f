"""One command message, handled completely: its replies are in the outbox after.

The order of the checks is the cost order: size, signature, JSON and envelope
(:mod:`ingress.commands`), then the command's fields and its plan against the
libraries (:mod:`ingress.plans`); the duplicate-id guard and the first reply are
one Redis round trip; then the plan's action (queue a job, store an instance…).
Any failure while checking is answered (``internal_error`` at worst), never silence.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

import paho.mqtt.client as mqtt

from common.settings import Settings
from modellib.errors import CodedError, Expired, InvalidArgument, LimitExceeded

from . import routing, signing
from .commands import Command, check_fields, parse_command, sniff_id
from .plans import Plan, Planner
from .policy import Policy
from .replies import Replies

__all__ = ["Handler", "received_at", "check_expired"]

log = logging.getLogger("twinctl.ingress")


def received_at(msg: mqtt.MQTTMessage) -> float:
    """When the controller received ``msg`` (unix seconds): paho stamps each message
    with its monotonic clock as it arrives."""
    stamp = getattr(msg, "timestamp", None)
    now = time.time()
    if not isinstance(stamp, int | float) or stamp <= 0:
        return now
    return now - max(0.0, time.monotonic() - float(stamp))


def check_expired(command: Command, now: float | None = None) -> None:
    """:class:`Expired` when the command's ``ttl`` ran out while it waited to be handled
    (in the inbox, behind other commands): it must not act late."""
    if command.ttl is None:
        return
    waited = (time.time() if now is None else now) - command.received
    if waited > command.ttl:
        raise Expired(
            f"the command's ttl of {command.ttl:g} s ran out before the controller could "
            f"handle it (it waited {waited:.1f} s after it was received): it was not run; "
            "send it again (with a new id) if it still applies", path="ttl")


class Handler:
    def __init__(self, settings: Settings, policy: Policy, planner: Planner,
                 replies: Replies) -> None:
        self.settings = settings
        self.policy = policy
        self.planner = planner
        self.replies = replies
        self.keys = signing.Keys(settings.command_secret, settings.command_keys)

    def handle(self, msg: mqtt.MQTTMessage) -> tuple[str | None, str | None, str]:
        """Handle one command message completely (its replies are in the outbox after).

        Returns ``(request id, cmd, outcome)`` for the log (``None`` where the
        command did not get that far): the outcome is the first reply's type
        (``ack``, ``pong``, ``description``), its error code, ``duplicate_id``,
        or ``redelivered`` (a QoS 1 re-delivery of a command already answered).

        The duplicate-id guard and the first reply are one Redis round trip
        (:meth:`tasks.outbox.Outbox.put_first`): the command is checked first, locally,
        and the guard then decides whether its answer (``ack``, ``pong``, an error…)
        or a ``duplicate_id`` error is stored. The outcome is the same as guarding
        first; it saves a round trip on every command.
        """
        if msg.retain:
            # a retained command would run again at every (re)subscription: never run
            log.warning("a retained message on %s ignored: commands are not retained",
                        msg.topic)
            return None, None, "retained"
        props = routing.user_properties(msg)
        command, verified = self._envelope(msg, props)
        if verified is None:
            # the bytes are not authentic: nothing they say is used (their id, response
            # topic, correlation data); the refusal goes to this controller's errors topic
            assert isinstance(command, CodedError)
            claimed = sniff_id(bytes(msg.payload))
            self.replies.error_without_id(command, claimed_id=claimed)
            return claimed, None, command.code
        rid = command.id if isinstance(command, Command) else command.request_id
        route = routing.response_route(
            msg, self.settings.mqtt_prefix, self.settings.reply_topic(rid) if rid else None)
        reply_to, correlation = route.topic, route.correlation
        if isinstance(command, CodedError):
            return self._refuse(msg, command, reply_to, correlation, route.refused)
        command.dup = bool(msg.dup)
        command.reply_to = reply_to
        command.correlation = correlation
        command.client = self._client(verified, props, reply_to)
        command.received = received_at(msg)
        plan = self._plan(command)
        if route.refused:
            plan.fields = {**plan.fields, "warnings": list(route.refused)}
        stored = self.replies.first(command, plan.key, plan.rtype, plan.fields, job=plan.entry,
                                    spec=plan.spec)
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

    def refuse_unread(self, msg: mqtt.MQTTMessage, why: str) -> tuple[str | None, None, str]:
        """A command refused before it is read, because its orchestrator has too much
        waiting (:mod:`ingress.inbox`): ``limit_exceeded`` on its id's reply topic (the
        id sniffed from its first bytes), or on the errors topic when it has none or
        when commands must be signed (its bytes are not checked: nothing they say is
        used)."""
        rid = sniff_id(bytes(msg.payload))
        exc = LimitExceeded(why, path="cmd", request_id=rid)
        if self.keys.on or rid is None:
            self.replies.error_without_id(exc, claimed_id=rid)
            return rid, None, exc.code
        route = routing.response_route(msg, self.settings.mqtt_prefix,
                                       self.settings.reply_topic(rid))
        return self._refuse(msg, exc, route.topic, route.correlation, route.refused)

    def _client(self, verified: signing.Verified, props: dict[str, str],
                reply_to: str | None) -> str:
        """Who sent it: a named key proves it; otherwise the command says (``client``,
        else its response topic), and a key's name said without its key is not taken."""
        if verified.key is not None:
            return verified.key
        name = routing.client_of(props, reply_to)
        return f"unverified:{name}" if name in self.keys.named else name

    def _envelope(self, msg: mqtt.MQTTMessage, props: dict[str, str]
                  ) -> tuple[Command | CodedError, signing.Verified | None]:
        """The signature (when commands must be signed), the JSON and the envelope: the
        command or why it is refused, and its verified signature (None: the bytes are
        not authentic)."""
        s = self.settings
        verified: signing.Verified | None = None if self.keys.on else signing.Verified(b"")
        try:
            payload = bytes(msg.payload)
            if len(payload) <= s.max_command_bytes + 130:  # (too large: parse_command says so)
                verified = signing.verify(
                    self.keys, payload, props.get(signing.SIGNATURE_PROPERTY),
                    topic=str(msg.topic), response_topic=routing.response_topic_of(msg))
                payload = verified.body
            command = parse_command(payload, max_bytes=s.max_command_bytes,
                                    allowed=self.policy.commands)
            if self.keys.on:
                signing.check_ts(command.ts, max_age=s.signature_max_age,
                                 request_id=command.id)
        except CodedError as exc:
            return exc, verified
        return command, verified

    def _refuse(self, msg: mqtt.MQTTMessage, exc: CodedError, reply_to: str | None,
                correlation: bytes | None,
                warnings: tuple[str, ...] = ()) -> tuple[str | None, None, str]:
        """An authentic command refused before its id could be guarded: answered on its
        id's reply topic if it has a readable id, else on the controller's ``errors``
        topic."""
        rid = exc.request_id
        fields = {**exc.as_reply(), **({"warnings": list(warnings)} if warnings else {})}
        if rid is None:
            self.replies.error_without_id(exc)
        else:
            # keyed by the message's bytes: a QoS 1 re-delivery of it is not answered
            # twice; the same bytes sent again (not a re-delivery) are answered again
            key = f"rejected:{hashlib.sha1(msg.payload).hexdigest()}"
            first = self.replies.reply(rid, key, "error", fields, reply_to, correlation)
            if not first.new and not msg.dup:
                self.replies.reply(rid, f"{key}:{uuid.uuid4().hex}", "error", fields,
                                   reply_to, correlation)
        return rid, None, exc.code

    def _plan(self, command: Command) -> Plan:
        """The command's fields and its plan; whatever goes wrong is an error plan."""
        try:
            check_expired(command)
            check_fields(command)
            return self.planner.plan(command)
        except CodedError as exc:
            return Plan("error", exc.as_reply())
        except (OverflowError, RecursionError) as exc:
            # numbers or nesting beyond what can be computed with, deep in a command
            return Plan("error", InvalidArgument(
                "a number in the command is too large to compute with (give finite values "
                "within ±1.8e308)" if isinstance(exc, OverflowError) else
                "the command is nested too deeply to check (at most ~300 levels)").as_reply())
        except Exception:  # noqa: BLE001  (a bug must still answer the command)
            log.exception("request %s: checking the command failed", command.id)
            return Plan("error", {
                "code": "internal_error",
                "message": "the controller failed while checking this command; see its "
                           "log (it was not run)"})
