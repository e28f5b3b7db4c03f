"""``send_command``'s timeout is the wait for the next reply: each reply restarts it.
A fake MQTT connection delivers the replies on a timer; no broker."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from common.settings import load_settings
from twinctl import client


class FakeConnection:
    """Delivers ``replies`` (delay, reply) one after another once the command is published."""

    replies: list[tuple[float, dict[str, Any]]] = []

    def __init__(self, *, on_message: Any, **kwargs: Any) -> None:
        self.on_message = on_message
        self.topics = [topic for topic, _ in kwargs.get("subscriptions", [])]
        self.client = SimpleNamespace(on_subscribe=None)
        self.stopped = threading.Event()

    def start(self) -> None:
        self.client.on_subscribe()

    def wait_connected(self, timeout: float) -> bool:
        return True

    def publish(self, topic: str, payload: str, qos: int = 1) -> None:
        rid = json.loads(payload)["id"]

        def deliver() -> None:
            for seq, (delay, reply) in enumerate(self.replies):
                if self.stopped.wait(delay):
                    return
                body = {"id": rid, "seq": seq, **reply}
                self.on_message(SimpleNamespace(topic=self.topics[0],  # the reply topic
                                                payload=json.dumps(body).encode()))

        threading.Thread(target=deliver, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeConnection]:
    monkeypatch.setattr(client, "MqttConnection", FakeConnection)
    return FakeConnection


def settings() -> Any:
    return load_settings({"TWIN_MQTT_PROTOCOL": "5", "TWIN_CONTROLLER_ID": "c1"})


def test_replies_that_keep_coming_restart_the_timeout(fake: type[FakeConnection]) -> None:
    fake.replies = [(0.2, {"type": "ack"})] + [(0.2, {"type": "data", "t": [i]})
                                               for i in range(6)] + [(0.2, {"type": "result"})]
    started = time.monotonic()
    exchange = client.send_command(settings(), {"cmd": "run"}, timeout=0.6)
    assert time.monotonic() - started > 1.2  # longer than the timeout, all told
    assert not exchange.timed_out
    assert exchange.final is not None and exchange.final["type"] == "result"
    assert len(exchange.replies) == 8


def test_a_silence_longer_than_the_timeout_ends_the_wait(fake: type[FakeConnection]) -> None:
    fake.replies = [(0.1, {"type": "ack"}), (0.1, {"type": "data", "t": [0]}),
                    (5.0, {"type": "result"})]
    started = time.monotonic()
    exchange = client.send_command(settings(), {"cmd": "run"}, timeout=0.5)
    elapsed = time.monotonic() - started
    assert exchange.timed_out and exchange.final is None
    assert [r["type"] for r in exchange.replies] == ["ack", "data"]
    assert 0.6 < elapsed < 2.0  # 0.5 s after the last reply, not after the command
