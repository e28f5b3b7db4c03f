"""The chunks of a sweep, run on the batch workers, and the one table they make.

The ingress queues a sweep as a Celery ``group`` of chunk tasks (``twin.sweep`` on
the queue :data:`~tasks.queues.SWEEP`), each a range of cases, with task ids derived
from the request id and the chunk's number. A chunk checks the scenario once, then
runs its cases (:func:`scenario_builder.sweeps.run_case`: only what a case changes is
made anew), and stores each case's row in the sweep's hash with ``HSETNX``: a chunk
run twice (its worker was killed, acks_late) stores no row twice. It then sends its
rows as a ``data`` reply (logical key ``data:{chunk}``: stored once) and says it has
reported. The chunk whose report is the last one builds the ``result`` from the
hash (any chunk that finds every chunk reported may: the final reply is stored once),
so the result always follows every ``data`` reply in ``seq`` order. This is what
Celery's own Redis chord does (a counter of the parts that returned), counted by
case and chunk so that a re-run cannot count twice, with no callback message that
could itself be lost on its way to a worker.

A ``stop`` of the sweep: a running chunk sees it between cases (every 0.2 s) and
inside a dynamic case, a waiting chunk when it starts; the cases not run are
dropped, and the result (``status: "stopped"``) holds the rows done. A chunk whose
command's ``ttl`` ran out before any chunk started ends the sweep ``expired``.

Keys (``{cid}`` the controller, ``{id}`` the request)::

    twin:{cid}:sweep:{id}   hash: "c{case}" -> {"row": [...], "failed": {...}} or
                            {"dropped": 1}; "k{chunk}" -> 1 once reported;
                            "#row", "#failed", "#dropped", "#chunks" (counters);
                            "started" (unix s), "expired"
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from modellib.errors import CodedError
from scenario_builder import RunStopped, check_scenario
from scenario_builder.sweeps import Sweep, best_case, run_case

from .app import app
from .jobboard import JobBoard
from .jobs import _RETRY, _board, _persist, _stop_flag, other_models, outbox, timeout_message
from .queues import SWEEP_CHUNK
from .replies import encode_json

__all__ = ["sweep_chunk", "SweepStore", "sweep_key", "table_fields", "MAX_FAILED_SHOWN",
           "POLL_S"]

log = logging.getLogger("twinctl.worker")

MAX_FAILED_SHOWN = 1000
"""At most this many failed cases are listed in the result (each chunk's ``data`` reply
lists its own); ``failed_total`` counts them all."""
POLL_S = 0.2
"""A running chunk reads the sweep's stop flag between cases this often."""


def sweep_key(controller: str, request_id: str) -> str:
    return f"twin:{controller}:sweep:{request_id}"


# KEYS: 1 the sweep's hash, 2 its steering hash (stop), 3 the job board's jobs hash
# ARGV: 1 ttl, 2 expires_at ("" none), 3 now, 4 request id
_START = """
if redis.call('HEXISTS', KEYS[1], 'expired') == 1 then return 'expired' end
if redis.call('HEXISTS', KEYS[2], 'stop') == 1 then return 'stop' end
if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[1], 'started') == 0
    and tonumber(ARGV[3]) > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'expired', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 'expired'
end
if redis.call('HSETNX', KEYS[1], 'started', ARGV[3]) == 1 then
  local entry = redis.call('HGET', KEYS[3], ARGV[4])
  if entry then
    local e = cjson.decode(entry)
    e['state'] = 'running'
    e['started'] = tonumber(ARGV[3])
    redis.call('HSET', KEYS[3], ARGV[4], cjson.encode(e))
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 'run'
"""

# KEYS: 1 the sweep's hash, 2 the jobs hash; ARGV: 1 ttl, 2 request id, 3 total cases,
# then (field, kind, JSON) per case. Returns {cases done (rows and failed), dropped}.
_STORE = """
for i = 4, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('HINCRBY', KEYS[1], '#' .. ARGV[i + 1], 1)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
local n = redis.call('HMGET', KEYS[1], '#row', '#failed', '#dropped')
local done = tonumber(n[1] or '0') + tonumber(n[2] or '0')
local entry = redis.call('HGET', KEYS[2], ARGV[2])
if entry then
  local e = cjson.decode(entry)
  e['state'] = 'running'
  e['done'] = done
  e['cases'] = tonumber(ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(e))
end
return {done, tonumber(n[3] or '0')}
"""

# KEYS: 1 the sweep's hash; ARGV: 1 ttl, 2 the chunk's field. Returns the chunks reported.
_REPORT = """
if redis.call('HSETNX', KEYS[1], ARGV[2], '1') == 1 then
  redis.call('HINCRBY', KEYS[1], '#chunks', 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return tonumber(redis.call('HGET', KEYS[1], '#chunks'))
"""


class SweepStore:
    """The rows of one sweep in Redis (see the module's docstring for the keys)."""

    def __init__(self, board: JobBoard, request_id: str, *, ttl: int = 86_400) -> None:
        self.board = board
        self.redis = board.redis
        self.rid = request_id
        self.key = sweep_key(board.cid, request_id)
        self.ttl = ttl
        self._start, self._store, self._report = (self.redis.register_script(lua)
                                                  for lua in (_START, _STORE, _REPORT))

    def start(self, expires_at: float | None) -> str:
        """``run``, ``stop`` (a stop was asked) or ``expired`` (the ttl ran out before any
        chunk of the sweep started)."""
        found = self._start(
            keys=[self.key, self.board.steer_key(self.rid), self.board.jobs_key],
            args=[self.ttl, "" if expires_at is None else repr(expires_at), repr(time.time()),
                  self.rid])
        return found.decode() if isinstance(found, bytes) else str(found)

    def store(self, entries: list[tuple[int, str, dict[str, Any]]], total: int
              ) -> tuple[int, int]:
        """Store each case's entry (case, kind ``row``/``failed``/``dropped``, JSON-able)
        unless stored already; (cases done, cases dropped) of the whole sweep."""
        args: list[Any] = [self.ttl, self.rid, total]
        for case, kind, entry in entries:
            args += [f"c{case}", kind, encode_json(entry)]
        done, dropped = self._store(keys=[self.key, self.board.jobs_key], args=args)
        return int(done), int(dropped)

    def report(self, chunk: int) -> int:
        """Chunk ``chunk`` has stored its rows and sent its ``data``: how many have."""
        return int(self._report(keys=[self.key], args=[self.ttl, f"k{chunk}"]))

    def reported(self, chunks: int) -> list[bool]:
        """Whether each of the sweep's ``chunks`` chunks has reported (for the ingress's
        look for chunks whose message vanished)."""
        found = self.redis.hmget(self.key, [f"k{k}" for k in range(chunks)])
        return [v is not None for v in found]

    def read(self) -> dict[str, Any]:
        """Everything stored of the sweep: ``cases`` (case -> entry), ``expired``,
        ``started``."""
        raw: dict[bytes, bytes] = self.redis.hgetall(self.key)  # type: ignore[assignment]
        cases = {int(k[1:]): json.loads(v) for k, v in raw.items() if k.startswith(b"c")}
        started = raw.get(b"started")
        return {"cases": cases, "expired": b"expired" in raw,
                "started": float(started) if started else None}

    def delete(self) -> None:
        self.redis.delete(self.key)


# ----- one chunk ---------------------------------------------------------------------
def _failed(exc: BaseException) -> dict[str, Any]:
    """A case's entry in ``failed``: the code and message a single run would answer."""
    if isinstance(exc, CodedError):
        reply = exc.as_reply()
        return {k: reply[k] for k in ("code", "message", "path") if reply.get(k) is not None}
    if isinstance(exc, ArithmeticError | ValueError):
        return {"code": "runtime_error", "message": f"the computation failed: {exc}"}
    return {"code": "internal_error",
            "message": "the controller failed while running this case; see its log"}


def _run_cases(scenario: dict[str, Any], sweep: Sweep, first: int,
               should_stop: Callable[[], bool]) -> list[tuple[int, str, dict[str, Any]]]:
    """Run the chunk's cases: one entry per case (row, failed or dropped)."""
    sc = check_scenario(scenario)  # once per chunk (the ingress checked it and every case)
    empty = [None] * len(sweep.collect)
    entries: list[tuple[int, str, dict[str, Any]]] = []
    polled = time.monotonic()
    ending: tuple[str, dict[str, Any]] | None = None
    for i, values in enumerate(sweep.cases):
        case = first + i
        if ending is None and time.monotonic() - polled >= POLL_S:
            polled = time.monotonic()
            if should_stop():
                ending = ("dropped", {"dropped": 1})
        if ending is not None:
            kind, entry = ending
            entries.append((case, kind, {**entry, "row": [case, *values, *empty]}
                            if kind == "failed" else entry))
            continue
        try:
            collected = run_case(sc, sweep, values, should_stop)
            entries.append((case, "row", {"row": [case, *values, *collected]}))
        except RunStopped:
            ending = ("dropped", {"dropped": 1})
            entries.append((case, "dropped", {"dropped": 1}))
        except SoftTimeLimitExceeded:
            ending = ("failed", {"failed": {"code": "timeout", "message": timeout_message(
                SWEEP_CHUNK, float(app.conf.task_soft_time_limit))}})
            entries.append((case, "failed", {**ending[1], "row": [case, *values, *empty]}))
        except Exception as exc:  # noqa: BLE001  (a case's failure is its row, not the sweep's)
            if not isinstance(exc, CodedError | ArithmeticError | ValueError):
                log.exception("case %d of a sweep: internal error", case)
            entries.append((case, "failed", {"row": [case, *values, *empty],
                                             "failed": _failed(exc)}))
    return entries


@app.task(name=SWEEP_CHUNK, **_RETRY)
def sweep_chunk(
    self: Any,
    request_id: str,
    controller: str,
    reply_to: str,
    scenario: dict[str, Any],
    sweep: dict[str, Any],
    correlation: str | None = None,
    summary: str = "",
    client: str = "",
    expires_at: float | None = None,
    chunk: int = 0,
    first: int = 0,
    total: int = 0,
    chunks: int = 1,
    max_rows: int = 10_000,
    models_digest: str | None = None,
) -> str:
    """Run cases ``first`` … of sweep ``request_id`` (chunk ``chunk`` of ``chunks``; the
    sweep has ``total`` cases); store their rows, send them as a ``data`` reply, and
    answer the sweep if this chunk is the last to report. ``max_rows``: the most rows
    the ``result`` repeats (longer tables come in the ``data`` replies only)."""
    part = Sweep.from_data(sweep)
    store = SweepStore(_board(controller), request_id)
    if _persist(lambda: outbox().finished(controller, [request_id]))[0]:
        return "the sweep was answered already"
    state = _persist(lambda: store.start(expires_at))
    mismatch = other_models(models_digest)
    entries: list[tuple[int, str, dict[str, Any]]]
    if mismatch is not None and state == "run":
        entries = [(first + i, "failed", {"row": [first + i, *v, *[None] * len(part.collect)],
                                          "failed": mismatch.as_reply()})
                   for i, v in enumerate(part.cases)]
    elif state == "run":
        entries = _run_cases(scenario, part, first, _stop_flag(controller, request_id))
    else:
        entries = [(first + i, "dropped", {"dropped": 1}) for i in range(len(part.cases))]
    return _report(store, part, entries, request_id=request_id, controller=controller,
                   reply_to=reply_to, correlation=correlation, chunk=chunk, total=total,
                   chunks=chunks, max_rows=max_rows)


def _report(store: SweepStore, part: Sweep, entries: list[tuple[int, str, dict[str, Any]]], *,
            request_id: str, controller: str, reply_to: str, correlation: str | None,
            chunk: int, total: int, chunks: int, max_rows: int) -> str:
    """Store a chunk's entries, send its ``data`` reply, report; answer the sweep when
    every chunk has reported."""
    done, _ = _persist(lambda: store.store(entries, total))
    rows = [e["row"] for _, kind, e in entries if kind != "dropped"]
    if rows:
        failed = {str(case): e["failed"] for case, kind, e in entries if kind == "failed"}
        _persist(functools.partial(
            outbox().put, controller=controller, request_id=request_id, key=f"data:{chunk}",
            rtype="data", topic=reply_to, correlation=correlation, fields={
                "chunk": chunk, "progress": {"done": done, "total": total},
                "columns": part.columns, "rows": rows, **({"failed": failed} if failed else {})}))
    reported = _persist(lambda: store.report(chunk))
    if reported < chunks:
        return f"chunk {chunk}: {len(rows)} row(s); {reported} of {chunks} chunks reported"
    stored = _persist(lambda: _finish(store, part, request_id=request_id, controller=controller,
                                      reply_to=reply_to, correlation=correlation, total=total,
                                      chunks=chunks, max_rows=max_rows))
    return f"chunk {chunk}: {len(rows)} row(s); the sweep answered, seq={stored}"


def table_fields(sweep: Sweep, cases: dict[int, dict[str, Any]], *, total: int, chunks: int,
                 max_rows: int, expired: bool = False, started: float | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """The sweep's final reply, ``(type, fields)``, from each case's stored entry."""
    rows = [cases[c]["row"] for c in sorted(cases) if "row" in cases[c]]
    failed = {str(c): cases[c]["failed"] for c in sorted(cases) if "failed" in cases[c]}
    dropped = sum(1 for e in cases.values() if "dropped" in e)
    if expired and not rows:
        return "error", {"code": "expired", "path": "ttl", "message": (
            "the command's ttl ran out before a worker could start the sweep (it waited in "
            "the queue behind others): it was not run; send it again (with a new id) if it "
            "still applies, or with a longer ttl")}
    fields: dict[str, Any] = {"status": "stopped" if dropped else "ok",
                              "columns": sweep.columns, "units": sweep.units}
    if len(rows) <= max_rows:
        fields["rows"] = rows
    else:
        fields.update(streamed=True, chunks=chunks)
    fields["failed"] = dict(list(failed.items())[:MAX_FAILED_SHOWN])
    if len(failed) > MAX_FAILED_SHOWN:
        fields["failed_total"] = len(failed)
    best = best_case(sweep, rows)
    if best is not None:
        fields["best"] = best
    if sweep.seed is not None:
        fields["seed"] = sweep.seed
    fields["stats"] = {"cases": total, "done": len(rows), "failed": len(failed),
                       "dropped": dropped, "chunks": chunks,
                       **({"wall_ms": round((time.time() - started) * 1000, 1)}
                          if started else {})}
    return "result", fields


def _finish(store: SweepStore, sweep: Sweep, *, request_id: str, controller: str,
            reply_to: str, correlation: str | None, total: int, chunks: int,
            max_rows: int) -> int:
    """The sweep's final reply from every stored row (stored once), and its end."""
    found = store.read()
    rtype, fields = table_fields(sweep, found["cases"], total=total, chunks=chunks,
                                 max_rows=max_rows, expired=found["expired"],
                                 started=found["started"])
    stored = outbox().put_final(controller=controller, request_id=request_id, rtype=rtype,
                                fields=fields, topic=reply_to, correlation=correlation,
                                job=store.board.keys_of(request_id))
    store.delete()
    return stored.seq


@signals.task_failure.connect(weak=False)
def _chunk_killed(sender: Any = None, exception: BaseException | None = None,
                  args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """A chunk that ignored its soft time limit was killed at the hard one (in the
    worker's main process): its cases fail ``timeout`` and the chunk reports, so the
    sweep is still answered."""
    if not isinstance(exception, TimeLimitExceeded) or getattr(sender, "name", "") != SWEEP_CHUNK:
        return
    try:
        request_id, controller, reply_to, _, sweep = list(args)[:5]
        kw = dict(kwargs or {})
        part = Sweep.from_data(sweep)
        first = int(kw.get("first", 0))
        hard = float(exception.args[0]) if exception.args else app.conf.task_time_limit
        entry = {"code": "timeout", "message": timeout_message(SWEEP_CHUNK, hard, killed=hard)}
        empty = [None] * len(part.collect)
        entries = [(first + i, "failed", {"row": [first + i, *values, *empty], "failed": entry})
                   for i, values in enumerate(part.cases)]
        _report(SweepStore(_board(controller), request_id), part, entries,
                request_id=request_id, controller=controller, reply_to=reply_to,
                correlation=kw.get("correlation"), chunk=int(kw.get("chunk", 0)),
                total=int(kw.get("total", 0)), chunks=int(kw.get("chunks", 1)),
                max_rows=int(kw.get("max_rows", 10_000)))
        log.error("request %s: a sweep chunk was killed at its hard time limit (%g s)",
                  request_id, hard)
    except Exception:  # noqa: BLE001  (a signal handler must not break the worker)
        log.exception("a sweep chunk killed at its hard time limit could not report")
