"""Redis footprint benchmark: what each command leaves in Redis for the duplicate guard.

A real stack (ingress, 2 worker processes) on a Redis and a Mosquitto started here
answers ``--commands`` pings and as many static runs over MQTT. Once every reply is
sent (the outbox is empty), every key left in Redis is grouped by its pattern (the
request id replaced by ``{id}``) and measured with ``MEMORY USAGE``; the table gives
keys and bytes per command, and what a steady 30 commands/s leaves after the 24 h
of ``TWIN_DUPLICATE_TTL``.

    python bench/redis_footprint.py [--commands 2000] [--no-write]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import Client, fresh_stack, machine, ours_command, report  # noqa: E402
from tasks.outbox import outbox_stream  # noqa: E402

RATE = 30  # commands per second, steady
BATCH = 100  # commands sent at once
TTL_S = 86_400


def ping(rid: str) -> dict[str, Any]:
    return {"id": rid, "cmd": "ping"}


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def drained(client: redis.Redis, cid: str) -> None:
    deadline = time.monotonic() + 60
    while client.xlen(outbox_stream(cid)) and time.monotonic() < deadline:
        time.sleep(0.2)


def footprint(client: redis.Redis, cid: str, ids: set[str]) -> dict[str, tuple[int, int]]:
    """Pattern -> (keys, bytes) of every key that names one of ``ids``."""
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key in client.scan_iter(count=1000):
        name = key.decode()
        rid = next((part for part in re.split(r"[:]", name) if part in ids), None)
        if rid is None:
            continue
        pattern = name.replace(rid, "{id}").replace(cid, "{cid}")
        found[pattern][0] += 1
        found[pattern][1] += int(client.memory_usage(key, samples=0) or 0)
    return {p: (n, b) for p, (n, b) in sorted(found.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commands", type=int, default=2000, help="of each kind (ping, run)")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args()
    cid = f"footprint-{uuid.uuid4().hex[:6]}"
    with fresh_stack(cid, workers=2, short=0) as (stack, host, port):
        s = stack.settings
        db = redis.Redis.from_url(s.redis_url)
        orch = Client(host, port, f"{s.mqtt_prefix}/{cid}")
        try:
            warm = [f"warm-{uuid.uuid4().hex[:12]}" for _ in range(BATCH)]
            for rid in warm:  # (Redis's tables grow to their size before measuring)
                orch.send(ping(rid))
            orch.wait(warm, 60)
            kinds = {"ping": ping, "static run": ours_command}
            ids: dict[str, list[str]] = {}
            grown: dict[str, float] = {}
            for kind, make in kinds.items():
                drained(db, cid)
                before = used_memory(db)
                ids[kind] = [f"fp-{uuid.uuid4().hex[:12]}" for _ in range(args.commands)]
                for start in range(0, args.commands, BATCH):  # (within the inbox's limits)
                    batch = ids[kind][start:start + BATCH]
                    for rid in batch:
                        orch.send(make(rid))
                    orch.wait(batch, 600)
                if orch.codes:
                    raise SystemExit(f"refused: {sorted(set(orch.codes.values()))}")
                drained(db, cid)
                grown[kind] = (used_memory(db) - before) / args.commands
            rows = []
            for kind, rids in ids.items():
                n = len(rids)
                for pattern, (keys, size) in footprint(db, cid, set(rids)).items():
                    rows.append((kind, pattern, keys / n, size / n))
        finally:
            orch.close()
    lines = [f"Machine: {machine()}. One run, {args.commands} commands of each kind, "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| command | key left for 24 h | keys per command "
             "| bytes per command (`MEMORY USAGE`) |",
             "|---|---|---:|---:|"]
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for kind, pattern, keys, size in rows:
        lines.append(f"| {kind} | `{pattern}` | {keys:.2f} | {size:.0f} |")
        totals[kind][0] += keys
        totals[kind][1] += size
    for kind, (keys, size) in totals.items():
        lines.append(f"| **{kind}, all** | | **{keys:.2f}** | **{size:.0f}** |")
    lines += ["", "Redis's `used_memory` grew by "
              + ", ".join(f"{grown[k]:.0f} B per {k}" for k in grown)
              + " (the keyspace's own tables included; the outbox drained before and after)."]
    worst = max(max(grown.values(), default=0.0),
                max((size for _, size in totals.values()), default=0.0))
    most = max((keys for keys, _ in totals.values()), default=0.0)
    steady = RATE * TTL_S
    lines += ["", f"At a steady {RATE} commands/s the guard levels off at "
              f"{steady * most / 1e6:.1f} M keys and {steady * worst / 2**30:.2f} GiB "
              f"({steady / 1e6:.1f} M commands within {TTL_S // 3600} h, at the larger of the "
              f"two byte counts)."]
    report("redis_footprint", "\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
