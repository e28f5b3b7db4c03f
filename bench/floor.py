"""Baseline (b) of bench/e2e.py: the floor of our parts.

MQTT in → a minimal relay that enqueues a no-op Celery task → a Celery worker
(same Celery configuration as twinctl: JSON, acks_late, prefetch 1) whose task
publishes its result once over its own long-lived MQTT connection (TCP_NODELAY)
→ MQTT out. No validation, no outbox, no duplicate guard, no computation.

    python bench/floor.py relay      # the relay process
    celery -A floor worker ...       # (run from bench/) the worker
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
from celery import Celery

app = Celery("floor")
app.config_from_object("tasks.celeryconfig")
app.conf.task_default_queue = "floor"
app.conf.task_queues = None

_client: mqtt.Client | None = None


def _mqtt() -> mqtt.Client:
    global _client
    if _client is None:
        host, port = os.environ["FLOOR_MQTT"].split(":")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.on_socket_open = lambda c, u, s: s.setsockopt(socket.IPPROTO_TCP,
                                                         socket.TCP_NODELAY, 1)
        c.connect(host, int(port))
        c.loop_start()
        _client = c
    return _client


@app.task(name="floor.noop", acks_late=True)
def noop(request_id: str, topic: str) -> None:
    body = json.dumps({"id": request_id, "type": "result", "seq": 1})
    _mqtt().publish(topic, body, qos=1)


def relay() -> None:
    host, port = os.environ["FLOOR_MQTT"].split(":")
    prefix = os.environ["FLOOR_PREFIX"]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_socket_open = lambda c, u, s: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        rid = json.loads(msg.payload)["id"]
        noop.apply_async((rid, f"{prefix}/reply/{rid}"))

    c.on_message = on_message
    c.on_connect = lambda client, *a: client.subscribe(f"{prefix}/cmd", 1)
    c.on_subscribe = lambda *a: print("relay ready", flush=True)
    c.connect(host, int(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    c.loop_start()
    stop.wait()
    c.loop_stop()


if __name__ == "__main__" and sys.argv[1:] == ["relay"]:
    relay()
