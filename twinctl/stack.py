"""The whole stack on one machine: services (found or embedded), ingress, workers, Flower.

``twinctl up`` and ``twinctl demo`` use :class:`Stack`; so do the end-to-end
tests and the benchmarks, which start it as a user would.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.settings import Settings, load_settings
from tasks import queues

from . import embedded

__all__ = ["Stack", "StackError", "resolve_services", "stop_process_groups"]

log = logging.getLogger("twinctl.stack")

FLOWER_TASKS_COLUMNS = "name,uuid,state,args,kwargs,received,runtime,worker"
"""Flower's task list columns: its default leaves out args and kwargs."""


class StackError(RuntimeError):
    """A part of the stack could not start; the message says which and why."""


def resolve_services(
    env: Mapping[str, str],
    *,
    say: bool = True,
    prefer_binary: bool = True,
    answers: Callable[[str, int], bool] = embedded.port_answers,
) -> tuple[dict[str, str], list[embedded.EmbeddedService]]:
    """Use configured or running Redis/MQTT; start embedded ones where neither.

    Returns the environment additions (``TWIN_REDIS_URL``/``TWIN_MQTT_URL``) and
    the embedded services started (stop them when done).
    """
    settings = load_settings(env)
    extra: dict[str, str] = {}
    started: list[embedded.EmbeddedService] = []
    redis_parts = urlsplit(settings.redis_url)
    if not settings.redis_configured and not answers(
        redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379
    ):
        svc = embedded.start_redis(prefer_binary=prefer_binary)
        started.append(svc)
        extra["TWIN_REDIS_URL"] = svc.url
        if say:
            print(f"twinctl: no Redis configured or running; started {svc.description}",
                  flush=True)
    if not settings.mqtt_configured and not answers(
        settings.mqtt.host, settings.mqtt.port
    ):
        svc = embedded.start_mqtt(prefer_binary=prefer_binary)
        started.append(svc)
        extra["TWIN_MQTT_URL"] = svc.url
        if say:
            print(f"twinctl: no MQTT broker configured or running; started {svc.description}",
                  flush=True)
    return extra, started


def stop_process_groups(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM each child's process group, wait, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
RESTART_RESET_S = 300.0
"""A part that dies is restarted after 1 s, then 2, 4… at most 60 s apart; a part that
ran this long before it died starts the count again."""


@dataclass
class Stack:
    """Ingress, workers and optionally Flower as child processes."""

    env: dict[str, str]
    workers: int = 2
    flower: bool = False
    flower_port: int = 5555
    pool: str = "prefork"
    realtime: int = 0
    """real-time job slots (a worker of their own on ``twin.realtime``; 0: none)"""
    short: int = 1
    """slots kept for short work (static runs, calls: a worker of its own on
    ``twin.short``), so that long dynamic runs holding every batch slot cannot starve
    them; 0: none"""
    batch_nice: int = 5
    """niceness added to the batch workers, so real-time ticks win the CPU"""
    quiet: bool = False
    log_dir: Path | None = None
    """with ``quiet``: write each part's output to ``log_dir/<part>.log``"""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    services: list[embedded.EmbeddedService] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    """each part's quick restarts in a row (the backoff's exponent, :meth:`supervise`)"""
    restarted: dict[str, int] = field(default_factory=dict)
    """how often each part was restarted by :meth:`supervise`; also counted in Redis
    for the retained status (``restarts``)"""
    _argv: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _started: dict[str, float] = field(default_factory=dict, repr=False)
    _due: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    def start(self, *, embedded_ok: bool = True, **resolve: Any) -> None:
        """Start the parts; ``resolve`` goes to :func:`resolve_services`."""
        if embedded_ok:
            extra, self.services = resolve_services(
                self.env, say=not self.quiet or self.log_dir is not None, **resolve)
            self.env.update(extra)
        settings = self.settings
        self._count_restart(None)  # a new stack: no restarts yet
        py = [sys.executable, "-m", "twinctl"]
        self._spawn("ingress", [*py, "ingress"])
        self._spawn("worker", [*py, "worker", "--concurrency", str(self.workers),
                               "--pool", self.pool, "--nice", str(self.batch_nice)])
        if self.short:
            self._spawn("short-worker", [*py, "worker", "--queues", queues.SHORT,
                                         "--concurrency", str(self.short), "--pool",
                                         self.pool, "--nice", str(self.batch_nice)])
        if self.realtime:
            self._spawn("realtime-worker", [*py, "worker", "--queues", queues.REALTIME,
                                            "--concurrency", str(self.realtime)])
        if self.flower:
            flower = [sys.executable, "-m", "celery", "-A", "tasks.app", "flower",
                      f"--port={self.flower_port}", "--address=127.0.0.1"]
            if "FLOWER_TASKS_COLUMNS" not in {**os.environ, **self.env}:
                # the task list shows the request id (args) and the summary (kwargs)
                flower.append(f"--tasks_columns={FLOWER_TASKS_COLUMNS}")
            self._spawn("flower", flower)
        if not self.quiet or self.log_dir is not None:
            print(f"twinctl: controller {settings.controller_id!r} on {settings.mqtt.url}, "
                  f"Redis {settings.redis_url_safe}, {self.workers} worker process(es), "
                  f"{self.short} slot(s) for short work, {self.realtime} real-time slot(s)"
                  + (f", Flower on http://127.0.0.1:{self.flower_port}" if self.flower else ""),
                  flush=True)

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._argv[name], self._started[name] = argv, time.monotonic()
        env = {**os.environ, **self.env, queues.SUPERVISOR_ENV: str(os.getpid())}
        out: Any = None
        if self.quiet:
            out = subprocess.DEVNULL
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT if self.quiet else None,
            start_new_session=True,
            preexec_fn=embedded.pdeathsig_preexec(),  # no orphans if this process is killed
        )
        if hasattr(out, "close"):
            out.close()  # the child holds its own copy

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart the parts that exited, each after a backoff (1 s, doubling to 60 s;
        back to 1 s once it has run 5 minutes); the lines to say, one per event."""
        now = time.monotonic() if now is None else now
        said: list[str] = []
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            due = self._due.get(name)
            if due is None:
                ran = now - self._started.get(name, now)
                count = 0 if ran >= RESTART_RESET_S else self.restarts.get(name, 0)
                delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** count)
                self._due[name] = now + delay
                said.append(f"twinctl: the {name} stopped (exit code {proc.returncode}) after "
                            f"{ran:.0f} s; restarting it in {delay:g} s")
                self.restarts[name] = count
            elif now >= due:
                del self._due[name]
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.restarted[name] = self.restarted.get(name, 0) + 1
                self._count_restart(name)
                self._spawn(name, self._argv[name])
                said.append(f"twinctl: the {name} restarted (restart "
                            f"{self.restarts[name]})")
        return said

    def _count_restart(self, name: str | None) -> None:
        """Count a restart of ``name`` in Redis (None: clear the counts), where the
        ingress reads them for its status; Redis away: not counted, said once."""
        import redis

        from ingress.monitor import restarts_key

        key = restarts_key(self.settings.controller_id)
        try:
            client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2.0,
                                          socket_connect_timeout=2.0,
                                          **self.settings.redis_options)
            try:
                if name is None:
                    client.delete(key)
                else:
                    client.hincrby(key, name, 1)
            finally:
                client.close()
        except redis.RedisError as exc:
            log.warning("twinctl: restart of the %s not counted in the status: %s",
                        name or "stack", exc)

    def failed(self) -> str | None:
        """The name of a part that exited, if any."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return f"{name} (exit code {proc.returncode})"
        return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the ingress is online (retained status) and a worker answers ping."""
        import paho.mqtt.client as mqtt

        from ingress.mqttconn import negotiate_protocol, new_client

        settings = self.settings
        deadline = time.monotonic() + timeout
        online = False
        proto = negotiate_protocol(settings.mqtt)
        client = new_client(settings.mqtt, protocol=mqtt.MQTTv5 if proto == "5" else mqtt.MQTTv311)

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            nonlocal online
            online = b'"online"' in msg.payload

        client.on_message = on_message
        client.on_connect = lambda c, *a: c.subscribe(settings.topic("status"), 1)
        client.connect(settings.mqtt.host, settings.mqtt.port)
        client.loop_start()
        try:
            while not online:
                bad = self.failed()
                if bad:
                    raise StackError(f"the {bad} stopped while starting")
                if time.monotonic() > deadline:
                    raise StackError(f"the ingress was not online within {timeout:.0f} s")
                time.sleep(0.05)
        finally:
            client.disconnect()
            client.loop_stop()
        self._wait_worker(deadline)

    def _wait_worker(self, deadline: float) -> None:
        from celery import Celery

        app = Celery(broker=self.settings.redis_url)
        app.conf.broker_use_ssl = self.settings.redis_ssl
        try:
            while True:
                bad = self.failed()
                if bad:
                    raise StackError(f"the {bad} stopped while starting")
                if app.control.ping(timeout=0.5):
                    return
                if time.monotonic() > deadline:
                    raise StackError("no Celery worker answered within the start-up time")
        finally:
            app.close()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every part (Celery finishes running jobs), then SIGKILL what is left."""
        stop_process_groups(list(self.procs.values()), timeout)
        for svc in self.services:
            svc.stop()
        self.services = []
