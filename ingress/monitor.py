"""The ingress's watch: queue depths, the retained status, and jobs lost with a worker.

Twice a second it reads the depth of every queue and of the outbox (one pipelined
round trip) for admission and the status, answers a running real-time job whose
heartbeat stopped (its worker died), gives a running batch job whose worker's lease
ran out back to its queue (when that worker does not answer a Celery ping), and
publishes the retained status again when the depths changed (at most every 5 s).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from common import __version__
from common.settings import Settings
from instances import InstanceLibrary
from modellib.plugins import Loaded, model_set_digest
from tasks import queues
from tasks.alarmboard import AlarmBoard
from tasks.jobboard import JobBoard
from tasks.outbox import dead_letter_stream, outbox_stream
from tasks.replies import encode_json, timestamp

from .admission import Admission
from .health import Health, consumed_queues
from .orphans import Orphans, held_tag
from .policy import Policy
from .replies import Replies
from .vanished import Vanished

__all__ = ["Monitor", "status_message", "restarts_key"]

log = logging.getLogger("twinctl.ingress")


def restarts_key(controller: str) -> str:
    """Hash part name -> how often ``twinctl up`` restarted it (since it started)."""
    return f"twin:{controller}:restarts"


def status_message(settings: Settings, state: str, *, protocol: str = "",
                   policy: Policy | None = None, library: InstanceLibrary | None = None,
                   depths: dict[str, int] | None = None,
                   restarts: dict[str, int] | None = None,
                   plugins: Loaded | None = None) -> str:
    """The retained status: ``online`` with this controller's capabilities, or the
    ``offline`` of the last will and of a clean stop."""
    fields: dict[str, Any] = {"state": state, "controller": settings.controller_id,
                              "group": settings.group, "ts": timestamp()}
    if state == "online":
        assert policy is not None and library is not None
        depths = depths or {}
        fields.update(
            version=__version__, protocol=protocol,
            commands=policy.allowed_commands(), modes=policy.allowed_modes(),
            models=policy.allowed_models(),
            instances=policy.instance_ids(library.describe()),
            queues={q: depths.get(q, 0) for q in queues.ALL},
            outbox=depths.get("outbox", 0),
            dead_letters=depths.get("dead_letters", 0),
            restarts=dict(restarts or {}),
            models_digest=model_set_digest(),
            skipped=plugins.describe() if plugins is not None else [],
        )
    return encode_json(fields)


class Monitor:
    def __init__(self, settings: Settings, client: redis.Redis, board: JobBoard,
                 admission: Admission, replies: Replies, stop: threading.Event,
                 publish_status: Callable[[], None], *,
                 alarms: AlarmBoard | None = None) -> None:
        self.settings = settings
        self.redis = client
        self.board = board
        self.admission = admission
        self.replies = replies
        self.stop = stop
        self.publish_status = publish_status
        self.orphans = Orphans(client)
        self.vanished = Vanished(client, board)
        self.alarms = alarms
        self.health = Health(settings, alarms) if alarms is not None else None
        self.restarts: dict[str, int] = {}
        """how often ``twinctl up`` restarted each part (what the status says)"""
        self._thread = threading.Thread(target=self._loop, name="ingress-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()
        threading.Thread(target=self._sweep_loop, name="ingress-orphans", daemon=True).start()

    def _sweep_loop(self) -> None:
        """The sweeps of messages no live worker holds (:mod:`ingress.orphans`) and of
        jobs whose message vanished (:mod:`ingress.vanished`), in a thread of their own:
        the broadcast to the workers (1 s) holds up nothing else."""
        while not self.stop.wait(self.orphans.every_s):
            for what, sweep in (("orphaned jobs", self.orphans.sweep),
                                ("vanished jobs", self.vanished.sweep),
                                ("the workers of the queues", self._look_for_workers)):
                try:
                    sweep()
                except redis.RedisError as exc:
                    log.debug("%s not checked: %s", what, exc)
                except Exception:  # noqa: BLE001  (Celery/kombu: tried again next time)
                    log.exception("%s not checked", what)

    def _loop(self) -> None:
        published: dict[str, int] = {}
        last = 0.0
        while not self.stop.wait(0.5):
            try:
                pipe = self.redis.pipeline(transaction=False)
                for q in queues.ALL:
                    pipe.llen(q)
                pipe.xlen(outbox_stream(self.settings.controller_id))
                pipe.xlen(dead_letter_stream(self.settings.controller_id))
                pipe.hgetall(restarts_key(self.settings.controller_id))
                *counts, restarted = pipe.execute()
            except redis.RedisError as exc:
                log.debug("queue depths unavailable: %s", exc)
                if self.health is not None:
                    self.health.redis_failed()
                continue
            depths = {**dict(zip(queues.ALL, counts[:-2], strict=True)), "outbox": counts[-2],
                      "dead_letters": counts[-1]}
            self.admission.depths = depths
            self.restarts = {k.decode(): int(v) for k, v in sorted(restarted.items())}
            try:
                self.reap_lost()
            except redis.RedisError as exc:
                log.debug("lost jobs not checked: %s", exc)
            self._health(depths)
            now = time.monotonic()
            seen = {**depths, **{f"restarts:{k}": v for k, v in self.restarts.items()}}
            if seen != published and now - last >= 5.0:
                self.publish_status()
                published, last = seen, now

    def _health(self, depths: dict[str, int]) -> None:
        """The health alarms of this tick, and the shelves that ended."""
        if self.health is None:
            return
        try:
            self.health.redis_answered()
            self.health.tick(depths)
        except redis.RedisError as exc:
            log.debug("health alarms not checked: %s", exc)

    def _look_for_workers(self) -> None:
        """``no_worker``: asks the workers which queues they consume, when jobs wait."""
        if self.health is None:
            return
        depths = dict(self.admission.depths)
        if not any(depths.get(q, 0) for q in queues.ALL) and \
                not self.health.board.get("controller", "no_worker"):
            self.health.workers(depths, set())
            return
        from tasks.app import app  # (Celery's app: imported with the tasks already)

        self.health.workers(depths, consumed_queues(app))

    def reap_lost(self) -> None:
        """A running real-time job whose heartbeat stopped: its worker died. Answer it
        (``runtime_error``) instead of leaving the orchestrator waiting. A running
        batch job whose lease ran out: :meth:`_give_back`."""
        for rid in self.board.lost():
            info = self.board.get(rid)
            if info is not None and info.get("task") != queues.REALTIME_RUN:
                try:
                    self._give_back(rid, info)
                except redis.RedisError:
                    raise
                except Exception:  # noqa: BLE001  (Celery/kombu: tried again next time)
                    log.exception("request %s: could not give the job back to its queue", rid)
                continue
            if info is not None:
                at = f" at t = {info['t']:g} s" if isinstance(info.get("t"), int | float) else ""
                self.replies.reply(rid, "final", "error", {
                    "code": "runtime_error",
                    "message": f"the worker running this real-time job ({info.get('worker')}) "
                               f"stopped answering{at}; the run is over, its rows so far were "
                               "sent: send a new run to go on"},
                    info.get("reply_to"), None, correlation_hex=info.get("correlation"))
                log.error("request %s: real-time job lost with its worker %s", rid,
                          info.get("worker"))
                if self.alarms is not None:
                    self.alarms.end_source(rid, "the real-time run was lost with its worker")
            self.board.end(rid)

    def _give_back(self, rid: str, info: dict[str, Any]) -> None:
        """A batch job whose worker stopped renewing its lease. If that worker still
        answers a Celery ping, it only could not reach Redis for a while: its lease is
        renewed for it. Otherwise its host is gone: the job's Celery message is put
        back in its queue (kombu's own ``restore_by_tag``, what Redis's visibility
        timeout would do ~22 minutes later) and another worker runs it; its replies
        are stored once (logical keys)."""
        from tasks.app import app  # (Celery's app: imported with the tasks already)

        worker = str(info.get("worker") or "")
        if worker and app.control.ping(destination=[worker], timeout=1.0):
            self.board.lease(rid)
            return
        tag = held_tag(self.redis, str(info.get("celery_id") or ""))
        if tag is not None:
            with app.connection_for_write() as conn:
                conn.default_channel.qos.restore_by_tag(tag)
        self.board.requeued(rid, info)
        log.error("request %s: its worker %s stopped renewing its lease and does not answer; "
                  "the job is queued again%s", rid, worker or "?",
                  "" if tag else " (no delivery tag: Redis's visibility timeout restores it)")
