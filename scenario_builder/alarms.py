"""Alarm rules on a scenario's outputs, and the raised/cleared events they find.

A rule (``PROTOCOL.md``, section Alarms) watches one value, ``on`` (an output of the
run or a ``post`` name), with exactly one condition:

- ``high`` / ``low``: the value above / below a limit;
- ``rate``: the absolute rate of change per second above a limit (from consecutive
  samples);
- ``deviation`` with ``from`` (another output): ``|on - from|`` above a limit;

and optionally ``deadband`` (to clear, the value must come back inside the limit by
this much: below ``high - deadband``, above ``low + deadband``), ``on_delay`` /
``off_delay`` (seconds of simulated time the condition must hold before the alarm
raises / clears) and ``priority``. Limits are in the unit the watched output is
reported in (the scenario's ``units``, else the port's declared unit).

:class:`Detector` turns samples into events, one sample at a time (a dynamic run's
rows, a real-time run's ticks): between two samples the value is taken as linear, so
a crossing is located between the rows where it happens, not at the next row; a
delayed event happens ``on_delay`` after the crossing if the condition held all
along. No I/O here: the batch runs put the events in their ``result``, the real-time
loop hands them to its steering.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modellib.errors import InvalidArgument, did_you_mean

__all__ = ["AlarmRule", "Detector", "parse_alarms", "batch_events", "PRIORITIES", "CONDITIONS"]

PRIORITIES = ("low", "medium", "high", "urgent")
CONDITIONS = ("high", "low", "rate", "deviation")
_FIELDS = frozenset({"name", "on", "from", *CONDITIONS, "deadband", "on_delay", "off_delay",
                     "priority"})


@dataclass(frozen=True)
class AlarmRule:
    """One checked rule: ``kind`` is one of :data:`CONDITIONS`, ``limit`` its number."""

    name: str
    on: str
    kind: str
    limit: float
    source: str | None = None
    """``from`` of a deviation rule"""
    deadband: float = 0.0
    on_delay: float = 0.0
    off_delay: float = 0.0
    priority: str = "medium"

    @property
    def sign(self) -> float:
        """+1 when the alarm is above its limit (high, rate, deviation), -1 below (low)."""
        return -1.0 if self.kind == "low" else 1.0

    @property
    def clear_level(self) -> float:
        """The level the value must come back past to clear (the deadband applied)."""
        return self.limit - self.sign * self.deadband

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "on": self.on, self.kind: self.limit,
                                "priority": self.priority}
        if self.source is not None:
            data["from"] = self.source
        extra = {"deadband": self.deadband, "on_delay": self.on_delay,
                 "off_delay": self.off_delay}
        return {**data, **{k: v for k, v in extra.items() if v}}

    def describe(self, value: float, unit: str = "", event: str = "raised") -> str:
        """What a person reads about the event at ``value`` (``unit``: the watched
        output's), e.g. ``tank.level 1.8004 m above 1.8 m``."""
        u = f" {unit}" if unit and unit not in ("1", "any") else ""
        per = "/s" if self.kind == "rate" else ""
        raised = event == "raised"
        level = self.limit if raised else self.clear_level
        if self.kind == "rate":
            what = f"{self.on} changing at {value:.6g}{u}{per}"
        elif self.kind == "deviation":
            what = f"{self.on} {value:.6g}{u} away from {self.source}"
        else:
            what = f"{self.on} {value:.6g}{u}"
        above = (self.kind != "low") == raised
        side = ("above " if above else "below ") if raised else \
            ("back above " if above else "back below ")
        if self.kind == "rate":
            side = "faster than " if raised else "back under "
        elif self.kind == "deviation":
            side = "by more than " if raised else "by less than "
        band = f" (limit {self.limit:g}{u}{per}, deadband {self.deadband:g}{u}{per})" \
            if not raised and self.deadband else ""
        return f"{what} {side}{level:g}{u}{per}{band}"


def _number(rule: Mapping[str, Any], key: str, where: str, *, minimum: float | None = None
            ) -> float:
    value = rule[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{where}.{key} must be a finite number", path=f"{where}.{key}")
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{where}.{key} must be >= {minimum:g}, got {value:g}",
                              path=f"{where}.{key}")
    return float(value)


def parse_alarms(data: Sequence[Any], known: Sequence[str], *, path: str = "scenario.alarms"
                 ) -> list[AlarmRule]:
    """Check the scenario's ``alarms`` against the values the run has (``known``: its
    outputs and ``post`` names); the rules, or ``invalid_argument`` with the path of
    the first problem."""
    rules: list[AlarmRule] = []
    names: set[str] = set()
    for i, rule in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(rule, dict):
            raise InvalidArgument(f"{where} must be an object {{\"name\", \"on\", and one of "
                                  "high, low, rate or deviation}", path=where)
        unknown = sorted(set(rule) - _FIELDS)
        if unknown:
            raise InvalidArgument(f"{where}: unknown field {unknown[0]!r}"
                                  f"{did_you_mean(unknown[0], sorted(_FIELDS))}",
                                  path=f"{where}.{unknown[0]}")
        name = rule.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise InvalidArgument(f"{where}.name must be a name of 1-64 characters",
                                  path=f"{where}.name")
        if name in names:
            raise InvalidArgument(f"{where}.name: {name!r} names two rules; each alarm "
                                  "needs its own name", path=f"{where}.name")
        names.add(name)
        for key in ("on", "from"):
            if key in rule and rule[key] not in known:
                value = rule[key]
                raise InvalidArgument(
                    f"{where}.{key}: {value!r} is not an output of the run or a post name"
                    f"{did_you_mean(str(value), list(known))}; an alarm watches one of: "
                    f"{', '.join(known) or 'none'}", path=f"{where}.{key}")
        if "on" not in rule:
            raise InvalidArgument(f"{where}.on is required: the output (or post name) the "
                                  "alarm watches", path=f"{where}.on")
        kinds = [k for k in CONDITIONS if k in rule]
        if len(kinds) != 1:
            raise InvalidArgument(
                f"{where} needs exactly one condition of high, low, rate or deviation, not "
                + (" and ".join(kinds) if kinds else "none"),
                path=f"{where}.{kinds[1]}" if len(kinds) > 1 else where)
        kind = kinds[0]
        source = rule.get("from")
        if kind == "deviation" and source is None:
            raise InvalidArgument(f"{where}.from is required with deviation: the output the "
                                  "value is compared with", path=f"{where}.from")
        if kind != "deviation" and source is not None:
            raise InvalidArgument(f"{where}.from goes with deviation only", path=f"{where}.from")
        if source == rule["on"]:
            raise InvalidArgument(f"{where}.from must differ from on", path=f"{where}.from")
        limit = _number(rule, kind, where, minimum=0.0 if kind in ("rate", "deviation")
                        else None)
        extra = {k: _number(rule, k, where, minimum=0.0)
                 for k in ("deadband", "on_delay", "off_delay") if k in rule}
        priority = rule.get("priority", "medium")
        if priority not in PRIORITIES:
            raise InvalidArgument(f"{where}.priority must be one of {', '.join(PRIORITIES)}",
                                  path=f"{where}.priority")
        if kind in ("rate", "deviation") and extra.get("deadband", 0.0) > limit:
            raise InvalidArgument(f"{where}.deadband ({extra['deadband']:g}) must not exceed "
                                  f"the {kind} limit ({limit:g})", path=f"{where}.deadband")
        rules.append(AlarmRule(name, str(rule["on"]), kind, limit,
                               None if source is None else str(source), priority=priority,
                               **extra))
    return rules


class Detector:
    """The events of one rule from its samples, fed in time order (:meth:`feed`)."""

    def __init__(self, rule: AlarmRule) -> None:
        self.rule = rule
        self.active = False
        self._since: float | None = None
        """when the condition of the next event (raise when inactive, clear when
        active) began to hold, if it holds"""
        self._prev: tuple[float, float] | None = None
        self._prev_v: tuple[float, float] | None = None
        """(t, watched value) of the last sample: for a rate"""

    def watched(self, t: float, value: float, other: float | None = None) -> float | None:
        """The quantity the rule compares with its limit, at this sample."""
        kind = self.rule.kind
        if kind == "deviation":
            return None if other is None else abs(value - other)
        if kind == "rate":
            prev, self._prev_v = self._prev_v, (t, value)
            if prev is None or t <= prev[0]:
                return None
            return abs(value - prev[1]) / (t - prev[0])
        return value

    def _holds(self, x: float) -> bool:
        r = self.rule
        if self.active:
            return r.sign * (x - r.clear_level) < 0
        return r.sign * (x - r.limit) > 0

    def _level(self) -> float:
        return self.rule.clear_level if self.active else self.rule.limit

    def feed(self, t: float, value: float, other: float | None = None) -> list[dict[str, Any]]:
        """The events up to time ``t`` given the next sample (``other``: the ``from``
        value of a deviation rule). Each is ``{"alarm", "event", "t", "value", "limit"}``."""
        x = self.watched(t, value, other)
        if x is None or not math.isfinite(x):
            return []
        events: list[dict[str, Any]] = []
        prev = self._prev
        self._prev = (t, x)
        if prev is None:
            if self._holds(x):
                self._since = t
            self._segment(t, x, t, x, events)
        else:
            self._segment(prev[0], prev[1], t, x, events)
        return events

    def _fire(self, t: float, x: float, events: list[dict[str, Any]]) -> None:
        self.active = not self.active
        self._since = None
        events.append({"alarm": self.rule.name, "event": "raised" if self.active else "cleared",
                       "t": t, "value": x, "limit": self.rule.limit})

    def _segment(self, t0: float, x0: float, t1: float, x1: float,
                 events: list[dict[str, Any]]) -> None:
        """Walk [t0, t1] (the value linear between its ends): crossings, delays, events."""
        def at(t: float) -> float:
            return x0 if t1 == t0 else x0 + (x1 - x0) * (t - t0) / (t1 - t0)

        def crossing(level: float, ta: float, xa: float) -> float:
            return ta if x1 == xa else ta + (level - xa) / (x1 - xa) * (t1 - ta)

        tc, xc = t0, x0
        fired = False
        for _ in range(8):  # a segment holds a few transitions at most
            delay = self.rule.off_delay if self.active else self.rule.on_delay
            if self._since is None:
                if self._holds(xc) and not fired:  # (just fired: xc sits on the level)
                    self._since = tc
                elif self._holds(x1):
                    self._since = crossing(self._level(), tc, xc)
                else:
                    return
            due = self._since + delay
            if self._holds(x1):
                if due > t1:
                    return
                self._fire(due, at(due), events)
            else:  # it stops holding inside the segment
                end = crossing(self._level(), tc, xc)
                if due <= end:
                    self._fire(due, at(due), events)
                else:
                    self._since = None
                    tc, xc = end, self._level()
                    fired = True  # (xc sits on the level: look for the next crossing)
                    continue
            tc, xc, fired = due, at(due), True


def batch_events(rules: Sequence[AlarmRule], t: Sequence[float] | np.ndarray | None,
                 values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of ``rules`` over a run's result: ``t`` (None for a static run, one
    sample) and ``values`` (name -> a series, or a number). In time order."""
    events: list[dict[str, Any]] = []
    for rule in rules:
        det = Detector(rule)
        on, other = values.get(rule.on), values.get(rule.source) if rule.source else None
        if t is None or not _series(on, len(t)):
            at = 0.0 if t is None or not len(t) else float(t[-1])
            x = _scalar(on)
            if x is not None and (other is None or _scalar(other) is not None):
                det.rule = AlarmRule(**{**asdict(rule), "on_delay": 0.0})  # (steady: it holds)
                events += det.feed(at, x, _scalar(other))
            continue
        series = np.asarray(on, dtype=float)
        ref = np.asarray(other, dtype=float) if _series(other, len(t)) else None
        for k, tk in enumerate(t):
            events += det.feed(float(tk), float(series[k]),
                               None if ref is None else float(ref[k]))
    events.sort(key=lambda e: (e["t"], e["alarm"]))
    return events


def _series(value: Any, n: int) -> bool:
    return isinstance(value, list | np.ndarray) and len(value) == n and n > 0


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        return None
    return float(value) if math.isfinite(value) else None
