"""The names of the Celery queues and tasks, and the margins of their time limits.

Static runs and function calls go to :data:`SHORT`, dynamic runs to :data:`LONG`,
the chunks of sweeps to :data:`SWEEP`, real-time runs to :data:`REALTIME` (a worker
of their own, so batch work never delays a tick). Every name is written here once;
the ingress, the workers, the stack runner and the Celery configuration import it.
"""

from __future__ import annotations

__all__ = ["SHORT", "LONG", "SWEEP", "REALTIME", "BATCH", "ALL", "ADMITTED", "RUN", "CALL",
           "SWEEP_CHUNK", "REALTIME_RUN", "TASKS", "HARD_MARGIN_S", "OPEN_ENDED_S",
           "SUPERVISOR_ENV"]

SHORT = "twin.short"
"""static runs and function calls: milliseconds each"""
LONG = "twin.long"
"""dynamic runs: seconds to minutes each"""
SWEEP = "twin.sweep"
"""the chunks of sweeps: a queue of their own, so that a sweep of many chunks takes its
turn with the other batch queues (a worker serves its queues in rotation) instead of
standing in front of every dynamic run queued after it"""
REALTIME = "twin.realtime"
"""real-time runs: as long as the plant lives, one worker slot each"""
BATCH = (SHORT, LONG, SWEEP)
"""the queues the batch workers take"""
ALL = (SHORT, LONG, SWEEP, REALTIME)
ADMITTED = (SHORT, LONG, REALTIME)
"""the queues whose depth admission counts (TWIN_MAX_QUEUED): a sweep is one job,
bounded by TWIN_MAX_CASES, however many chunks it is queued as"""

RUN = "twin.run"
CALL = "twin.call"
SWEEP_CHUNK = "twin.sweep"
REALTIME_RUN = "twin.realtime"
TASKS = (RUN, CALL, SWEEP_CHUNK, REALTIME_RUN)
"""the task names: what Flower shows, what a queued message carries"""

HARD_MARGIN_S = 30
"""The hard time limit of every task is its soft one plus this: a job that ignores its
soft limit is killed then (and answered ``timeout``)."""

OPEN_ENDED_S = 10 * 365 * 86_400
"""The "time limit" of an open-ended real-time run: none in practice (Celery needs a number)."""

SUPERVISOR_ENV = "TWIN_SUPERVISOR_PID"
"""Set by ``twinctl up`` for the workers it starts: its pid. A worker whose parent is no
longer that process stops itself (tasks/app.py): no worker outlives ``twinctl up``."""
