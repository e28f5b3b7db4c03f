"""Where the time of one command goes: a per-hop timeline from Redis's own clock.

Runs the real stack (ingress and 2 worker processes, fresh Redis and Mosquitto),
sends sequential static runs, and watches Redis with ``MONITOR``, which stamps every
command (also those run inside Lua scripts) with the server's clock in µs. Each
command of the hot path names its request, so the stamps line up, per request, with
the orchestrator's send and receive times (same machine, same clock)::

    sent → first reply stored (ingress: checks, guard, ack, job entry; one Lua call)
         → job queued (apply_async's LPUSH) → taken by a worker (kombu's unacked HSET)
         → final reply stored and job ended (one Lua call; a static run is not marked
           running on the job board)
         → acknowledged to Celery (HDEL unacked); the ack and the result as received

No code of the controller is changed for this: MONITOR slows Redis a little, so the
absolute numbers are somewhat above bench/e2e.py's; the shares are what it is for.
Prints a table and writes it to ``docs/benchmarks.md``.

    python bench/timeline.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import Client, fresh_stack, machine, ours_command, report  # noqa: E402

HOPS = (
    ("ack stored", "first reply and job entry stored by the ingress"),
    ("queued", "job on its Celery queue (apply_async's LPUSH)"),
    ("taken", "a worker took it (kombu's unacked HSET)"),
    ("final stored", "result stored, job ended (one Lua call)"),
    ("celery ack", "the worker acknowledged it to Celery"),
)


class Monitor:
    """Redis MONITOR in a thread: the first stamp of each (hop, request id)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.stamps: dict[tuple[str, str], float] = {}
        self.tags: dict[str, str] = {}  # kombu delivery tag -> request id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        time.sleep(0.3)

    def stop(self) -> None:
        self._stop.set()

    def _mark(self, hop: str, rid: str, ts: float) -> None:
        self.stamps.setdefault((hop, rid), ts)

    def _run(self) -> None:
        with self.client.monitor() as m:
            for event in m.listen():
                if self._stop.is_set():
                    return
                self._see(float(event["time"]), event["command"])

    def _see(self, ts: float, line: str) -> None:
        words = line.split(" ", 4)
        cmd = words[0].upper() if words else ""
        if cmd == "HSET" and len(words) > 3 and ":req:" in words[1]:
            # inside the outbox's Lua: the logical key of a reply, stored
            rid = words[1].split(":req:", 1)[-1]
            if words[2] in ("ack", "final"):
                self._mark(f"{words[2]} stored", rid, ts)
        elif cmd == "LPUSH" and len(words) > 1 and words[1] == "twin.short":
            if rid := _rid_in(line):
                self._mark("queued", rid, ts)
        elif cmd == "HSET" and len(words) > 2 and words[1] == "unacked":
            if rid := _rid_in(line):
                self.tags[words[2]] = rid
                self._mark("taken", rid, ts)
        elif cmd == "HDEL" and len(words) > 2 and words[1] == "unacked":
            if rid := self.tags.get(words[2]):
                self._mark("celery ack", rid, ts)


def _rid_in(line: str) -> str | None:
    """The request id (``b-…``, as bench/e2e.py names them) in a queued message."""
    at = line.find("b-")
    while at != -1:
        rid = line[at:at + 14]
        if len(rid) == 14 and all(c in "0123456789abcdef" for c in rid[2:]):
            return rid
        at = line.find("b-", at + 1)
    return None


class TimedClient(Client):
    """bench/e2e.py's orchestrator, also stamping the ack's arrival (wall clock)."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.wall: dict[tuple[str, str], float] = {}

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        body = json.loads(msg.payload)
        self.wall.setdefault((body.get("type", ""), body.get("id", "")), time.time())
        super()._on_message(c, u, msg)


def measure(n: int) -> dict[str, list[float]]:
    hops: dict[str, list[float]] = {h: [] for h, _ in HOPS}
    hops.update({"ack received": [], "result received": []})
    # 2 worker processes and no slot for short work, as bench/e2e.py
    with fresh_stack("timeline", workers=2, short=0) as (stack, host, port):
        redis_url = stack.settings.redis_url
        client = TimedClient(host, port, "bench/timeline")
        try:
            client.latency(ours_command, 30)  # warm-up
            mon = Monitor(redis_url)
            mon.start()
            for _ in range(n):
                rid = f"b-{uuid.uuid4().hex[:12]}"
                sent = time.time()
                client.send(ours_command(rid))
                client.wait([rid], 60)
                time.sleep(0.02)  # the worker's Celery ack comes after the result
                for hop, _ in HOPS:
                    if (hop, rid) in mon.stamps:
                        hops[hop].append((mon.stamps[hop, rid] - sent) * 1000)
                for kind, name in (("ack", "ack received"), ("result", "result received")):
                    if (kind, rid) in client.wall:
                        hops[name].append((client.wall[kind, rid] - sent) * 1000)
            mon.stop()
        finally:
            client.close()
    return hops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    hops = measure(args.requests)
    order = [*HOPS, ("ack received", "the `ack` at the orchestrator"),
             ("result received", "the `result` at the orchestrator")]
    lines = [
        "## Per-hop timeline of one command (`bench/timeline.py`)", "",
        f"Machine: {machine()}. One run of {args.requests} sequential static pump runs "
        "(as in bench/e2e.py) on the real stack; every stamp from Redis `MONITOR` (the "
        "server's clock, µs) or the orchestrator, in ms after the command was sent. "
        "MONITOR itself slows Redis, so the totals are above bench/e2e.py's.", "",
        "| hop | median (ms after send) | step (ms) | what |", "|---|---:|---:|---|"]
    last = 0.0
    for hop, what in sorted(order, key=lambda h: statistics.median(hops[h[0]] or [0])):
        values = hops[hop]
        if not values:
            lines.append(f"| {hop} | – | – | {what} (not seen) |")
            continue
        med = statistics.median(values)
        lines.append(f"| {hop} | {med:.2f} | {med - last:+.2f} | {what} |")
        last = med
    text = "\n".join(lines) + "\n"
    report("timeline", text, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
