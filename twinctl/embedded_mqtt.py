"""The embedded MQTT broker: ``mosquitto`` from ``PATH``, else the pure-Python amqtt.

:func:`start_mqtt` starts a throw-away broker on ``127.0.0.1`` in its own temporary
directory and waits until it answers a CONNECT with a CONNACK (:func:`mqtt_probe`).
When the ``PATH`` binary fails to start, the ``amqtt`` broker (MQTT 3.1.1 only) is
tried before giving up; it runs in a child Python process
(:mod:`twinctl.embedded_amqtt`), so it never competes with the caller for the GIL.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import embedded_amqtt
from .embedded_launch import check_port, launch
from .embedded_service import HOST, EmbeddedError, EmbeddedService

__all__ = ["MQTT_START_TIMEOUT", "mqtt_probe", "start_mqtt"]

log = logging.getLogger("twinctl.embedded")

MQTT_START_TIMEOUT = 15.0
"""Seconds to wait for an embedded MQTT broker to send a CONNACK."""


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

    return launch(
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


_RUN_A_FILE = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"


def _amqtt_argv(port: int) -> list[str]:
    """Command line of the amqtt child: :mod:`twinctl.embedded_amqtt`'s file run as
    ``__main__``.

    Equivalent to ``python -m twinctl.embedded amqtt PORT``, but it runs that file
    (which imports nothing of twinctl) without putting the project root or the cwd on
    the child's ``sys.path`` (where top-level folders could shadow packages).
    """
    flags = ["-P"] if sys.version_info >= (3, 11) else []  # -P: no cwd on sys.path
    return [
        sys.executable,
        *flags,
        "-c",
        _RUN_A_FILE,
        str(Path(embedded_amqtt.__file__).resolve()),
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

    return launch(
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
    port = check_port(port)
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
