"""The deployment's size limits on one command, checked before any work is queued.

- ``TWIN_MAX_ELEMENTS``: elements of one scenario (path ``scenario.elements``);
- ``TWIN_MAX_STEPS``: output rows of a dynamic run, ticks of a real-time run with a
  ``time.stop`` (path ``scenario.time.step``), and the solver steps that
  ``solver.max_step`` imposes on such a run, ``(time.stop - time.start) / max_step``
  (path ``scenario.solver.max_step``);
- ``TWIN_MAX_REALTIME_S``: the wall-clock length of a real-time run with a ``time.stop``
  (path ``scenario.time.stop``; an open-ended one is stopped by its worker then);
- ``TWIN_MAX_SERIES``: points of one series: an input ``{"t": [...], "v": [...]}``,
  a function argument array (``args.x``, ``scenario.post[i].args.x``), a template
  argument (path: that series).

Each is ``limit_exceeded`` with the limit in the reply (``limit``). The elements and
series are counted on the command as sent (cheap, before the scenario is built);
the steps on the checked scenario. The jobs of one orchestrator
(``TWIN_MAX_JOBS_PER_CLIENT``) are counted in Redis by :class:`tasks.jobboard.JobBoard`.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from scenario_builder.graph import Scenario
from scenario_builder.timegrid import row_count, tick_count

from .errors import LimitExceeded

__all__ = ["check_elements", "check_series", "check_args", "check_steps", "points",
           "check_result_bytes", "chunk_rows", "check_instance", "BYTES_PER_VALUE",
           "check_max_step", "solver_steps", "check_realtime_length", "sweep_chunk_size",
           "sweep_table_rows"]

SWEEP_SPREAD = 16
"""A sweep of at least this many cases is cut into at least this many chunks, so that
the load spreads over the workers (and the last chunk to end is a small share)."""
SWEEP_CHUNK_S = 1.0
"""The most work one chunk is given, in seconds (estimated): a ``stop`` or a lost worker
costs at most about this much, and the load spreads."""
SWEEP_MIN_CHUNK_S = 0.1
"""The least work one chunk is given (estimated; unless it is one case): the per-task
cost (a few ms) stays small beside it."""
SWEEP_MAX_CHUNK = 500
SWEEP_MAX_CHUNKS = 256
"""A sweep is queued as at most this many chunks (its cases are then shared out, however
long each is): the queue holds a copy of the scenario per chunk, and the ingress looks
for the messages of a sweep's unfinished chunks every few seconds
(:mod:`ingress.vanished`)."""
SECONDS_PER_VALUE = 25e-6
"""A rough cost of one element's value at one output row (the estimate only sizes
chunks)."""


def check_elements(scenario: Any, limit: int, path: str = "scenario") -> None:
    elements = scenario.get("elements") if isinstance(scenario, dict) else None
    if isinstance(elements, dict) and len(elements) > limit:
        raise LimitExceeded(
            f"the scenario has {len(elements)} elements; this controller runs at most "
            f"{limit} in one scenario (TWIN_MAX_ELEMENTS): split it into smaller scenarios",
            path=f"{path}.elements", limit=limit)


def points(value: Any, limit: int) -> int:
    """The numbers in ``value`` (nested lists counted through), stopping once above
    ``limit`` (so a huge value costs no more than the limit)."""
    if not isinstance(value, list):
        return 0
    count, stack = 0, [value]
    while stack and count <= limit:
        items = stack.pop()
        if list not in set(map(type, items)):  # a flat list (the usual): counted at C speed
            count += len(items)
            continue
        for item in items:
            if isinstance(item, list):
                stack.append(item)
            else:
                count += 1
    return count


def _too_long(n: int, limit: int, path: str) -> LimitExceeded:
    shown = f"{n}" if n <= limit + 1 else f"more than {limit}"
    return LimitExceeded(
        f"{path} has {shown} points; this controller takes at most {limit} in one series "
        "(TWIN_MAX_SERIES): resample it more coarsely, or split the work into several "
        "commands", path=path, limit=limit)


def check_args(args: Any, limit: int, path: str = "args") -> None:
    """Every array among a call's (or a template's) arguments."""
    if not isinstance(args, dict):
        return
    for name, value in args.items():
        where = f"{path}.{name}"
        if isinstance(value, dict):  # a series {"t", "v"} (template series arguments)
            for key in ("t", "v"):
                n = points(value.get(key), limit)
                if n > limit:
                    raise _too_long(n, limit, where)
        elif (n := points(value, limit)) > limit:
            raise _too_long(n, limit, where)


def check_series(scenario: Any, limit: int, path: str = "scenario") -> None:
    """The input series and the array arguments of ``post`` of a scenario as sent."""
    if not isinstance(scenario, dict):
        return
    inputs = scenario.get("inputs")
    if isinstance(inputs, dict):
        for port, value in inputs.items():
            if isinstance(value, dict):
                for key in ("t", "v"):
                    n = points(value.get(key), limit)
                    if n > limit:
                        raise _too_long(n, limit, f"{path}.inputs.{port}")
    post = scenario.get("post")
    if isinstance(post, list):
        for i, call in enumerate(post):
            if isinstance(call, dict):
                check_args(call.get("args"), limit, f"{path}.post[{i}].args")


BYTES_PER_VALUE = 24
"""What one number of a result costs in its JSON reply, at most (``-1.2345678901234567,``)."""


def row_bytes(scenario: Scenario) -> int:
    """The bytes of one row of a run's series: its time and every output."""
    return BYTES_PER_VALUE * (len(scenario.outputs) + 1)


def check_result_bytes(scenario: Scenario, limit: int, message: int,
                       path: str = "scenario") -> None:
    """A dynamic run's whole series within ``limit`` bytes (TWIN_MAX_RESULT_BYTES); a
    real-time run's rows of one publish within ``message`` bytes (TWIN_MAX_MESSAGE_BYTES):
    measured when the command arrives, not after the work."""
    time = scenario.time
    if scenario.mode == "dynamic" and time is not None:
        rows, width = row_count(time), row_bytes(scenario)
        if rows * width > limit:
            raise LimitExceeded(
                f"the run would return about {rows * width / 1e6:.3g} MB ({rows} rows of "
                f"{len(scenario.outputs)} output(s)); this controller returns at most "
                f"{limit / 1e6:.3g} MB from one run (TWIN_MAX_RESULT_BYTES): name fewer "
                "outputs, make time.step larger or the run shorter",
                path=f"{path}.outputs", limit=limit)
    elif scenario.mode == "realtime" and scenario.realtime is not None:
        every = int(scenario.realtime["publish_every"])
        if every * row_bytes(scenario) > message:
            raise LimitExceeded(
                f"one publish of {every} rows of {len(scenario.outputs)} output(s) would be "
                f"about {every * row_bytes(scenario) / 1e3:.3g} kB; a reply of this "
                f"controller has at most {message / 1e3:.3g} kB (TWIN_MAX_MESSAGE_BYTES): "
                "make realtime.publish_every smaller or name fewer outputs",
                path=f"{path}.realtime.publish_every", limit=message)


def chunk_rows(scenario: Scenario, max_rows: int, message: int) -> int:
    """Rows of one ``data`` chunk of a streamed series: at most ``max_rows``
    (TWIN_MAX_RESULT_ROWS) and within ``message`` bytes (TWIN_MAX_MESSAGE_BYTES)."""
    return max(1, min(max_rows, message // row_bytes(scenario)))


def sweep_chunk_size(scenario: Scenario, cases: int) -> int:
    """Cases per chunk of a sweep: :data:`SWEEP_SPREAD` chunks, unless that makes a
    chunk less than :data:`SWEEP_MIN_CHUNK_S` or more than :data:`SWEEP_CHUNK_S` of
    estimated work; at most :data:`SWEEP_MAX_CHUNK` cases, unless that makes more than
    :data:`SWEEP_MAX_CHUNKS` chunks."""
    rows = 1
    if scenario.mode == "dynamic" and scenario.time:
        rows = row_count(scenario.time)
        max_step = scenario.solver.get("max_step")
        if max_step:
            span = float(scenario.time["stop"]) - float(scenario.time["start"])
            rows = max(rows, solver_steps(span, float(max_step)))
    per_case = 1e-3 + len(scenario.elements) * rows * SECONDS_PER_VALUE
    most = max(1, int(SWEEP_CHUNK_S / per_case))
    least = max(1, math.ceil(SWEEP_MIN_CHUNK_S / per_case))
    spread = math.ceil(cases / SWEEP_SPREAD)
    size = min(max(spread, least), most, SWEEP_MAX_CHUNK, cases)
    return max(1, size, math.ceil(cases / SWEEP_MAX_CHUNKS))


def sweep_table_rows(columns: int, max_rows: int, message: int) -> int:
    """The most rows a sweep's ``result`` repeats: TWIN_MAX_RESULT_ROWS, and what fits
    in one message (a longer table comes in its ``data`` replies only)."""
    return max(1, min(max_rows, message // 2 // (BYTES_PER_VALUE * columns + 8)))


def check_instance(data: Any, known: bool, count: int, *, max_count: int, max_bytes: int,
                   path: str = "instance") -> None:
    """A ``put_instance``: at most ``max_bytes`` of JSON (TWIN_MAX_INSTANCE_BYTES), and a new
    one only while the library has fewer than ``max_count`` (TWIN_MAX_INSTANCES)."""
    size = len(json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise LimitExceeded(
            f"the instance has {size} bytes of JSON; this controller takes instances of at "
            f"most {max_bytes} bytes (TWIN_MAX_INSTANCE_BYTES): design data, not series",
            path=path, limit=max_bytes)
    if not known and count >= max_count:
        raise LimitExceeded(
            f"the instance library has {count} instances, as many as this controller "
            f"keeps (TWIN_MAX_INSTANCES = {max_count}): delete one first "
            "(`delete_instance`), or replace one by its id", path=path, limit=max_count)


def check_steps(scenario: Scenario, limit: int, path: str = "scenario") -> None:
    """Output rows of a dynamic run, ticks of a real-time run that has a ``time.stop``
    (an open-ended one runs until ``stop``)."""
    time = scenario.time
    if time is None or time.get("stop") is None or time.get("step") is None:
        return
    if scenario.mode == "dynamic":
        n = row_count(time)
        what = f"the run would return {n} rows (one per time.step from time.start to time.stop)"
    elif scenario.mode == "realtime":
        n = tick_count(time)
        what = f"the real-time run would take {n} ticks (one per time.step until time.stop)"
    else:
        return
    if n > limit:
        raise LimitExceeded(
            f"{what}; this controller allows at most {limit} steps in one run "
            "(TWIN_MAX_STEPS): make time.step larger or the run shorter, or split it "
            "into several runs", path=f"{path}.time.step", limit=limit)


_EPS = 1e-9
"""Relative tolerance of a span that is a whole number of ``max_step`` (or of the cap)."""


def solver_steps(span: float, max_step: float) -> int:
    """The fewest solver steps that cover ``span`` with steps of at most ``max_step``
    (a span beyond counting counts as many as an int can say)."""
    ratio = span / max_step
    return math.ceil(ratio - ratio * _EPS) if math.isfinite(ratio) else sys.maxsize


def _at_least(x: float) -> str:
    """``x`` in three significant digits, rounded up (a value that is allowed)."""
    shown = f"{x:.3g}"
    if float(shown) < x:
        shown = f"{float(shown) + 10.0 ** (math.floor(math.log10(float(shown))) - 2):.3g}"
    return shown


def _at_most(x: float) -> str:
    """``x`` as short as it goes without rounding up."""
    return f"{x:g}" if float(f"{x:g}") <= x else repr(x)


def check_max_step(scenario: Scenario, limit: int, path: str = "scenario") -> None:
    """The solver steps of a dynamic or real-time run with a ``time.stop`` and a
    ``solver.max_step``: at least ``(time.stop - time.start) / max_step``, which a tiny
    ``max_step`` makes hours of work for a command of a few bytes."""
    time, solver = scenario.time, scenario.solver or {}
    max_step = solver.get("max_step")
    if (scenario.mode not in ("dynamic", "realtime") or time is None or max_step is None
            or time.get("stop") is None):
        return
    start, stop, max_step = float(time["start"]), float(time["stop"]), float(max_step)
    span = stop - start
    n = solver_steps(span, max_step)
    if n <= limit:
        return
    shown = f"{n}" if n <= 10**15 else f"more than {10**15}"
    raise LimitExceeded(
        f"solver.max_step = {max_step:g} s over the run's {span:g} s (time.start {start:g} s "
        f"to time.stop {stop:g} s) means at least {shown} solver steps; this controller "
        f"allows at most {limit} steps in one run (TWIN_MAX_STEPS): make solver.max_step "
        f"at least {_at_least(span / limit)} s for this span, or the run shorter, or split "
        "it into several runs", path=f"{path}.solver.max_step", limit=limit)


def check_realtime_length(scenario: Scenario, cap: int, path: str = "scenario") -> None:
    """A real-time run with a ``time.stop`` within ``cap`` seconds of wall-clock time
    (TWIN_MAX_REALTIME_S; 0: no cap). An open-ended run is accepted: its worker stops it
    after ``cap`` seconds."""
    time, opts = scenario.time, scenario.realtime
    if (scenario.mode != "realtime" or not cap or time is None or opts is None
            or time.get("stop") is None):
        return
    start, stop, speed = float(time["start"]), float(time["stop"]), float(opts["speed"])
    length = (stop - start) / speed
    if length <= cap * (1 + _EPS):
        return
    raise LimitExceeded(
        f"the real-time run would last {length:g} s of wall-clock time ((time.stop - "
        f"time.start) / realtime.speed = ({stop:g} - {start:g}) / {speed:g}); this "
        f"controller runs a real-time run for at most {cap} s (TWIN_MAX_REALTIME_S): make "
        f"time.stop at most {_at_most(start + cap * speed)} or realtime.speed larger, or "
        f"split the run into several; an open-ended run (no time.stop) is stopped after "
        f"{cap} s", path=f"{path}.time.stop", limit=cap)
