"""A real-time job's link to Redis: stop and ``set`` in, ``data`` replies out.

One pipelined round trip per tick reads the stop flag and the input values
(:meth:`tasks.jobboard.JobBoard.poll`); a thread renews the job's heartbeat every
second, however long a tick computes. Rows go to
the outbox as ``data`` replies; while Redis is away the loop goes on ticking
with the last steering it read, and the rows wait in memory (in order) until
Redis answers again, so a short outage costs no rows and no ticks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import redis

from common.retry import Backoff
from scenario_builder import Poll

from .alarmboard import AlarmBoard
from .jobboard import JobBoard
from .outbox import Outbox

__all__ = ["RedisSteering"]

log = logging.getLogger("twinctl.worker")


class RedisSteering:
    """:class:`scenario_builder.Steering` over Redis for request ``request_id``."""

    def __init__(self, *, board: JobBoard, outbox: Outbox, request_id: str, reply_to: str,
                 correlation: str | None, info: dict[str, Any],
                 alarms: AlarmBoard | None = None) -> None:
        self.board = board
        self.alarms = alarms
        """the controller's live alarms (None: the run sends none)"""
        self._events: deque[dict[str, Any]] = deque()
        self.outbox = outbox
        self.request_id = request_id
        self.reply_to = reply_to
        self.correlation = correlation
        self.info = info
        self.last = Poll()
        self.redis_errors = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._done = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"heartbeat-{request_id}")
        self._beat.start()

    def _heartbeat(self) -> None:
        """Every second while the job runs, however long a tick computes: a job
        whose process dies stops renewing it, and the ingress reports it lost."""
        while True:
            try:
                self.board.heartbeat(self.request_id)
            except redis.RedisError:
                pass  # renewed at the next beat
            if self._done.wait(1.0):
                return

    def poll(self, tick: int, t: float) -> Poll:
        try:
            stop, inputs = self.board.poll(self.request_id)
            self.last = Poll(stop=stop, inputs=inputs)
        except redis.RedisError as exc:
            self.redis_errors += 1
            if self.redis_errors == 1 or self.redis_errors % 1000 == 0:
                log.warning("request %s: steering unavailable (%s); going on with the last "
                            "values", self.request_id, exc)
        return self.last

    def publish(self, chunk: int, t: list[float], values: dict[str, list[float]],
                stats: dict[str, Any]) -> None:
        self._pending.append({"chunk": chunk, "t": t, "values": values, "stats": stats})
        self._drain()
        if not self._pending:
            try:
                self.board.progress(self.request_id, {
                    **self.info, "state": "running", "t": t[-1], "ticks": stats["ticks"],
                    "rows": stats["rows"], "overruns": stats["overruns"],
                    "updated": time.time()})
            except redis.RedisError:
                pass  # only what `jobs` shows

    def alarm(self, events: list[dict[str, Any]]) -> None:
        """The raised and cleared events of this tick: each alarm's state and message,
        in order (kept in memory, in order, while Redis is away)."""
        if self.alarms is None:
            return
        self._events.extend(events)
        self._drain_alarms()

    def _drain_alarms(self) -> None:
        assert self.alarms is not None
        while self._events:
            event = self._events[0]
            try:
                self.alarms.event(self.request_id, event["alarm"], event["event"], **{
                    k: v for k, v in event.items() if k not in ("alarm", "event")})
            except redis.RedisError:
                self.redis_errors += 1
                return
            self._events.popleft()

    def _drain(self) -> None:
        while self._pending:
            try:
                self.outbox.put(controller=self.board.cid, request_id=self.request_id, key="",
                                rtype="data", fields=self._pending[0], topic=self.reply_to,
                                correlation=self.correlation)
            except redis.RedisError:
                self.redis_errors += 1
                return  # kept in order; sent with the next rows
            self._pending.popleft()

    def close(self, timeout: float = 60.0) -> None:
        """Send the rows still waiting, retrying while Redis is away (up to ``timeout``)."""
        self._done.set()
        self._beat.join(5.0)  # no heartbeat after the job's end
        deadline = time.monotonic() + timeout
        delays = Backoff(0.1, 5.0)
        while time.monotonic() < deadline:
            self._drain()
            if self.alarms is not None:
                self._drain_alarms()
                if not self._events:
                    try:  # the run is over: its alarms clear, with a last message each
                        self.alarms.end_source(self.request_id, "the real-time run ended")
                        self.alarms = None
                    except redis.RedisError:
                        pass
            if not self._pending and self.alarms is None:
                break
            time.sleep(delays.next())
        if self._pending:
            log.error("request %s: %d data replies could not be stored", self.request_id,
                      len(self._pending))
        if self.alarms is not None:
            log.error("request %s: its alarms could not be cleared (Redis away)",
                      self.request_id)
