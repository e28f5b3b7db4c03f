"""The ingress's replies: every one stored in the Redis outbox, retried while Redis is away.

:class:`Replies` knows where a request's replies go (its response topic, else
``{prefix}/{cid}/reply/{id}``) and stores them under their logical keys, so a
command handled twice stores each reply once. :class:`Durable` runs a Redis or
Celery call until it works: a command is never dropped because Redis restarted.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import kombu.exceptions
import redis

from common.retry import retry
from common.settings import Settings
from modellib.errors import CodedError
from tasks.outbox import First, Outbox, Stored
from tasks.replies import timestamp

from .commands import Command
from .errors import DuplicateId

__all__ = ["Durable", "Replies", "AWAY"]

log = logging.getLogger("twinctl.ingress")
T = TypeVar("T")

AWAY = (redis.ConnectionError, redis.TimeoutError, OSError, kombu.exceptions.OperationalError)
"""Errors of a Redis or Celery call that pass when Redis is back."""


class Durable:
    """``durable(what, fn)``: ``fn()`` until it works (capped, jittered backoff), unless the
    ingress is stopping."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def __call__(self, what: str, fn: Callable[[], T]) -> T:
        return retry(fn, retry_on=AWAY, what=what, stop=self.stop, log=log)


class Replies:
    """Stores the replies the ingress itself makes (errors, acks, pongs, results)."""

    def __init__(self, settings: Settings, outbox: Outbox, durable: Durable) -> None:
        self.settings = settings
        self.cid = settings.controller_id
        self.outbox = outbox
        self.durable = durable

    def topic(self, rid: str, reply_to: str | None) -> str:
        return reply_to or self.settings.reply_topic(rid)

    def reply(self, rid: str, key: str, rtype: str, fields: dict[str, Any],
              reply_to: str | None, correlation: bytes | None, *,
              correlation_hex: str | None = None) -> Stored:
        corr = correlation.hex() if correlation else correlation_hex
        return self.durable("storing a reply", lambda: self.outbox.put(
            controller=self.cid, request_id=rid, key=key, rtype=rtype, fields=fields,
            topic=self.topic(rid, reply_to), correlation=corr))

    def final(self, command: Command, rtype: str, fields: dict[str, Any]) -> None:
        """The request's last reply (logical key ``final``)."""
        self.reply(command.id, "final", rtype, fields, command.reply_to, command.correlation)

    def first(self, command: Command, key: str, rtype: str, fields: dict[str, Any], *,
              job: tuple[str, str, str] | None = None, spec: str = "") -> First:
        """The first reply and the duplicate-id guard in one round trip, with the entry
        of the job it queues and what is kept to send that job again
        (:meth:`tasks.outbox.Outbox.put_first`); its retries after
        Redis went away mid-call carry the same token, so they store nothing twice."""
        token = f"{timestamp()} {uuid.uuid4().hex}"
        return self.durable("storing the first reply", lambda: self.outbox.put_first(
            controller=self.cid, request_id=command.id, key=key, rtype=rtype, fields=fields,
            topic=self.topic(command.id, command.reply_to),
            duplicate=duplicate_error(command.id), redelivered=command.dup,
            correlation=command.correlation.hex() if command.correlation else None,
            token=token, job=job, spec=spec))

    def error_without_id(self, exc: CodedError, *, claimed_id: str | None = None) -> None:
        """An error that no request id can carry: on ``{prefix}/{cid}/errors``;
        ``claimed_id`` is the id a command whose bytes are not authentic claims."""
        fields = {"controller": self.cid, "type": "error", **exc.as_reply(),
                  **({"claimed_id": claimed_id} if claimed_id else {}), "ts": timestamp()}
        self.durable("storing an error", lambda: self.outbox.put_plain(
            controller=self.cid, topic=self.settings.topic("errors"), fields=fields))
        log.info("command without a usable id refused: %s", json.dumps(exc.as_reply()))


def duplicate_error(rid: str) -> dict[str, Any]:
    return DuplicateId(
        f"request id {rid!r} was already used on this controller; "
        "ids must be unique for 24 h: send the command again with a new id",
        path="id",
    ).as_reply()
