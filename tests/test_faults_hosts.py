"""Fault injection across hosts: Redis and Mosquitto on one host, the ingress on a
second, a worker on a third, each in a network namespace of its own on one switch
(:mod:`tests.netns`); the links of the ingress and the worker are slow and lossy, and
the worker's host is cut off the network for 20 s while it works.

What is real and what is emulated is found out at test time (:func:`tests.netns.probe`)
and printed: with the kernel's ``sch_netem``, ``netem delay 50ms loss 1%`` on both ends
of the ingress's and the worker's links. Without it (as on this project's machines,
whose kernel has no sch_netem), the 1 % loss each way is still the kernel's (a
classic-BPF ``cls_bpf`` filter that drops a packet when a random u32 is below 1 % of
2³², or iptables' ``statistic`` match if iptables is installed), and the 50 ms each
way comes from a userspace relay on the services host in front of Redis and Mosquitto
(each direction's bytes held 50 ms: every round trip of the ingress or the worker to
them takes 100 ms more); the test runs without the loss, saying so, if neither can
drop packets. The cut is real everywhere: the worker's switch port goes down for
20 s, the worker runs on. Skipped, with the reason, where network namespaces cannot
be made (not root, no ``ip``, no veth).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.jobboard import LEASE_S
from tests.conftest import new_id
from tests.faults.harness import (
    Parts,
    assert_gapless,
    controller_env,
    diagnose,
    wait_outbox,
    wait_worker,
)
from tests.faults.scenarios import pid_loop, static_run
from tests.netns import DelayRelay, HostMosquitto, HostRedis, Lab, LabError, probe
from tests.orchestrator import Orchestrator
from twinctl.embedded import pdeathsig_preexec

pytestmark = [pytest.mark.integration, pytest.mark.fault]

DELAY_S = 0.050
"""each way, between the ingress or the worker and the services"""
LOSS = 0.01
"""each way, on the ingress's and the worker's links"""
CUT_S = 20.0
BEFORE_CUT = 24
"""static runs sent just before the cut (most still queued when it comes)"""
DURING_CUT = 12
"""static runs sent while the worker's host is cut off"""
ANSWER_S = 90.0
"""every command answered within this after the cut ends (typically 25-30 s: the
worker's connections come back with TCP's retransmission backoff, 5-13 s, then the
jobs queued meanwhile run at ~0.6 s each over the 100 ms round trips; once 57 s)"""


class HostParts(Parts):
    """:class:`~tests.faults.harness.Parts` whose processes run on the lab's hosts
    (``hosts``: part name -> host), through ``ip netns exec``, and die with the test
    process (what is left, a pool process, goes with the lab)."""

    def __init__(self, env: dict[str, str], log_dir: Path, lab: Lab,
                 hosts: dict[str, str]) -> None:
        super().__init__(env, log_dir)
        self.lab, self.hosts = lab, hosts

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        old = self.procs.get(name)
        assert old is None or old.poll() is not None, f"{name} is still running"
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            out.write(f"\n--- start on {self.hosts[name]} at {time.time():.3f} ---\n".encode())
            out.flush()
            proc = subprocess.Popen(
                self.lab.argv(self.hosts[name], [sys.executable, "-m", "twinctl", *args]),
                env={**os.environ, **self.env, **(env or {})}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=pdeathsig_preexec(signal.SIGKILL))  # dies with the test
        self.procs[name] = proc
        return proc


@pytest.fixture()
def lab() -> Iterator[Lab]:
    """Three hosts (services, ingress, worker) on a switch; removed at the end, whatever
    happened (processes still in them killed)."""
    caps = probe()
    if caps.namespaces is not None:
        pytest.skip(f"no test hosts in network namespaces here: {caps.namespaces}")
    made = Lab(("services", "ingress", "worker"), caps=caps)
    try:
        made.up()
    except LabError as exc:
        made.close()
        pytest.skip(f"the lab's network could not be made here: {exc}")
    try:
        yield made
    finally:
        made.close()


def lease_renewed_at(client: Any, cid: str, rid: str) -> float | None:
    """When the worker running ``rid`` last renewed its lease (unix s), if it holds one."""
    score = client.zscore(f"twin:{cid}:alive", rid)
    return None if score is None else float(score) - LEASE_S


GIVEN_BACK = re.compile(r"^(\S+ \S+) ERROR twinctl\.ingress: request (\S+): its worker .* "
                        r"the job is queued again", re.M)


def given_back(ingress_log: str) -> list[tuple[float, str]]:
    """``(unix time, request id)`` of each job the ingress gave back to its queue."""
    return [(datetime.strptime(at, "%Y-%m-%d %H:%M:%S,%f").timestamp(), rid)
            for at, rid in GIVEN_BACK.findall(ingress_log)]


@pytest.mark.timeout(240)
def test_a_worker_host_cut_off_for_20_s_on_a_slow_lossy_network_loses_no_command(
        lab: Lab, tmp_path: Path) -> None:
    """The ingress and a worker (2 processes) on hosts whose links to the services'
    host have 50 ms delay and 1 % loss each way. A dynamic run L (~5 s of CPU) and 24
    static runs are sent; 3.5 s after a lease renewal of L's worker (1.5 s before the
    next one) the worker's host is cut off for 20 s, and 12 more static runs are sent
    meanwhile. The worker runs on, cut off: L's lease (20 s) runs out 16.5 s into the
    cut, its worker does not answer the ingress's ping, and the ingress gives L back to
    its queue; so L may run twice, and a reply whose store was answered into the cut
    is stored again: each is stored once (logical keys), which the checks accept.

    Asserted: the ingress acks every command sent during the cut; within 90 s of the
    end of the cut every command has exactly one ack and one result (seq 0, 1, no
    copy with other bytes), the results right; the ingress and the worker are still
    the processes started; the job board and the outbox empty at the end. Printed: what
    makes the delay and the loss, the packets dropped, when the answers came, the jobs
    given back and the replies found already stored."""
    caps = lab.caps
    assert caps is not None
    services = "services"
    svc_ip = lab.ip(services)
    redis = HostRedis(lab, services, 6379, tmp_path / "redis")
    broker = HostMosquitto(lab, services, 1883, tmp_path / "mosquitto")
    relay: DelayRelay | None = None
    orch: Orchestrator | None = None
    parts: HostParts | None = None
    try:
        redis.start()
        broker.start()
        said = [lab.impair(h, DELAY_S, LOSS) for h in ("ingress", "worker")]
        redis_url, mqtt_url = redis.url, broker.url
        if caps.netem is not None:  # the delay is ours: a relay in front of both servers
            relay = DelayRelay(lab, services, {16379: (svc_ip, 6379), 11883: (svc_ip, 1883)},
                               DELAY_S, tmp_path / "relay.log")
            relay.start()
            redis_url, mqtt_url = relay.url("redis", 16379, "/0"), relay.url("mqtt", 11883)
            said.append(f"delay: {DELAY_S * 1000:g} ms each way by a userspace relay on "
                        f"{services} in front of Redis and Mosquitto (no sch_netem: "
                        f"{caps.netem})")
        if caps.loss_method is None:
            said.append(f"NO LOSS: nothing here can drop packets ({caps.describe()})")
        print("\n" + "\n".join(said))

        env = controller_env(redis, broker, tmp_path)
        env.update(TWIN_REDIS_URL=redis_url, TWIN_MQTT_URL=mqtt_url, TWIN_LOG_LEVEL="INFO")
        prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
        # the orchestrator (this process) reaches the broker straight, not delayed
        orch = Orchestrator(svc_ip, broker.port, prefix, cid, session_expiry=600, name="orch",
                            topics=[f"{prefix}/{cid}/reply/#", f"{prefix}/{cid}/status"])
        parts = HostParts(env, tmp_path / "logs", lab, {"ingress": "ingress",
                                                        "worker": "worker"})
        started = time.monotonic()
        ingress = parts.ingress()
        orch.wait(lambda: orch.status(cid)[-1:] == ["online"], 40, "the ingress online")
        worker = parts.worker(concurrency=2)
        wait_worker(redis.url, 60)
        print(f"ingress and worker up in {time.monotonic() - started:.1f} s")
        client = redis.client()

        long_id = new_id("long")
        orch.send(pid_loop(long_id, 1600))
        ids = [new_id("s") for _ in range(BEFORE_CUT)]
        for k, rid in enumerate(ids):
            orch.send(static_run(rid, 900 + 10 * k))
        # the cut 3.5 s after a lease renewal of L's worker: the last renewal before it
        deadline = time.monotonic() + 30
        while (renewed := lease_renewed_at(client, cid, long_id)) is None:
            assert time.monotonic() < deadline, f"{long_id} never ran: {orch.types(long_id)}"
            time.sleep(0.02)
        cut_at = renewed + 3.5
        if time.time() > cut_at - 0.2:  # seen late: 3.5 s after the next one, then
            cut_at += 5.0
        time.sleep(max(0.0, cut_at - time.time()))
        answered = sum(bool(orch.finals(r)) for r in ids)
        long_final = orch.finals(long_id)
        lab.cut("worker")
        cut, cut_wall = time.monotonic(), time.time()
        print(f"worker cut off: {answered} of {BEFORE_CUT} static runs answered; "
              f"{long_id} {orch.types(long_id)}, its lease running out "
              f"{renewed + LEASE_S - cut_wall:.1f} s into the cut")
        assert answered < BEFORE_CUT and not long_final, "the cut came too late to matter"

        later = [new_id("c") for _ in range(DURING_CUT)]
        for k, rid in enumerate(later):
            orch.send(static_run(rid, 1200 + 10 * k))
        orch.wait(lambda: all(orch.has(r, "ack") for r in [*ids, *later]), CUT_S - 2,
                  "the acks of every command while the worker is cut off")
        acked_in = time.monotonic() - cut
        every = [long_id, *ids, *later]

        def answers() -> int:
            return sum(bool(orch.finals(r)) for r in every)

        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut)))
        in_cut = answers() - answered
        lab.mend("worker")
        mended, mended_wall = time.monotonic(), time.time()
        print(f"worker back after {mended - cut:.1f} s; every command acked "
              f"{acked_in:.1f} s into the cut (the ingress went on); {in_cut} answer(s) came "
              f"during the cut")

        try:
            orch.wait(lambda: answers() > answered + in_cut, ANSWER_S, "a first answer")
            first = time.monotonic() - mended
            orch.wait(lambda: answers() == len(every), ANSWER_S - first,
                      f"an answer to every command within {ANSWER_S:g} s of the cut's end")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnose(orch, redis, [cid], every)}") from None
        last = time.monotonic() - mended
        time.sleep(1.0)  # a second copy of a reply would come now
        for rid in [*ids, *later]:
            replies = assert_gapless(orch, rid, ["ack", "result"])
            assert replies[-1]["values"]["pump.head"] > 0, replies[-1]
        result = assert_gapless(orch, long_id, ["ack", "result"])[-1]
        assert result["status"] == "ok", result
        assert result["values"]["plant.y"][-1] == pytest.approx(1.0, abs=1e-6)
        assert not orch.conflicts, orch.conflicts[:3]
        assert ingress.poll() is None and worker.poll() is None, "a part died"
        print(f"every one of {len(every)} commands answered once: the first answer after "
              f"the cut {first:.1f} s after its end, the last {last:.1f} s after; "
              f"{orch.duplicates()} repeated copies (same bytes) of replies")

        # nothing left behind: the job board empty (a job run again ended too), the
        # outbox sent
        deadline = time.monotonic() + 30
        while (left := client.hkeys(f"twin:{cid}:jobs")) or client.zcard(f"twin:{cid}:alive"):
            assert time.monotonic() < deadline, f"jobs left on the board: {left}"
            time.sleep(0.2)
        wait_outbox(redis, cid, lambda n: n == 0, 15, "0 (every reply sent)")
        client.close()

        back = given_back(parts.log("ingress"))
        stored_again = parts.log("worker").count("(already sent)'")
        drops = {h: lab.drops(h) for h in ("ingress", "worker")}
        print("given back to their queue: " + (", ".join(
            f"{rid} {at - mended_wall:+.1f} s from the cut's end" for at, rid in back)
            or "none"))
        print(f"final replies found already stored when a job stored them (a store retried "
              f"after its answer was lost in the cut, or a job run again): {stored_again}")
        print("packets dropped / seen: " + ", ".join(
            f"{h} {d}/{n} ({100 * d / max(n, 1):.2f} %)" for h, (d, n) in drops.items()))
        print(f"{time.monotonic() - started:.1f} s from the ingress's start")
        if caps.loss_method is not None:
            assert sum(d for d, _ in drops.values()) > 0, f"no packet was dropped: {drops}"
    finally:
        if orch is not None:
            orch.close()
        if parts is not None:
            parts.stop()
            print(f"logs: {parts.log_dir}")
        if relay is not None:
            relay.stop()
        broker.stop()
        redis.stop()
