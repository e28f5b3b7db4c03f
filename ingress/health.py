"""The controller's own health as live alarms (source ``controller``), raised and cleared
by the ingress's monitor, and the end of shelves.

========================  ===================================  ============================
alarm                     raised when                          within
========================  ===================================  ============================
``queue_full``            admission refuses: the jobs waiting  0.5 s (the monitor's tick);
                          reach ``TWIN_MAX_QUEUED``            cleared below 90 %
``outbox_filling``        the outbox holds 80 % of             0.5 s; cleared below 70 %
                          ``TWIN_OUTBOX_MAX``
``no_worker``             jobs wait on a queue that no live    12 s (two looks 5 s apart,
                          worker consumes                      Celery's ``active_queues``);
                                                               cleared at the next look
``redis_unreachable``     Redis did not answer for 1 s or      0.5 s after it is back: raised
                          more                                 and cleared, with how long
``realtime_overrun``      a real-time tick later than its      at that tick (its worker;
                          ``realtime.tolerance`` (source: the  source the job); cleared after
                          job)                                 1 s of ticks on time
========================  ===================================  ============================

Each raise or clear is one message on ``{prefix}/{cid}/alarms`` through the outbox
(:class:`tasks.alarmboard.AlarmBoard`); a condition that holds at every tick raises
once (the board changes nothing for an active alarm).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from common.settings import Settings
from tasks import queues
from tasks.alarmboard import CONTROLLER, AlarmBoard

__all__ = ["Health", "REDIS_AWAY_S", "NO_WORKER_LOOKS"]

log = logging.getLogger("twinctl.ingress")

REDIS_AWAY_S = 1.0
"""Redis unreachable for at least this long is reported when it is back."""
NO_WORKER_LOOKS = 2
"""A queue found with jobs and no consumer at this many looks in a row raises ``no_worker``."""


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC")


class Health:
    """The health alarms of one controller."""

    def __init__(self, settings: Settings, board: AlarmBoard) -> None:
        self.settings = settings
        self.board = board
        self._no_consumer: dict[str, int] = {}
        """queue -> looks in a row that found jobs on it and no worker consuming it"""
        self._away_since: float | None = None

    def _set(self, alarm: str, on: bool, *, message: str, priority: str = "high",
             value: float | None = None, limit: float | None = None) -> None:
        fields: dict[str, Any] = {"priority": priority, "message": message}
        if value is not None:
            fields["value"] = value
        if limit is not None:
            fields["limit"] = limit
        state = self.board.event(CONTROLLER, alarm, "raised" if on else "cleared", **fields)
        if state is not None:
            (log.error if on else log.warning)("alarm %s %s: %s", alarm,
                                               "raised" if on else "cleared", message)

    def tick(self, depths: dict[str, int]) -> None:
        """The monitor's tick: ``queue_full`` and ``outbox_filling`` from the depths, and
        the shelves that ended, from one read of the alarms."""
        records = self.board.records()
        self.depths(depths, records)
        self.shelves(records)

    def depths(self, depths: dict[str, int],
               records: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        """``queue_full`` and ``outbox_filling`` from the depths of this tick
        (``records``: the alarms as read this tick, else read now)."""
        s = self.settings
        recs = self.board.records() if records is None else records
        waiting = sum(depths.get(q, 0) for q in queues.ADMITTED)
        active = _active(recs, "queue_full")
        if waiting >= s.max_queued or (active and waiting >= 0.9 * s.max_queued):
            self._set("queue_full", True, value=waiting, limit=s.max_queued, message=(
                f"{waiting} jobs wait in the queues, as many as this controller admits "
                f"(TWIN_MAX_QUEUED = {s.max_queued}): new runs and calls are refused "
                "with limit_exceeded; add workers or wait"))
        elif active:
            self._set("queue_full", False, value=waiting, limit=s.max_queued, message=(
                f"{waiting} jobs wait, below 90 % of TWIN_MAX_QUEUED = {s.max_queued}: "
                "runs and calls are admitted again"))
        outbox, bound = depths.get("outbox", 0), s.outbox_max
        active = _active(recs, "outbox_filling")
        if outbox >= 0.8 * bound or (active and outbox >= 0.7 * bound):
            self._set("outbox_filling", True, value=outbox, limit=round(0.8 * bound),
                      message=(f"{outbox} replies wait in the outbox, {outbox / bound:.0%} of "
                               f"TWIN_OUTBOX_MAX = {bound}: the MQTT broker is away or slow; "
                               "when it is full the oldest data replies are dropped"))
        elif active:
            self._set("outbox_filling", False, value=outbox, limit=round(0.8 * bound),
                      message=f"{outbox} replies wait in the outbox, below 70 % of its bound")

    def _is_active(self, alarm: str) -> bool:
        return bool((self.board.get(CONTROLLER, alarm) or {}).get("active"))

    def redis_failed(self) -> None:
        """Redis did not answer at this tick."""
        if self._away_since is None:
            self._away_since = time.time()

    def redis_answered(self) -> None:
        """Redis answered: report how long it was away, if it was."""
        since, self._away_since = self._away_since, None
        if since is None:
            return
        away = time.time() - since
        if away < REDIS_AWAY_S:
            return
        text = (f"Redis was unreachable for {away:.1f} s (from {_utc(since)} to "
                f"{_utc(since + away)}): commands waited, and replies were kept in memory "
                "or stored when it was back")
        self._set("redis_unreachable", True, value=round(away, 1), message=text)
        self._set("redis_unreachable", False, value=round(away, 1),
                  message=f"Redis answers again (it was away {away:.1f} s)")

    def workers(self, depths: dict[str, int], consumed: set[str] | None) -> None:
        """``no_worker`` from the queues that have jobs and the queues live workers
        consume (None: the workers could not be asked)."""
        if consumed is None:
            return
        waiting = {q: depths.get(q, 0) for q in queues.ALL if depths.get(q, 0) > 0}
        for q in list(self._no_consumer):
            if q not in waiting or q in consumed:
                del self._no_consumer[q]
        for q in waiting:
            if q not in consumed:
                self._no_consumer[q] = self._no_consumer.get(q, 0) + 1
        stuck = sorted(q for q, n in self._no_consumer.items() if n >= NO_WORKER_LOOKS)
        if stuck:
            shown = ", ".join(f"{q} ({waiting[q]} waiting)" for q in stuck)
            self._set("no_worker", True, value=sum(waiting[q] for q in stuck), message=(
                f"jobs wait on {shown} and no live worker consumes "
                f"{'it' if len(stuck) == 1 else 'them'}: start a worker "
                f"(`twinctl worker --queues {','.join(stuck)}`)"))
        elif self._is_active("no_worker"):
            self._set("no_worker", False, value=0, message=(
                "every queue with jobs has a live worker again"))

    def shelves(self, records: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        """Unshelve the alarms whose shelf has ended."""
        for source, alarm in self.board.due_shelves(records=records):
            self.board.event(source, alarm, "unshelved", message="its shelf ended")


def _active(records: dict[tuple[str, str], dict[str, Any]], alarm: str) -> bool:
    return bool(records.get((CONTROLLER, alarm), {}).get("active"))


def consumed_queues(app: Any, timeout: float = 1.0) -> set[str] | None:
    """The queues some live worker consumes (Celery's ``active_queues`` broadcast), or
    None if no reply could be had."""
    try:
        replies = app.control.inspect(timeout=timeout).active_queues()
    except Exception:  # noqa: BLE001  (kombu/redis: asked again at the next look)
        return None
    if replies is None:
        return set()
    return {str(q.get("name")) for qs in replies.values() for q in (qs or [])
            if isinstance(q, dict)}
