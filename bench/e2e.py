"""End-to-end benchmark: a small scenario over MQTT, answered over MQTT.

Measures, in one run and on the same freshly started Redis and Mosquitto
(``set_tcp_nodelay true``):

- **twinctl**: MQTT → ingress (checks, duplicate guard, outbox ack) → Celery
  (2 worker processes) → static pump scenario → Redis outbox → publisher → MQTT;
- **(a) seed design**: MQTT → a fresh Python child process per request that imports
  numpy/scipy and computes the same values → MQTT (``bench/seed_child.py``);
- **(b) floor of our parts**: MQTT → relay → no-op Celery task (2 worker
  processes, same Celery configuration) → one MQTT publish (``bench/floor.py``).

Latency is publish-to-final-reply over sequential commands; throughput is
commands per second for a burst sent at once. Prints a table and writes it to
``docs/benchmarks.md``.

    python bench/e2e.py [--runs 3] [--sequential 500] [--burst 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twinctl import embedded  # noqa: E402
from twinctl.stack import Stack  # noqa: E402

P101 = {"rated_speed": 1450, "shutoff_head": 40.0, "curve_coefficient": 20000.0,
        "efficiency": 0.72, "density": 998.0}
FINAL = {"result", "error", "pong"}


def nodelay(client: mqtt.Client) -> None:
    client.on_socket_open = lambda c, u, s: s.setsockopt(socket.IPPROTO_TCP,
                                                          socket.TCP_NODELAY, 1)


class Client:
    """The orchestrator: publishes commands, timestamps final replies."""

    def __init__(self, host: str, port: int, prefix: str, *, name: str | None = None) -> None:
        self.prefix = prefix
        self.arrived: dict[str, float] = {}
        self.answered: set[str] = set()
        """request ids with a reply (an ``ack`` included)"""
        self.codes: dict[str, str] = {}
        """the error code of a final ``error`` reply, by request id"""
        self.props: Properties | None = None
        if name is not None:  # the orchestrator's name (MQTT 5 user property `client`)
            self.props = Properties(PacketTypes.PUBLISH)
            self.props.UserProperty = [("client", name)]
        self.cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        nodelay(self.c)
        self.c.max_inflight_messages_set(1000)
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect(host, port)
        self.c.subscribe(f"{prefix}/reply/#", 1)
        self.c.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        body = json.loads(msg.payload)
        with self.cond:
            self.answered.add(str(body.get("id")))
        if body.get("type") in FINAL:
            with self.cond:
                self.arrived.setdefault(body["id"], now)
                if body.get("type") == "error":
                    self.codes.setdefault(body["id"], str(body.get("code")))
                self.cond.notify_all()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def send(self, payload: dict[str, Any]) -> None:
        self.c.publish(f"{self.prefix}/cmd", json.dumps(payload), qos=1, properties=self.props)

    def wait(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while any(i not in self.arrived for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sum(i not in self.arrived for i in ids)
                    raise TimeoutError(f"{missing} of {len(ids)} replies missing")
                self.cond.wait(left)

    def latency(self, make: Callable[[str], dict[str, Any]], n: int) -> list[float]:
        out = []
        for _ in range(n):
            rid = f"b-{uuid.uuid4().hex[:12]}"
            t0 = time.perf_counter()
            self.send(make(rid))
            self.wait([rid], 60)
            out.append((self.arrived[rid] - t0) * 1000)
        return out

    def burst(self, make: Callable[[str], dict[str, Any]], n: int, timeout: float) -> float:
        ids = [f"burst-{uuid.uuid4().hex[:12]}" for _ in range(n)]
        t0 = time.perf_counter()
        for rid in ids:
            self.send(make(rid))
        self.wait(ids, timeout)
        return n / (max(self.arrived[i] for i in ids) - t0)


def ours_command(rid: str) -> dict[str, Any]:
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "static", "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
        "inputs": {"pump.speed": 1300, "pump.flow": 0.025}}}


def plain_command(rid: str) -> dict[str, Any]:
    return {"id": rid, "speed": 1300, "flow": 0.025, "params": P101}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_ours(env: dict[str, str], host: str, port: int, args: argparse.Namespace) -> dict:
    stack = Stack(env=env, workers=2, short=0, quiet=True)  # 2 processes, as for (b)
    stack.start(embedded_ok=False)
    try:
        stack.wait_ready(60)
        s = stack.settings
        client = Client(host, port, f"{s.mqtt_prefix}/{s.controller_id}")
        try:
            client.latency(ours_command, 30)  # warm-up
            lat = client.latency(ours_command, args.sequential)
            rate = client.burst(ours_command, args.burst, 300)
        finally:
            client.close()
    finally:
        stack.stop()
    return {"lat": lat, "rate": rate}


def run_floor(env: dict[str, str], host: str, port: int, args: argparse.Namespace) -> dict:
    prefix = f"floor-{uuid.uuid4().hex[:6]}"
    fenv = {**os.environ, **env, "FLOOR_MQTT": f"{host}:{port}", "FLOOR_PREFIX": prefix,
            "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "floor", "worker", "-c", "2", "--pool",
         "prefork", "-Q", "floor", "--without-mingle", "--without-gossip", "-n",
         f"floor-{prefix}@%h", "--loglevel", "WARNING"],
        env=fenv, cwd=ROOT / "bench", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay = subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor.py"), "relay"],
                             env=fenv, stdout=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None and "ready" in relay.stdout.readline()
        client = Client(host, port, prefix)
        try:
            client.latency(plain_command, 30)  # warm-up (waits for the worker too)
            lat = client.latency(plain_command, args.sequential)
            rate = client.burst(plain_command, args.burst, 300)
        finally:
            client.close()
    finally:
        for p in (relay, worker):
            p.terminate()
            p.wait(30)
    return {"lat": lat, "rate": rate}


def run_seed(host: str, port: int, args: argparse.Namespace) -> dict:
    """The seed design: a child process per request, two at a time (2 cores)."""
    prefix = f"seed-{uuid.uuid4().hex[:6]}"
    pool = ThreadPoolExecutor(max_workers=2)
    ctl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    nodelay(ctl)
    child = str(ROOT / "bench" / "seed_child.py")

    def handle(payload: bytes) -> None:
        out = subprocess.run([sys.executable, child, payload.decode()], capture_output=True,
                             check=True, text=True)
        rid = json.loads(payload)["id"]
        ctl.publish(f"{prefix}/reply/{rid}", out.stdout, qos=1)

    ctl.on_message = lambda c, u, msg: pool.submit(handle, msg.payload)
    ready = threading.Event()
    ctl.on_subscribe = lambda *a: ready.set()
    ctl.connect(host, port)
    ctl.subscribe(f"{prefix}/cmd", 1)
    ctl.loop_start()
    assert ready.wait(10)
    client = Client(host, port, prefix)
    try:
        lat = client.latency(plain_command, args.seed_requests)
        rate = client.burst(plain_command, args.seed_burst, 600)
    finally:
        client.close()
        ctl.disconnect()
        ctl.loop_stop()
        pool.shutdown()
    return {"lat": lat, "rate": rate}


@contextlib.contextmanager
def fresh_stack(controller: str, **parts: Any) -> Iterator[tuple[Stack, str, int]]:
    """A stack (``parts``: workers, short…) on a Redis and a Mosquitto started for it
    alone, ready: (stack, broker host, broker port). Everything stops after."""
    redis_srv, mqtt_srv = embedded.start_redis(), embedded.start_mqtt()
    env = {"TWIN_CONTROLLER_ID": controller, "TWIN_MQTT_PREFIX": "bench",
           "TWIN_INSTANCES": tempfile.mkdtemp(prefix="twinctl-bench-") + "/instances",
           "TWIN_MQTT_URL": mqtt_srv.url, "TWIN_REDIS_URL": redis_srv.url,
           "TWIN_LOG_LEVEL": "WARNING"}
    stack = Stack(env=env, quiet=True, **parts)
    try:
        stack.start(embedded_ok=False)
        stack.wait_ready(60)
        yield stack, "127.0.0.1", int(mqtt_srv.url.rsplit(":", 1)[1])
    finally:
        stack.stop()
        mqtt_srv.stop()
        redis_srv.stop()


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def report(name: str, text: str, *, write: bool) -> None:
    """Print a benchmark's section and, with ``write``, put it in docs/benchmarks.md."""
    print()
    print(text)
    if write:
        print(f"\nwritten to {write_section(name, text)}")


def write_section(name: str, text: str) -> Path:
    """Replace this benchmark's section of docs/benchmarks.md (others stay)."""
    path = ROOT / "docs" / "benchmarks.md"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n\nEvery number here is " \
        "printed by a script in `bench/`; run it again to check it.\n"
    if start in old:
        new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, old,
                     flags=re.S)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sequential", type=int, default=500)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--seed-requests", type=int, default=30)
    ap.add_argument("--seed-burst", type=int, default=40)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    redis_srv = embedded.start_redis()
    mqtt_srv = embedded.start_mqtt()
    host, port = "127.0.0.1", int(mqtt_srv.url.rsplit(":", 1)[1])
    base = redis_srv.url.rsplit("/", 1)[0]
    results: dict[str, list[dict]] = {"ours": [], "floor": [], "seed": []}
    try:
        for run in range(args.runs):
            env = {"TWIN_CONTROLLER_ID": f"bench{run}", "TWIN_MQTT_PREFIX": "bench",
                   "TWIN_INSTANCES": tempfile.mkdtemp(prefix="twinctl-bench-") + "/instances",
                   "TWIN_MQTT_URL": mqtt_srv.url, "TWIN_REDIS_URL": f"{base}/{1 + run}",
                   "TWIN_LOG_LEVEL": "WARNING"}
            print(f"run {run + 1}/{args.runs}: twinctl ...", flush=True)
            results["ours"].append(run_ours(env, host, port, args))
            print(f"run {run + 1}/{args.runs}: floor (b) ...", flush=True)
            results["floor"].append(run_floor({**env, "TWIN_REDIS_URL": f"{base}/{8 + run}"},
                                              host, port, args))
            print(f"run {run + 1}/{args.runs}: seed design (a) ...", flush=True)
            results["seed"].append(run_seed(host, port, args))
    finally:
        mqtt_srv.stop()
        redis_srv.stop()

    def med(name: str, fn: Callable[[dict], float]) -> float:
        return statistics.median(fn(r) for r in results[name])

    rows = []
    for name, label in (("ours", "twinctl (static pump scenario)"),
                        ("floor", "(b) floor: no-op Celery task, one MQTT publish"),
                        ("seed", "(a) seed: fresh child process per request")):
        rows.append((label, med(name, lambda r: percentile(r["lat"], 0.5)),
                     med(name, lambda r: percentile(r["lat"], 0.99)),
                     med(name, lambda r: r["rate"])))
    ours, floor, seed = rows
    ratios = [
        ("p50 speed-up over (a)", seed[1] / ours[1], ">= 50x"),
        ("p50 relative to (b)", ours[1] / floor[1], "<= 1.5x"),
        ("burst throughput relative to (b)", ours[3] / floor[3], ">= 70 %"),
    ]
    lines = [
        "## End to end over MQTT (`bench/e2e.py`)",
        "",
        f"Machine: {machine()}. Medians of {args.runs} run(s); each run: "
        f"{args.sequential} sequential commands for latency (after 30 warm-up), a burst of "
        f"{args.burst} sent at once for throughput; the seed baseline {args.seed_requests} "
        f"sequential and a burst of {args.seed_burst} (two children at a time). Redis and "
        "Mosquitto (`set_tcp_nodelay true`) started fresh by the script; 2 Celery worker "
        "processes (prefork) for twinctl and for (b).",
        "",
        "| pipeline | p50 latency (ms) | p99 latency (ms) | burst (commands/s) |",
        "|---|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.0f} |" for r in rows],
        "",
        "| ratio | measured | target |",
        "|---|---:|---|",
        f"| {ratios[0][0]} | {ratios[0][1]:.0f}x | {ratios[0][2]} |",
        f"| {ratios[1][0]} | {ratios[1][1]:.2f}x | {ratios[1][2]} |",
        f"| {ratios[2][0]} | {ratios[2][1] * 100:.0f} % | {ratios[2][2]} |",
        "",
        "Per run (p50 ms / burst per s): " + "; ".join(
            f"{name}: " + ", ".join(f"{percentile(r['lat'], 0.5):.2f}/{r['rate']:.0f}"
                                   for r in results[name]) for name in results),
    ]
    text = "\n".join(lines)
    report("e2e", text, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
