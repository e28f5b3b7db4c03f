"""The scheduling priority of a real-time loop while it runs.

A tick that wakes while batch work holds both cores waits for the scheduler; a
thread in the ``SCHED_FIFO`` class runs the moment it wakes. The loop sleeps
most of each period, so it takes little CPU, and the kernel keeps 5 % of every
second for other work in any case (``sched_rt_runtime_us``). Where the process
may not (no root, no ``CAP_SYS_NICE``), the loop runs at normal priority and its
``stats.priority`` says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from common.settings import read

__all__ = ["realtime_priority", "DEFAULT_PRIORITY"]

log = logging.getLogger("twinctl.worker")

DEFAULT_PRIORITY: int = read("TWIN_REALTIME_PRIORITY", {})
"""``SCHED_FIFO`` priority of a real-time loop (1-99; ``TWIN_REALTIME_PRIORITY``, 0: off)."""


@contextmanager
def realtime_priority(priority: int | None = None) -> Iterator[str]:
    """Run the calling thread at ``SCHED_FIFO`` ``priority`` inside the block; yields
    what it got: ``"fifo:<priority>"`` or ``"normal"``."""
    if priority is None:
        priority = int(read("TWIN_REALTIME_PRIORITY"))
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        yield "normal"
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(min(priority, 99)))
    except OSError as exc:
        log.info("real-time loop at normal priority (SCHED_FIFO refused: %s)", exc.strerror)
        yield "normal"
        return
    try:
        yield f"fifo:{min(priority, 99)}"
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
