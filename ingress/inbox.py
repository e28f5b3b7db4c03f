"""The ingress's inbox: commands received and not yet handled, shared fairly between
orchestrators.

paho's network threads put every command message here; two handler threads take
them (one for any command, one for small ones only, so a ping is not kept behind
the check of a 1 MB run). There is one FIFO per orchestrator (the name a message
claims, see :func:`ingress.routing.claimed_client`), served by deficit round robin
over bytes (:data:`QUANTUM` a turn): an orchestrator sending 0.7 MB runs gets its share of the
bytes, and one sending pings does not wait behind them. Each orchestrator's own
commands keep their order: one of them is handled at a time.

It is bounded, per orchestrator (:data:`CLIENT_BYTES`, :data:`CLIENT_COMMANDS`) and
in all (:data:`TOTAL_BYTES`: beyond it, an orchestrator above its fair share of it).
A QoS 1 command beyond a bound is *refused*: it is handed to the handler ahead of
every other command, answered ``limit_exceeded`` unread (an id sniffed from its
first bytes, one reply) and acknowledged, so a flood drains from the broker at the
speed of refusals and never holds the broker's window (MQTT 5 receive maximum,
:data:`RECEIVE_MAXIMUM`) shut for the others. A QoS 0 command beyond a bound is
dropped (counted): nothing bounds QoS 0 at the broker; so is one beyond
:data:`CLIENT_QOS0` of its orchestrator's waiting, or beyond its rate
(:data:`QOS0_RATE`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Acks", "Inbox", "Item", "QUANTUM", "OVERHEAD", "CLIENT_BYTES", "CLIENT_COMMANDS",
           "CLIENT_QOS0", "QOS0_RATE", "QOS0_BURST", "TOTAL_BYTES", "RECEIVE_MAXIMUM", "SMALL"]

QUANTUM = 64 << 10
"""Bytes an orchestrator's queue may spend a turn of the round robin."""
OVERHEAD = 512
"""What a command costs besides its bytes (so many tiny commands are not free)."""
CLIENT_BYTES = 16 << 20
CLIENT_COMMANDS = 200
"""What one orchestrator may have waiting to be handled."""
CLIENT_QOS0 = 16
"""QoS 0 commands one orchestrator may have waiting (more are dropped)."""
QOS0_RATE = 100.0
QOS0_BURST = 200
"""QoS 0 commands one orchestrator may send a second (a token bucket: this many a
second, bursts of that many); more are dropped. A QoS 0 flood is not handled at the
full speed of the ingress, at the cost of everyone's latency: QoS 1 commands, which
wait at the broker and get their answer, have no such rate."""
TOTAL_BYTES = 256 << 20
"""What all may have waiting; beyond it, each up to its fair share of it."""
RECEIVE_MAXIMUM = 1_000
"""QoS 1 commands the broker may hand over unacknowledged, per connection."""
SMALL = 64 << 10
"""Commands up to this size have a handler of their own (:class:`ingress.service.Ingress`):
a ping is not kept waiting while a 1 MB run is checked."""


class Acks(Protocol):
    """Where a command came from: acknowledges it to the broker once handled."""

    def ack(self, mid: int, qos: int) -> None: ...


@dataclass
class Item:
    """One command message waiting: its connection, the message, whose, how large."""

    conn: Acks
    msg: Any
    client: str
    size: int
    refused: str | None = None
    """why it is refused unread (None: handle it)"""
    qos: int = 1


class Inbox:
    """Per-orchestrator FIFOs served by deficit round robin; refusals first."""

    def __init__(self, *, client_bytes: int = CLIENT_BYTES,
                 client_commands: int = CLIENT_COMMANDS, total_bytes: int = TOTAL_BYTES,
                 quantum: int = QUANTUM, qos0_rate: float = QOS0_RATE,
                 qos0_burst: int = QOS0_BURST) -> None:
        self.client_bytes = client_bytes
        self.client_commands = client_commands
        self.total_bytes = total_bytes
        self.quantum = quantum
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Item]] = {}
        self._bytes_of: dict[str, int] = {}
        self._deficit: dict[str, int] = {}
        self._turns: deque[str] = deque()
        self._refused: deque[Item] = deque()
        self._busy: set[str] = set()
        self._qos0_of: dict[str, int] = {}
        self._qos0_bucket: dict[str, tuple[float, float]] = {}
        self.qos0_rate, self.qos0_burst = qos0_rate, qos0_burst
        self._bytes = 0
        self._closed = False
        self.dropped = 0
        """QoS 0 commands dropped beyond a bound"""
        self.refusals = 0
        """QoS 1 commands refused beyond a bound"""

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values()) + len(self._refused)

    @property
    def waiting_bytes(self) -> int:
        return self._bytes

    def put(self, item: Item, *, qos: int) -> str:
        """Queue ``item``: ``"queued"``, ``"refused"`` (QoS 1 beyond a bound: the handler
        answers it first) or ``"dropped"`` (QoS 0 beyond a bound)."""
        item.qos = qos
        with self._cond:
            why = self._over(item)
            if qos == 0 and why is None and (self._qos0_of.get(item.client, 0) >= CLIENT_QOS0
                                             or not self._qos0_token(item.client)):
                why = "QoS 0"
            if why is not None:
                if qos == 0:
                    self.dropped += 1
                    return "dropped"
                self.refusals += 1
                item.refused = why
                self._refused.append(item)
                self._cond.notify_all()
                return "refused"
            name = item.client
            if name not in self._queues:
                self._queues[name] = deque()
                self._bytes_of[name] = 0
                self._deficit[name] = 0
                self._turns.append(name)
            self._queues[name].append(item)
            if qos == 0:
                self._qos0_of[name] = self._qos0_of.get(name, 0) + 1
            self._bytes_of[name] += item.size
            self._bytes += item.size
            self._cond.notify_all()
            return "queued"

    def takes_qos0(self, name: str) -> bool:
        """Whether a QoS 0 command of ``name`` would be queued now (nothing taken): read
        before the message is decoded (:attr:`ingress.mqttread.ChunkedClient.qos0_gate`),
        so that a flood is dropped for a few µs a message; False counts it dropped."""
        with self._cond:
            if (self._qos0_of.get(name, 0) < CLIENT_QOS0
                    and self._qos0_tokens(name, time.monotonic()) >= 1.0):
                return True
            self.dropped += 1
            return False

    def _qos0_tokens(self, name: str, now: float) -> float:
        """The tokens in ``name``'s QoS 0 bucket at ``now`` (refilled at the rate)."""
        tokens, last = self._qos0_bucket.get(name, (float(self.qos0_burst), now))
        return min(float(self.qos0_burst), tokens + (now - last) * self.qos0_rate)

    def _qos0_token(self, name: str) -> bool:
        """Take a token of ``name``'s QoS 0 bucket; False when it is empty."""
        now = time.monotonic()
        tokens = self._qos0_tokens(name, now)
        if tokens < 1.0:
            self._qos0_bucket[name] = (tokens, now)
            return False
        self._qos0_bucket[name] = (tokens - 1.0, now)
        if len(self._qos0_bucket) > 10_000:  # names come and go: forget the full ones
            self._qos0_bucket = {k: v for k, v in self._qos0_bucket.items()
                                 if v[0] + (now - v[1]) * self.qos0_rate < self.qos0_burst}
        return True

    def _over(self, item: Item) -> str | None:
        name = item.client
        mine = self._bytes_of.get(name, 0)
        count = len(self._queues.get(name, ()))
        if count >= self.client_commands:
            return (f"orchestrator {name!r} has {count} commands waiting to be checked on "
                    f"this controller, the most one orchestrator may have: wait for their "
                    "replies before sending more")
        if mine and mine + item.size > self.client_bytes:
            return (f"orchestrator {name!r} has {mine / 2**20:.1f} MiB of commands waiting to "
                    f"be checked on this controller; one may have at most "
                    f"{self.client_bytes / 2**20:g} MiB: wait for their replies before "
                    "sending more")
        if self._bytes + item.size > self.total_bytes:
            share = self.total_bytes // max(1, len(self._queues) + (name not in self._queues))
            if mine + item.size > share:
                return (f"this controller has {self._bytes / 2**20:.0f} MiB of commands waiting "
                        f"to be checked, {mine / 2**20:.1f} MiB of them from orchestrator "
                        f"{name!r}, more than its share: send it again later")
        return None

    def get(self, *, largest: int | None = None) -> Item | None:
        """The next item to handle (a refusal first, else the round robin's); blocks;
        None once closed. ``largest``: only a command of at most this many bytes (the
        handler for small commands). An orchestrator whose command is being handled
        gets no other until :meth:`done`: its commands are handled in order."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._refused:
                    return self._refused.popleft()
                found = self._next(largest)
                if found is not None:
                    self._busy.add(found.client)
                    return found
                self._cond.wait()

    def _next(self, largest: int | None) -> Item | None:
        def ready(name: str) -> bool:
            return name not in self._busy and (largest is None
                                               or self._queues[name][0].size <= largest)

        if not any(ready(n) for n in self._turns):
            return None
        while True:
            name = self._turns[0]
            if not ready(name):
                self._turns.rotate(-1)
                continue
            queue = self._queues[name]
            head = queue[0]
            cost = head.size + OVERHEAD
            if self._deficit[name] >= cost:
                self._deficit[name] -= cost
                queue.popleft()
                if head.qos == 0:
                    self._qos0_of[name] -= 1
                    if not self._qos0_of[name]:
                        del self._qos0_of[name]
                self._bytes_of[name] -= head.size
                self._bytes -= head.size
                if not queue:  # an empty queue leaves the round, its credit too
                    del self._queues[name], self._bytes_of[name], self._deficit[name]
                    self._turns.popleft()
                return head
            self._deficit[name] += self.quantum
            self._turns.rotate(-1)

    def done(self, item: Item) -> None:
        """``item`` is handled: its orchestrator's next command may be taken."""
        if item.refused is not None:
            return
        with self._cond:
            self._busy.discard(item.client)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
