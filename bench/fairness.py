"""Fairness: one client floods the costliest commands it may send; how long does a second
client wait for a `ping` and for a static run?

On the real stack as ``twinctl up`` starts it (ingress, 2 batch worker processes, a
slot for short work), with fresh Redis and Mosquitto. Client B measures its ping and
static-run latency idle, then while client A

- keeps both batch processes busy with dynamic runs of minutes (the smallest
  ``solver.max_step`` TWIN_MAX_STEPS allows),
- sends a stream of 0.7 MB valid runs (a dynamic run with a long input series), and
- floods QoS 0 pings as fast as it can publish,

and at the end A's runs are stopped. Target (the issue "no client can silence or
starve the controller"): B's p99 ping latency during the flood at most 10x its idle
p99, and every QoS 1 command of both clients answered. Prints a table and writes it
to ``docs/benchmarks.md``.

    python bench/fairness.py [--pings 200] [--static 50]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import (  # noqa: E402
    Client,
    fresh_stack,
    machine,
    ours_command,
    percentile,
    report,
)


def ping(rid: str) -> dict[str, Any]:
    return {"id": rid, "cmd": "ping"}


def hog(rid: str) -> dict[str, Any]:
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
        "inputs": {"lag.u": 1.0}, "time": {"start": 0, "stop": 1e5, "step": 1000},
        "solver": {"max_step": 1e-2}}}  # 1e7 solver steps (TWIN_MAX_STEPS): minutes


def heavy(rid: str, points: int = 30_000) -> dict[str, Any]:
    """A valid run of ~0.7 MB: a dynamic run whose input is a long series."""
    t = [round(i * 0.01, 2) for i in range(points)]
    v = [round(1.0 + (i % 100) / 1000, 3) for i in range(points)]
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"lag": {"model": "FirstOrderLag", "params": {"time_constant": 1}}},
        "inputs": {"lag.u": {"t": t, "v": v}}, "time": {"start": 0, "stop": 10, "step": 1}}}


def measure(client: Client, n_pings: int, n_static: int) -> dict[str, float]:
    pings = client.latency(ping, n_pings)
    static = client.latency(ours_command, n_static)
    return {"ping p50": percentile(pings, 0.5), "ping p99": percentile(pings, 0.99),
            "static p50": percentile(static, 0.5), "static p99": percentile(static, 0.99)}


def attacker(host: str, port: int, prefix: str, no_heavy: bool, qos0: int, nice: int,
             started: Any, stop: Any, results: Any) -> None:
    """Client A, in a process of its own (so that B's measured latency never waits for
    A's interpreter lock): busy batch processes, 0.7 MB runs and a QoS 0 flood until
    ``stop``; then its runs stopped, and what it sent and got into ``results``."""
    os.nice(nice)
    sent: dict[str, int] = {"heavy": 0, "qos0 pings": 0}
    a = Client(host, port, prefix, name="A")
    hogs = [f"hog-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    for rid in hogs:
        a.send(hog(rid))
    body = json.dumps(heavy("heavy-x"))
    heavies: list[str] = []
    while not stop.is_set():
        if not no_heavy:
            rid = f"heavy-{uuid.uuid4().hex[:12]}"
            heavies.append(rid)
            a.c.publish(f"{prefix}/cmd", body.replace("heavy-x", rid), qos=1,
                        properties=a.props)
            sent["heavy"] += 1
        for _ in range(qos0):
            a.c.publish(f"{prefix}/cmd", '{"id": "p0", "cmd": "ping"}', qos=0,
                        properties=a.props)
            sent["qos0 pings"] += 1
        started.set()
        time.sleep(0.05)
    deadline = time.monotonic() + 120  # A's own commands are handled in order:
    while not a.answered.issuperset(heavies):  # its flood first, then its stops
        assert time.monotonic() < deadline, "A's commands were not all answered"
        time.sleep(0.1)
    for rid in hogs:
        a.send({"id": f"stop-{uuid.uuid4().hex[:8]}", "cmd": "stop", "target": rid})
    a.wait(hogs, 60)
    a.wait(heavies, 300)  # every QoS 1 command answered: run, or refused unread
    refused = sum(a.codes.get(h) == "limit_exceeded" for h in heavies)
    a.close()
    results.put({**sent, "refused": refused})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--static", type=int, default=50)
    ap.add_argument("--qos0", type=int, default=200,
                    help="QoS 0 pings A floods after each 0.7 MB run")
    ap.add_argument("--no-heavy", action="store_true", help="A sends no 0.7 MB runs")
    ap.add_argument("--attacker-nice", type=int, default=0,
                    help="niceness of client A's process (19: as if it ran on another host)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    started, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    # as `twinctl up` starts it: 2 batch worker processes and a slot for short work
    with fresh_stack("fair", workers=2) as (_stack, host, port):
        prefix = "bench/fair"
        b = Client(host, port, prefix, name="B")
        b.latency(ours_command, 20)  # warm-up
        idle = measure(b, args.pings, args.static)
        a = ctx.Process(target=attacker, daemon=True, args=(
            host, port, prefix, args.no_heavy, args.qos0, args.attacker_nice, started, stop,
            results))
        a.start()
        try:
            assert started.wait(30), "client A did not start"
            time.sleep(2.0)  # the flood under way, the batch processes busy
            busy = measure(b, args.pings, args.static)
        finally:
            stop.set()
        got = results.get(timeout=600)
        a.join(10)
        sent, refused = got, got["refused"]
        b.close()
    ratio = busy["ping p99"] / idle["ping p99"]
    lines = [
        "## Fairness under a flood (`bench/fairness.py`)", "",
        f"Machine: {machine()}. One run on the stack `twinctl up` starts (ingress, 2 batch "
        "worker processes, 1 slot for short work). Client B: "
        f"{args.pings} sequential pings and {args.static} static pump runs, idle and then "
        "while client A keeps 4 dynamic runs of minutes going (both batch processes busy), "
        f"sends 0.7 MB valid runs ({sent['heavy']} in all) and floods QoS 0 pings "
        f"({sent['qos0 pings']} in all), from a process of its own. Latency in ms, publish "
        "to final reply.", "",
        "| client B | idle | during the flood |", "|---|---:|---:|",
        *[f"| {k} | {idle[k]:.2f} | {busy[k]:.2f} |" for k in idle], "",
        "| ratio | measured | target |", "|---|---:|---|",
        f"| B's p99 ping, flood / idle | {ratio:.1f}x | <= 10x |", "",
        f"Every QoS 1 command of both clients was answered: A's four runs ended `stopped`, "
        f"{sent['heavy'] - refused} of A's 0.7 MB runs ran and {refused} were refused "
        "unread (`limit_exceeded`: more than one orchestrator may have waiting, "
        "ingress/inbox.py); A's QoS 0 pings beyond its share of the inbox were dropped "
        "unanswered, as documented.",
    ]
    text = "\n".join(lines) + "\n"
    report("fairness", text, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
