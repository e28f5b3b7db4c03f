"""Redis and Mosquitto servers that a fault-injection test can kill and bring back.

Unlike :mod:`twinctl.embedded` (throw-away servers in a temp dir that vanishes on
stop), these keep their port and their data directory across restarts, so a test
can SIGKILL a server and start it again "after a crash" with whatever it had
persisted: Redis's append-only file, Mosquitto's ``mosquitto.db``.

Every server binds 127.0.0.1 on a port the test chose (:func:`free_port`), never
the machine's shared ones, unless it is given another ``host`` (the address of a test
host in a network namespace, :mod:`tests.netns`). Each child is asked
(``PR_SET_PDEATHSIG``) to die with the test process, and :meth:`stop` (used by the
fixtures' finalizers) kills it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from twinctl import embedded

__all__ = ["HOST", "ServerError", "free_port", "RedisProcess", "MosquittoProcess", "HoldingProxy",
           "mqtt_connack"]

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not start (or not in time); the message has its log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (released before returning)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class _Server:
    """One server process on a fixed port and data directory; restartable."""

    name = "server"
    start_timeout = 20.0

    def __init__(self, port: int, dir: str | os.PathLike[str], host: str = HOST) -> None:
        self.port = port
        self.host = host
        """the address it binds and is reached at (127.0.0.1 unless told)"""
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # ----- to be provided --------------------------------------------------
    def argv(self) -> list[str]:
        raise NotImplementedError

    def probe(self, remaining: float) -> str | None:
        """None when the server is ready, else why not."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    # ----- life cycle -------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float | None = None) -> None:
        """Start the server (it must not be running) and wait until it answers."""
        if self.running:
            raise ServerError(f"{self.name} on port {self.port} is already running")
        log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115
        try:
            log.write(f"\n--- start #{self.starts + 1} at {time.time():.3f} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=embedded.pdeathsig_preexec(signal.SIGKILL),
            )
        finally:
            log.close()
        self.starts += 1
        self._wait_ready(self.start_timeout if timeout is None else timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        reason = "not started"
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} on port {self.port} exited with code "
                                  f"{self.proc.returncode} while starting:\n{_tail(self.log_path)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise ServerError(f"{self.name} on port {self.port} not ready after "
                                  f"{timeout:g} s ({reason}):\n{_tail(self.log_path)}")
            result = self.probe(remaining)
            if result is None:
                return
            reason = result
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash; whatever was not persisted is gone."""
        self._signal(signal.SIGKILL, 10.0)

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM (a clean stop: the server saves what it keeps), SIGKILL after ``timeout``."""
        if not self._signal(signal.SIGTERM, timeout):
            self.kill()

    def _signal(self, sig: int, timeout: float) -> bool:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def restart(self, *, hard: bool = True, timeout: float | None = None) -> None:
        """Stop the server if it runs (SIGKILL, or SIGTERM with ``hard=False``), start it
        again on the same port and with the same data directory."""
        if hard:
            self.kill()
        else:
            self.terminate()
        self.start(timeout)

    def stop(self) -> None:
        """For finalizers: make sure the process is gone."""
        self.kill()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "down"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} dir={self.dir}>"


class RedisProcess(_Server):
    """``redis-server`` on ``port`` with its data in ``dir``.

    With ``appendonly`` every write is in the append-only file, fsynced before the
    reply (``appendfsync always``), so a SIGKILL loses nothing acknowledged; without
    it nothing is saved at all (``save ""``), so a restart comes back empty.
    """

    name = "redis"

    def __init__(self, port: int, dir: str | os.PathLike[str], appendonly: bool = False,
                 host: str = HOST) -> None:
        super().__init__(port, dir, host)
        self.appendonly = appendonly
        self.exe = shutil.which("redis-server") or "redis-server"

    def argv(self) -> list[str]:
        return [
            self.exe,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "notice",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, db: int = 0, timeout: float = 5.0) -> Any:
        """A redis-py client for this server that does not retry by itself."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(host=self.host, port=self.port, db=db, socket_timeout=timeout,
                           socket_connect_timeout=min(timeout, 1.0), retry=Retry(NoBackoff(), 0))

    def probe(self, remaining: float) -> str | None:
        import redis

        client = self.client(timeout=min(1.0, max(remaining, 0.05)))
        try:
            return None if client.ping() else "PING failed"
        except redis.BusyLoadingError:
            return "loading its data"
        except redis.RedisError as exc:
            return f"PING failed: {exc}"
        finally:
            client.close()


class MosquittoProcess(_Server):
    """``mosquitto`` on ``port`` with its persistence file in ``dir`` (saved every second
    and on a clean stop; a SIGKILL loses what changed since the last save)."""

    name = "mosquitto"

    def __init__(self, port: int, dir: str | os.PathLike[str], host: str = HOST) -> None:
        super().__init__(port, dir, host)
        self.exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else "mosquitto")
        self.conf = self.dir / "mosquitto.conf"

    def argv(self) -> list[str]:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto" and cannot write dir
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [self.exe, "-c", str(self.conf)]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def connected_clients(self) -> set[str]:
        """The client ids connected now, as the broker's log tells (since its last start)."""
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return set()
        clients: set[str] = set()
        for line in text.rsplit("\n--- start #", 1)[-1].splitlines():
            msg = line.split(": ", 1)[-1]
            if msg.startswith("New client connected from ") and " as " in msg:
                clients.add(msg.split(" as ", 1)[1].split(" (", 1)[0])
            elif msg.startswith("Client ") and (
                    " disconnected" in msg or " closed its connection" in msg
                    or " already connected, closing old connection" in msg
                    or " has exceeded timeout" in msg):
                clients.discard(msg[len("Client "):].split(" ", 1)[0])
            elif msg.startswith("Socket error on client "):
                clients.discard(msg[len("Socket error on client "):].split(",", 1)[0])
        return clients

    def wait_gone(self, fragment: str, timeout: float = 10.0) -> None:
        """Until no client whose id contains ``fragment`` is connected."""
        deadline = time.monotonic() + timeout
        while left := [c for c in self.connected_clients() if fragment in c]:
            if time.monotonic() > deadline:
                raise ServerError(f"clients {left} still connected after {timeout} s")
            time.sleep(0.05)

    def probe(self, remaining: float) -> str | None:
        """None once the broker sends a CONNACK, else why not (the embedded module's probe
        on 127.0.0.1, a bare MQTT 3.1.1 CONNECT elsewhere)."""
        if self.host == HOST:
            return embedded.mqtt_probe(self.port)(remaining)
        return mqtt_connack(self.host, self.port, min(1.0, max(remaining, 0.05)))


def mqtt_connack(host: str, port: int, timeout: float) -> str | None:
    """None if an MQTT broker at ``host:port`` accepts a clean MQTT 3.1.1 session (its
    CONNACK with return code 0, then a DISCONNECT), else why not."""
    client_id = f"probe-{os.getpid()}-{time.monotonic_ns() % 10**9}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            got = b""
            while len(got) < 4:
                chunk = sock.recv(4 - len(got))
                if not chunk:
                    return "closed before its CONNACK"
                got += chunk
            if got[0] != 0x20 or got[3] != 0:
                return f"no accepting CONNACK: {got.hex()}"
            sock.sendall(b"\xe0\x00")
    except OSError as exc:
        return f"connect: {exc}"
    return None


class HoldingProxy:
    """A TCP proxy ``127.0.0.1:port`` → ``127.0.0.1:target`` that, once armed, holds the
    first chunk a client sends containing a byte pattern: that chunk and everything
    after it on that connection are never forwarded, and the connection stays open,
    so the client waits for a reply forever (until the test kills it).

    Put between a process and Redis, it stops the process at a chosen command (e.g.
    the ``LPUSH`` that queues a Celery job) deterministically; :meth:`release` lets
    that command through and can arm the next stop.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pattern: bytes | None = None
        self.held = threading.Event()
        self.held_chunk = b""
        self._held_at: tuple[socket.socket, socket.socket] | None = None
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def arm(self, pattern: bytes) -> None:
        with self._lock:
            self.held.clear()
            self.held_chunk = b""
            self._pattern = pattern

    def release(self, then: bytes | None = None) -> None:
        """Forward the held chunk and go on proxying that connection; arm ``then``
        (before the held command's reply can reach the client)."""
        with self._lock:
            assert self.held.is_set() and self._held_at is not None, "nothing is held"
            src, dst = self._held_at
            chunk, self._held_at = self.held_chunk, None
            self.held.clear()
            self.held_chunk = b""
            self._pattern = then
        dst.sendall(chunk)
        threading.Thread(target=self._pump, args=(src, dst, True), daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((HOST, self.target_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inspect: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if inspect:
                with self._lock:
                    if self._pattern is not None and self._pattern in data:
                        self._pattern = None
                        self.held_chunk = data
                        self._held_at = (src, dst)
                        self.held.set()
                        return  # hold: forward nothing more, keep both ends open
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks, self._socks = self._socks, []
        with contextlib.suppress(OSError):
            self._listener.close()
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
