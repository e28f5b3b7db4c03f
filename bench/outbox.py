"""Outbox benchmark: replies buffered through a broker outage, then drained.

A real ingress (its publisher drains the outbox) runs against a Mosquitto and a
Redis started here. The broker is stopped; 10 000 replies (100 requests x 100
``data`` replies, as workers write them) are stored in the outbox while it is
away; the broker is started again on the same port and persistence folder. An
orchestrator with a persistent session counts what arrives: time from the
broker's restart to the last reply, and lost and duplicated ``(id, seq)`` pairs.

    python bench/outbox.py [--replies 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import machine, report  # noqa: E402
from tasks.outbox import Outbox, outbox_stream  # noqa: E402
from twinctl import embedded  # noqa: E402


class Broker:
    """A mosquitto that can be stopped and started again on the same port and folder."""

    def __init__(self) -> None:
        self.port = embedded.free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-mosquitto-")
        conf = Path(self.dir) / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "set_tcp_nodelay true", "max_queued_messages 1000000",
                 "max_inflight_messages 1000", "persistence true",
                 f"persistence_location {self.dir}/"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not embedded.port_answers("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # writes its persistence file
            self.proc.wait(10)
            self.proc = None


class Counter:
    """The orchestrator: a persistent session, replies counted by (id, seq)."""

    def __init__(self, port: int, topic: str, status: str, expected: int) -> None:
        self.online = threading.Event()
        self.status = status
        self.seen: set[tuple[str, int]] = set()
        self.duplicates = 0
        self.expected = expected
        self.done = threading.Event()
        self.last = 0.0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"bench-orch-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv5)
        self.c.on_socket_open = lambda c, u, s: s.setsockopt(socket.IPPROTO_TCP,
                                                              socket.TCP_NODELAY, 1)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(topic, 1), (status, 1)])
        self.c.reconnect_delay_set(0.1, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.c.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.c.loop_start()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if msg.topic == self.status:
            if body.get("state") == "online":
                self.online.set()
            return
        key = (body["id"], body["seq"])
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.last = time.perf_counter()
        if len(self.seen) >= self.expected:
            self.done.set()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def one_run(replies: int, run: int) -> dict[str, float]:
    broker = Broker()
    broker.start()
    redis_srv = embedded.start_redis()
    cid, prefix = f"bench-outbox-{run}", "bench"
    env = {**os.environ, "TWIN_CONTROLLER_ID": cid, "TWIN_MQTT_PREFIX": prefix,
           "TWIN_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}", "TWIN_REDIS_URL": redis_srv.url,
           "TWIN_LOG_LEVEL": "WARNING",
           "TWIN_INSTANCES": tempfile.mkdtemp(prefix="bench-inst-") + "/i"}
    ingress = subprocess.Popen([sys.executable, "-m", "twinctl", "ingress"], env=env,
                               start_new_session=True)
    counter = Counter(broker.port, f"{prefix}/{cid}/reply/#", f"{prefix}/{cid}/status",
                      replies)
    r = redis.Redis.from_url(redis_srv.url)
    try:
        if not counter.online.wait(30):
            raise RuntimeError("the ingress did not come online")
        time.sleep(1.0)
        broker.stop()
        box = Outbox(r, max_entries=0)
        per = 100
        for k in range(replies // per):
            rid = f"job-{k}"
            for i in range(per):
                box.put(controller=cid, request_id=rid, key=f"data:{i}", rtype="data",
                        fields={"t": [float(i)], "values": {"x": [float(i)]}},
                        topic=f"{prefix}/{cid}/reply/{rid}")
        buffered = r.xlen(outbox_stream(cid))
        restart = time.perf_counter()
        broker.start()
        counter.done.wait(20)
        if not counter.done.is_set():
            print(f"  not drained: {r.xlen(outbox_stream(cid))} still in the outbox, "
                  f"{len(counter.seen)} received", flush=True)
        drained = counter.last - restart if counter.done.is_set() else float("nan")
        time.sleep(2.0)  # anything sent twice would arrive now
        return {"buffered": buffered, "drain_s": drained,
                "lost": replies - len(counter.seen), "duplicated": counter.duplicates}
    finally:
        counter.close()
        os.killpg(ingress.pid, signal.SIGTERM)
        ingress.wait(20)
        broker.stop()
        redis_srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replies", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    results = []
    for run in range(args.runs):
        res = one_run(args.replies, run)
        print(f"run {run + 1}: {res}", flush=True)
        results.append(res)
    med = statistics.median(r["drain_s"] for r in results)
    lines = [
        "## Outbox through a broker outage (`bench/outbox.py`)",
        "",
        f"Machine: {machine()}. {args.replies} replies stored in the outbox while the "
        "broker was stopped, then the broker started again; a real ingress's publisher "
        "drains them to an orchestrator with a persistent session. Time from the broker's "
        "restart to the last reply (it includes the publisher's reconnect backoff). "
        f"{args.runs} runs. Target: drained in <= 10 s, 0 lost, 0 duplicated.",
        "",
        "| run | buffered | drain time (s) | lost | duplicated |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {i + 1} | {r['buffered']} | {r['drain_s']:.2f} | {r['lost']} | "
          f"{r['duplicated']} |" for i, r in enumerate(results)],
        "",
        f"Median drain time {med:.2f} s.",
    ]
    text = "\n".join(lines)
    report("outbox", text, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
