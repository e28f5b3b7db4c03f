"""The fault tests' harness: their own servers, controller processes started and killed
by the test, waits on what Redis holds, and checks of what the orchestrator got."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.outbox import request_key
from tests.conftest import stack_env
from tests.orchestrator import FINAL, Orchestrator
from tests.services import MosquittoProcess, RedisProcess, free_port
from twinctl.stack import Stack, stop_process_groups

LPUSH = b"\r\nLPUSH\r\n"
"""The Redis command (RESP) by which kombu queues a Celery job."""
EVALSHA = b"\r\nEVALSHA\r\n"
"""The Redis command (RESP) of a Lua script: how the outbox stores a reply."""


class BugSymptom(AssertionError):
    """The symptom of a known product bug (a command unanswered, a reply stuck): the one
    failure an xfail test expects (``raises=BugSymptom``), so that any other failure of
    it — the harness, a start-up — still shows as a failure."""


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------


class Servers:
    """Factory for a test's own Redis and Mosquitto; all stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[RedisProcess | MosquittoProcess] = []

    def redis(self, appendonly: bool = False) -> RedisProcess:
        srv = RedisProcess(free_port(), self.root / f"redis-{len(self.started)}", appendonly)
        self.started.append(srv)
        srv.start()
        return srv

    def mosquitto(self) -> MosquittoProcess:
        srv = MosquittoProcess(free_port(), self.root / f"mosquitto-{len(self.started)}")
        self.started.append(srv)
        srv.start()
        return srv

    def stop(self) -> None:
        for srv in reversed(self.started):
            srv.stop()


def controller_env(redis: RedisProcess, broker: MosquittoProcess, tmp: Path,
                   **extra: str) -> dict[str, str]:
    """stack_env's settings (own controller id, prefix, instances) on our own servers, DB 0."""
    env = stack_env(redis, broker, **extra)
    env["TWIN_REDIS_URL"] = redis.url
    env["TWIN_INSTANCES"] = str(tmp / f"instances-{env['TWIN_CONTROLLER_ID']}")
    return env


# --------------------------------------------------------------------------
# controller processes
# --------------------------------------------------------------------------


def spawn_twinctl(args: list[str], env: dict[str, str], log: Path,
                  banner: str) -> subprocess.Popen[bytes]:
    """``python -m twinctl *args`` in a session of its own, its output appended to
    ``log`` after a line ``--- <banner> at <time> ---``."""
    with open(log, "ab") as out:
        out.write(f"\n--- {banner} at {time.time():.3f} ---\n".encode())
        out.flush()
        return subprocess.Popen([sys.executable, "-m", "twinctl", *args],
                                env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


class Parts:
    """Controller processes (``python -m twinctl ingress|worker``) started by the test.

    Each runs in its own session with its output in ``log_dir/<name>.log`` (appended
    across restarts); :meth:`stop` ends them all (SIGTERM, then SIGKILL).
    """

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        old = self.procs.get(name)
        assert old is None or old.poll() is not None, f"{name} is still running"
        proc = spawn_twinctl(list(args), {**self.env, **(env or {})},
                             self.log_dir / f"{name}.log", "start")
        self.procs[name] = proc
        return proc

    def ingress(self, name: str = "ingress", env: dict[str, str] | None = None,
                ) -> subprocess.Popen[bytes]:
        return self.spawn(name, "ingress", env=env)

    def worker(self, concurrency: int = 1, name: str = "worker") -> subprocess.Popen[bytes]:
        return self.spawn(name, "worker", "--concurrency", str(concurrency))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        kill_proc(self.procs[name], sig)

    def log(self, name: str) -> str:
        return log_text(self.log_dir / f"{name}.log")

    def stop(self) -> None:
        stop_process_groups(list(self.procs.values()), timeout=10)


@dataclass
class Controller:
    """One controller of a fault test on its own servers: nothing started yet but the
    servers and the orchestrator (``parts`` starts the ingress and workers)."""

    redis: RedisProcess
    broker: MosquittoProcess
    env: dict[str, str]
    prefix: str
    cid: str
    orch: Orchestrator
    parts: Parts

    def online(self) -> None:
        """The ingress started, and its retained status online."""
        self.parts.ingress()
        self.orch.wait(lambda: self.orch.status(self.cid)[-1:] == ["online"], 30,
                       "the ingress online")


def controller(servers: Servers, orchestrators: Callable[..., Orchestrator], tmp: Path,
               *, appendonly: bool = False) -> Controller:
    redis, broker = servers.redis(appendonly=appendonly), servers.mosquitto()
    env = controller_env(redis, broker, tmp)
    prefix, cid = env["TWIN_MQTT_PREFIX"], env["TWIN_CONTROLLER_ID"]
    return Controller(redis, broker, env, prefix, cid, orchestrators(broker, prefix, cid),
                      Parts(env, tmp / "logs"))


def kill_proc(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(15)


def log_text(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except OSError:
        return ""


def respawn_ingress(stack: Stack) -> subprocess.Popen[bytes]:
    """Start a stack's ingress again, as the stack does (same env: same MQTT client id)."""
    old = stack.procs["ingress"]
    assert old.poll() is not None, "the old ingress is still running"
    assert stack.log_dir is not None
    proc = spawn_twinctl(["ingress"], stack.env, stack.log_dir / "ingress.log", "restart")
    stack.procs["ingress"] = proc
    return proc


def wait_worker(redis_url: str, timeout: float = 60.0, count: int = 1) -> None:
    """Until ``count`` Celery workers answer ping on this broker."""
    from celery import Celery

    app = Celery(broker=redis_url)
    deadline = time.monotonic() + timeout
    try:
        while len(app.control.ping(timeout=0.5) or []) < count:
            assert time.monotonic() < deadline, \
                f"fewer than {count} Celery worker(s) answered within {timeout} s"
    finally:
        app.close()


def pool_children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Celery's prefork pool), from /proc."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def busy_child(pid: int, timeout: float = 15.0, window: float = 0.4) -> int:
    """The pool child of ``pid`` that is burning CPU (running a job)."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = pool_children(pid)
        before = {k: cpu_ticks(k) for k in kids}
        time.sleep(window)
        used = {k: (cpu_ticks(k) - before[k]) / hz for k in kids}
        busy = sorted((s, k) for k, s in used.items() if s >= window * 0.25)
        if len(busy) == 1 or (len(busy) > 1 and busy[-1][0] >= 3 * busy[-2][0]):
            return busy[-1][1]
    raise AssertionError(f"no single busy pool child of {pid} within {timeout} s")


# --------------------------------------------------------------------------
# what the orchestrator got, and what Redis holds
# --------------------------------------------------------------------------


def assert_gapless(orch: Orchestrator, rid: str, kinds: list[str] | None = None,
                   controller: str | None = None) -> list[dict[str, Any]]:
    """One request's replies: seq 0..n without a gap, exactly one final, the last."""
    replies = orch.distinct(rid, controller)
    seqs = [r["seq"] for r in replies]
    assert seqs == list(range(len(replies))), f"{rid}: seq {seqs} has a gap"
    types = [r["type"] for r in replies]
    assert sum(t in FINAL for t in types) == 1 and types[-1] in FINAL, f"{rid}: {types}"
    if kinds is not None:
        assert types == kinds, f"{rid}: {types}"
    return replies


def diagnose(orch: Orchestrator, redis: RedisProcess, cids: list[str], ids: list[str]) -> str:
    """For a failure message: each unanswered id, what the orchestrator got for it and
    what Redis holds about it (which controller claimed it, its seq counter), and each
    controller's outbox length and the Celery queues' lengths."""
    client = redis.client()
    try:
        lines = []
        for rid in ids:
            if orch.finals(rid):
                continue
            held = {c: tuple(client.hmget(request_key(c, rid), "!", "#")) for c in cids}
            lines.append(f"  {rid}: got {orch.types(rid)} from {sorted(orch.controllers(rid))};"
                         f" claimed/seq in Redis {held}")
        lines.append("  outboxes " + str({c: client.xlen(f"twin:{c}:outbox") for c in cids}))
        lines.append("  queues " + str({q: client.llen(q) for q in ("twin.short", "twin.long")}))
        lines.append("  unacked " + str(client.hlen("unacked")))
        return "\n".join(lines)
    finally:
        client.close()


def wait_persisted(orch: Orchestrator) -> None:
    """Mosquitto saves its sessions every other second (autosave_interval 1): after a
    SIGKILL the broker comes back with the orchestrator's session only once it was saved."""
    time.sleep(max(0.0, orch.subscribed_at + 3.2 - time.monotonic()))


def outbox_len(redis: RedisProcess, cid: str) -> int:
    client = redis.client()
    try:
        return int(client.xlen(f"twin:{cid}:outbox"))
    finally:
        client.close()


def wait_outbox(redis: RedisProcess, cid: str, pred: Callable[[int], bool], timeout: float,
                what: str) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = outbox_len(redis, cid)
        if pred(n):
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox of {cid}: {n} entries after {timeout:.0f} s, "
                                 f"wanted {what}")
        time.sleep(0.05)


def wait_queue(redis: RedisProcess, queue: str, n: int, timeout: float) -> None:
    client = redis.client()
    try:
        deadline = time.monotonic() + timeout
        while (got := client.llen(queue)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{got} of {n} jobs in {queue} after {timeout} s")
            time.sleep(0.05)
    finally:
        client.close()
