"""Starting an embedded server's child process and waiting until it serves.

:func:`launch` makes the server's temporary directory, starts the child (logging to
``<tmpdir>/server.log``, asked by :func:`pdeathsig_preexec` to die with its parent
on Linux), polls a readiness probe and wraps the child in an
:class:`~twinctl.embedded_service.EmbeddedService`; a child that exits or does not
answer in time is stopped and named in an :class:`EmbeddedError` with the last line
of its log. Also the small port helpers the stack runner and the tests use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from .embedded_service import HOST, EmbeddedError, EmbeddedService, terminate

__all__ = ["port_answers", "free_port", "pdeathsig_preexec", "check_port", "spawn",
           "wait_ready", "launch"]

_PR_SET_PDEATHSIG = 1


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


def check_port(port: int | None) -> int:
    """The port to start on: a free one for None; ``port`` unless something answers there."""
    if port is None:
        return free_port()
    if port_answers(HOST, port):
        raise EmbeddedError(f"cannot start embedded server: {HOST}:{port} is already in use")
    return port


def spawn(
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


def wait_ready(
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


def launch(
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
        proc, log_fh = spawn(argv, tmpdir, env)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    log_file = Path(tmpdir) / "server.log"
    try:
        wait_ready(what, proc, log_file, timeout, probe)
        description = describe(log_file)
    except BaseException:
        terminate(proc, log_fh, tmpdir)
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
