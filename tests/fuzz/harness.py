"""The fuzz test's plumbing: its stacks, the connection that sends and collects
(:class:`Collector`), and :class:`Fuzzer`, which makes the messages of the drawn
cases, sends them in batches of :data:`BATCH`, waits for their answers, stops the
real-time runs, and hands what came back to the oracle."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import running_stack, stack_env
from tests.fuzz.commands import Ref
from tests.fuzz.oracle import Finding, Msg, Oracle, strict_json
from tests.fuzz.protocol import FINAL, MAX_BYTES, USABLE_ID
from tests.fuzz.strategies import Case
from tests.fuzz.values import dumps
from tests.orchestrator import subscribed_client
from twinctl.stack import Stack

BATCH = 100
"""Messages sent at a time (and then a ``ping``) before their answers are awaited."""
BATCH_TIMEOUT = 45.0
"""Seconds to wait for the answers of one batch (a few seconds are needed)."""
STOP_WITHIN = 10.0
"""Seconds in which a real-time run with a short tick must end after its stop was
answered (docs/protocol.md: one tick period plus one publish)."""
TIME_BUDGET = 480.0
"""Seconds of sending after which the test stops sending and fails (it needs ~30 s)."""


@pytest.fixture(scope="module")
def fuzz_stack(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    """The fuzzed stack: commands up to :data:`~tests.fuzz.protocol.MAX_BYTES`, two
    workers and two real-time slots."""
    env = stack_env(redis_server, mqtt_server, TWIN_MAX_COMMAND_BYTES=str(MAX_BYTES),
                    TWIN_MAX_RESULT_ROWS="1000")
    with running_stack(env, tmp_path_factory.mktemp("fuzz-logs"), workers=2,
                       realtime=2) as stack:
        yield stack


@pytest.fixture()
def own_stack(redis_server: Any, mqtt_server: Any, tmp_path: Path) -> Iterator[Stack]:
    """A stack for one test: what it is sent may leave it unusable."""
    with running_stack(stack_env(redis_server, mqtt_server), tmp_path / "logs",
                       workers=1) as stack:
        yield stack


class Collector:
    """The fuzz test's connection on plain paho-mqtt (a
    :func:`tests.orchestrator.subscribed_client`): it sends the commands and indexes
    every reply by request id, each parsed as strict JSON."""

    def __init__(self, host: str, port: int, prefix: str, cid: str) -> None:
        self.reply_base = f"{prefix}/{cid}/reply/"
        self.errors_topic = f"{prefix}/{cid}/errors"
        self.cmd_topic = f"{prefix}/{cid}/cmd"
        self.cid = cid
        self.by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.finals: Counter[str] = Counter()
        self.acked_realtime: set[str] = set()
        self.errors: list[dict[str, Any]] = []
        self.unreadable: list[tuple[str, bytes, str]] = []
        self.received = 0
        self.cond = threading.Condition()
        self.client = subscribed_client(host, port, prefix, self._on_message, name="fuzz",
                                        inflight=100)

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if not (topic.startswith(self.reply_base) or topic == self.errors_topic):
            return
        try:
            body = strict_json(msg.payload)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError) as exc:
            with self.cond:
                self.unreadable.append((topic, bytes(msg.payload[:300]), str(exc)[:200]))
                self.cond.notify_all()
            return
        with self.cond:
            self.received += 1
            if topic == self.errors_topic:
                self.errors.append(body)
            else:
                rid = topic[len(self.reply_base):]
                self.by_id[rid].append(body)
                if body.get("type") in FINAL:
                    self.finals[rid] += 1
                elif body.get("type") == "ack" and body.get("queue") == "twin.realtime":
                    self.acked_realtime.add(rid)
            self.cond.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float) -> None:
        """Until ``done()`` (called with the lock held) or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not done() and time.monotonic() < deadline:
                self.cond.wait(0.5)

    def publish(self, payloads: list[bytes]) -> None:
        infos = [self.client.publish(self.cmd_topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rss_kb(pid: int) -> int:
    """The resident memory of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


class Fuzzer:
    def __init__(self, stack: Stack, collector: Collector) -> None:
        self.stack, self.col = stack, collector
        self.tag = uuid.uuid4().hex[:6]
        self.n = 0
        self.sent: list[Msg] = []
        self.generated = 0
        self.pending: list[Case] = []
        self.findings: list[Finding] = []
        self.jobs: list[str] = []
        self.realtime: list[tuple[str, list[str]]] = []
        self.instances: list[str] = []
        self.stop_targets: set[str] = set()
        self.expected_errors: list[Msg] = []
        self.aborted: str | None = None
        self.batches = 0
        self.batch_seconds: list[float] = []
        self.started = time.monotonic()
        self.slow: list[tuple[int, list[str]]] = []
        self.stop_sent: dict[str, tuple[Msg, float]] = {}
        self.restops: Counter[str] = Counter()

    # -- making messages
    def new_id(self, suffix: str = "") -> str:
        self.n += 1
        return (f"fz{self.tag}.{self.n}" + suffix)[:128]

    def _resolve(self, doc: Any) -> Any:
        if isinstance(doc, Ref):
            if doc.what == "new_instance":
                self.n += 1
                iid = f"FZ-{self.tag}-{self.n}"
                self.instances.append(iid)
                return iid
            if doc.what == "instance":
                return self.instances.pop() if self.instances else f"FZ-{self.tag}-none"
            if doc.what == "job":
                target = self.jobs[-1 - doc.pick % len(self.jobs)] if self.jobs else "no-such"
                self.stop_targets.add(target)
                return target
            if doc.what == "realtime":
                return (self.realtime[-1 - doc.pick % len(self.realtime)][0] if self.realtime
                        else "no-such-rt")
            if doc.what == "realtime_inputs":
                ports = self.realtime[-1][1] if self.realtime else ["lag.u"]
                return {ports[0]: (doc.pick - 500) / 10}
        if isinstance(doc, dict):
            return {k: self._resolve(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self._resolve(v) for v in doc]
        return doc

    def _make(self, case: Case) -> list[Msg]:
        if case.raw is not None:
            rid = self.new_id()
            return [Msg(0, case.raw.replace(b"@ID@", rid.encode()), case.kind)]
        body = self._resolve(case.body)
        if case.id_value == "new":
            rid = self.new_id(case.id_suffix)
            doc = {"id": rid, **body} if isinstance(body, dict) else body
        elif case.id_value == "none":
            rid, doc = None, {k: v for k, v in body.items() if k != "id"}
        else:
            rid = case.id_value
            if isinstance(rid, str) and rid.endswith("@UNIQ@"):
                rid = (rid[:-6] + self.new_id())[-128:]
            doc = {"id": rid, **{k: v for k, v in body.items() if k != "id"}}
        payload = dumps(doc, ascii_only=case.ascii_only)
        if case.bytes_op is not None:
            op, frac, junk_bytes = case.bytes_op
            if op == "truncate":
                payload = payload[:int(len(payload) * frac)]
            elif op == "garbage":
                at = int(len(payload) * frac)
                payload = payload[:at] + junk_bytes + payload[at:]
            elif op == "pad_to":
                doc["pad"] = ""
                short = dumps(doc)
                doc["pad"] = "x" * (int(frac) - len(short))
                payload = dumps(doc)
        msgs = [Msg(0, payload, case.kind, expect_ok=case.expect_ok, codes=case.codes,
                    allowed=case.allowed)]
        if isinstance(doc, dict) and doc.get("cmd") in ("run", "call") and isinstance(rid, str) \
                and USABLE_ID.fullmatch(rid):
            self.jobs = [*self.jobs[-30:], rid]
            scenario = doc.get("scenario")
            if isinstance(scenario, dict) and scenario.get("mode") == "realtime":
                given = scenario.get("inputs")
                ports = [k for k in given if isinstance(k, str)] if isinstance(given, dict) \
                    else []
                ports = ports or ["lag.u"]
                self.realtime = [*self.realtime[-10:], (rid, ports)]
        if case.twin is not None and isinstance(rid, str):
            twin = {"id": rid, **self._resolve(case.twin)}
            msgs.append(Msg(0, dumps(twin), case.kind + " (its id again)",
                            codes=frozenset({"duplicate_id"})))
        return msgs

    def add(self, cases: list[Case]) -> None:
        if self.aborted:
            return
        self.pending.extend(cases)
        while len(self.pending) >= BATCH and not self.aborted:
            batch, self.pending = self.pending[:BATCH], self.pending[BATCH:]
            self.run_batch(batch)

    def flush(self) -> None:
        if self.pending and not self.aborted:
            batch, self.pending = self.pending, []
            self.run_batch(batch)

    # -- sending and waiting
    def send(self, msgs: list[Msg]) -> None:
        for m in msgs:
            m.index = len(self.sent)
            m.classify()
            self.sent.append(m)
            if m.rid is None:
                self.expected_errors.append(m)
        self.col.publish([m.payload for m in msgs])

    def waiting_jobs(self, msgs: list[Msg]) -> list[Msg]:
        """The jobs (``run``, ``call``) acknowledged but not answered yet. (The
        ingress answers everything else itself before it reads the next command.)"""
        need: Counter[str] = Counter(m.rid for m in msgs if m.rid is not None)
        jobs = {m.rid for m in msgs if m.cmd in ("run", "call")}
        return [m for m in msgs if m.rid in jobs and m.rid is not None
                and self.col.by_id.get(m.rid) and self.col.finals[m.rid] < need[m.rid]]

    def run_batch(self, cases: list[Case]) -> None:
        """Send a batch and wait for its answers. The ingress handles the commands in
        order and its outbox sends in order, so once the ``pong`` of a ``ping`` sent
        last is in, every first reply and every error of the batch is in too: a
        message with no reply then has none coming; only running jobs are waited for."""
        started = time.monotonic()
        msgs = [m for case in cases for m in self._make(case)]
        self.generated += len(msgs)
        sentinel = Msg(0, dumps({"id": self.new_id(".end"), "cmd": "ping"}),
                       "ping after a batch", expect_ok=True)
        msgs.append(sentinel)
        self.send(msgs)
        sent = time.monotonic()
        deadline = sent + BATCH_TIMEOUT
        while True:
            with self.col.cond:
                if self.col.finals[sentinel.rid or ""] < 1:
                    missing = [sentinel]
                else:
                    missing = self.waiting_jobs(msgs)
                if not missing:
                    break
                # a real-time run still going when the rest is answered (or after a few
                # seconds): stop it, with a `stop` that is a message of its own
                running = self.to_stop(missing)
                others = [m for m in missing if m.rid not in self.col.acked_realtime]
                if not running or (others and time.monotonic() - sent < 3.0):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.col.cond.wait(min(left, 0.25))
                    continue
            stops = self.stops(running)
            msgs += stops
            self.send(stops)
        took = time.monotonic() - started
        if took >= BATCH_TIMEOUT:
            with self.col.cond:
                done = self.col.finals[sentinel.rid or ""]
                late = self.waiting_jobs(msgs) if done else [sentinel]
            self.slow.append((self.batches, [m.show(300) for m in late[:3]]))
        self.batches += 1
        self.batch_seconds.append(took)
        if self.stack.procs["ingress"].poll() is not None:
            self.aborted = (f"the ingress exited (code {self.stack.procs['ingress'].returncode})"
                            f" during batch {self.batches}")
        elif len(self.batch_seconds) >= 3 and min(self.batch_seconds[-3:]) >= BATCH_TIMEOUT:
            self.aborted = (f"three batches in a row were not answered within "
                            f"{BATCH_TIMEOUT:.0f} s; stopped sending")
        elif time.monotonic() - self.started > TIME_BUDGET:
            self.aborted = (f"the fuzzing took more than {TIME_BUDGET:.0f} s; stopped after "
                            f"{self.generated} messages")

    def stops(self, targets: list[str]) -> list[Msg]:
        self.stop_targets.update(targets)
        msgs = [Msg(0, dumps({"id": self.new_id(".stop"), "cmd": "stop", "target": r}),
                    "stop of a real-time run", expect_ok=True, allowed=frozenset({"unknown_job"}))
                for r in targets]
        for target, m in zip(targets, msgs, strict=True):
            self.stop_sent[target] = (m, time.monotonic())
        return msgs

    def to_stop(self, missing: list[Msg]) -> list[str]:
        """The real-time runs among ``missing`` to send a ``stop`` (with the lock held):
        those not sent one yet, and those still going after their ``stop`` was
        answered: ``unknown_job`` for a run acknowledged and not ended, or a stop
        that took more than :data:`STOP_WITHIN` on a short tick (findings both)."""
        out = []
        runs = {m.rid: m for m in missing if m.rid in self.col.acked_realtime}
        for rid, run in sorted(runs.items()):
            if rid is None:
                continue
            if rid not in self.stop_sent:
                out.append(rid)
                continue
            stop, at = self.stop_sent[rid]
            finals = [r for r in self.col.by_id.get(stop.rid or "", []) if r.get("type") in FINAL]
            waited = time.monotonic() - at
            if not finals or self.col.finals[rid] or self.restops[rid] >= 5:
                continue
            lost = finals[0].get("code") == "unknown_job"
            if (lost and waited > 0.5) or waited > STOP_WITHIN:
                if not self.restops[rid] and (lost or _tick(run.doc) <= 0.5):
                    self.findings.append(Finding(
                        f"a stop answered {finals[0].get('code') or finals[0].get('state')} "
                        f"but its real-time run went on (acknowledged, not ended "
                        f"{waited:.1f} s later)", stop,
                        f"the run {rid}: {json.dumps(self.col.by_id.get(rid, [])[:2])[:300]}; "
                        f"the stop: {json.dumps(finals[0])[:200]}"))
                self.restops[rid] += 1
                out.append(rid)
        return out

    def drain(self, timeout: float) -> None:
        """After the last batch: wait for the last answers (slow runs), stopping the
        real-time runs still going."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.col.cond:
                missing = self.waiting_jobs(self.sent)
                if not missing:
                    break
                running = self.to_stop(missing)
                if not running:
                    self.col.cond.wait(0.5)
                    continue
            self.send(self.stops(running))

    def check(self) -> None:
        """Compare everything that came back with what had to (after the last batch)."""
        self.findings += Oracle(self.col, self.stop_targets).check(self.sent,
                                                                   self.expected_errors)


def _tick(doc: Any) -> float:
    """Seconds of wall-clock time between two ticks of a real-time run (inf if unknown)."""
    try:
        sc = doc["scenario"]
        return float(sc["time"]["step"]) / float((sc.get("realtime") or {}).get("speed", 1))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return math.inf
