"""Retrying what fails for a while: capped exponential backoff with jitter, written once.

:class:`Backoff` gives the delays (first, 2×first, … up to ``cap``, each shortened
by a random factor so that many processes do not retry in step); :func:`retry`
calls a function until it works, sleeping those delays between the tries, for
errors that pass (a Redis restart, a broker away) and never for others.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Backoff", "retry"]

T = TypeVar("T")


class Backoff:
    """Delays of capped exponential backoff with jitter; :meth:`reset` after a success."""

    def __init__(self, first: float = 0.2, cap: float = 10.0, *, jitter: float = 0.5) -> None:
        if not 0 < first <= cap:
            raise ValueError("backoff must have 0 < first <= cap seconds")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.first, self.cap, self.jitter = first, cap, jitter
        self._attempt = 0

    def next(self) -> float:
        """The next delay in seconds: ``min(cap, first * 2**n)`` × U(1 - jitter, 1)."""
        delay = min(self.cap, self.first * 2 ** self._attempt)
        self._attempt = min(self._attempt + 1, 60)
        return delay * random.uniform(1 - self.jitter, 1) if self.jitter else delay

    def reset(self) -> None:
        self._attempt = 0


def retry(
    fn: Callable[[], T], *, retry_on: tuple[type[BaseException], ...], what: str = "",
    first: float = 0.2, cap: float = 10.0, deadline: float | None = None,
    stop: threading.Event | None = None, log: logging.Logger | None = None,
) -> T:
    """``fn()`` until it returns, retrying on ``retry_on`` after a backoff delay.

    Gives up (raises the last error) once ``stop`` is set or the ``deadline``
    (``time.monotonic()``) has passed; logs each retry as a warning on ``log``.
    """
    delays = Backoff(first, cap)
    while True:
        try:
            return fn()
        except retry_on as exc:
            if (stop is not None and stop.is_set()) or (
                    deadline is not None and time.monotonic() > deadline):
                raise
            delay = delays.next()
            if log is not None:
                log.warning("%s failed (%s); retrying in %.1f s", what or "a call", exc, delay)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
