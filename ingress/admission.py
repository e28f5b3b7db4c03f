"""Admission: refuse new work at once, with a reason, before the controller is swamped.

Two limits: the jobs waiting in all the queues, real-time included
(``TWIN_MAX_QUEUED``, read from the queue depths the monitor refreshes twice a
second), and the jobs one orchestrator
has queued or running (``TWIN_MAX_JOBS_PER_CLIENT``, counted in Redis by the job
board). Both are ``limit_exceeded``; neither costs the other clients anything.
"""

from __future__ import annotations

import logging
import time

from common.settings import Settings
from tasks import queues
from tasks.jobboard import JobBoard
from tasks.outbox import Outbox

from .commands import Command
from .errors import LimitExceeded, Overloaded
from .replies import Durable

__all__ = ["Admission", "LOST_AFTER_S"]

log = logging.getLogger("twinctl.ingress")

LOST_AFTER_S = 60.0
"""A job counted for an orchestrator may be found lost only this long after it was queued."""


class Admission:
    """Whether a new ``run`` or ``call`` may be queued now."""

    def __init__(self, settings: Settings, board: JobBoard, outbox: Outbox,
                 durable: Durable) -> None:
        self.settings = settings
        self.board = board
        self.outbox = outbox
        self.durable = durable
        self.depths: dict[str, int] = {}
        """jobs waiting per queue, and replies waiting in the outbox (the monitor's)"""

    def admit(self) -> None:
        """``limit_exceeded`` when too many jobs wait, in any queue (real-time runs too:
        an open-ended one never ends), instead of no answer."""
        waiting = sum(self.depths.get(q, 0) for q in queues.ADMITTED)
        if waiting >= self.settings.max_queued:
            raise Overloaded(
                f"this controller has {waiting} jobs waiting (its limit is "
                f"{self.settings.max_queued}); send the command again later",
                queued=waiting,
            )

    def check_client(self, command: Command) -> None:
        """``limit_exceeded`` when the orchestrator already has TWIN_MAX_JOBS_PER_CLIENT
        jobs queued or running here."""
        limit = self.settings.max_jobs_per_client
        if not limit:
            return
        client = command.client
        jobs = self.durable("counting the jobs", lambda: self.board.client_jobs(client))
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

    def count(self, command: Command) -> None:
        """The job of ``command`` counts for its orchestrator until it ends."""
        if self.settings.max_jobs_per_client:
            self.durable("counting the job", lambda: self.board.add_client_job(
                command.client, command.id))

    def _forget_finished(self, client: str, jobs: dict[str, float]) -> dict[str, float]:
        """Jobs whose final reply is stored are over, even if their worker has not yet
        (or never) ended them: an orchestrator may send the next job as soon as it has
        the last one's result."""
        rids = list(jobs)
        finished = self.durable("reading the jobs", lambda: self.outbox.finished(
            self.settings.controller_id, rids))
        done = [rid for rid, final in zip(rids, finished, strict=True) if final]
        if done:
            self.durable("forgetting ended jobs",
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
        known = self.durable("reading the jobs", self.board.entries)
        lost = [rid for rid in old if rid not in known]
        if lost:
            log.warning("orchestrator %s: %d job(s) counted but neither running nor "
                        "waiting (lost with a worker); no longer counted", client, len(lost))
            self.durable("forgetting lost jobs",
                         lambda: self.board.drop_client_jobs(client, lost))
        return {rid: at for rid, at in jobs.items() if rid not in lost}
