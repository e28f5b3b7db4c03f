"""MQTT over TLS refused (:mod:`tests.tls_harness`): a wrong password, no TLS, an
unknown CA or no client certificate is said in one clear line, and the connection keeps
retrying; TLS against a plain listener says so.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from common.settings import load_settings
from ingress.mqttconn import MqttConnection, MqttError, negotiate_protocol
from tests.conftest import stack_env
from tests.services import HOST
from tests.tls_harness import PASSWORD, SECRETS, USER, Pki, TlsMosquitto
from tests.tls_harness import pki as pki
from tests.tls_harness import tls_broker as tls_broker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


# ----- refused: one clear line, and retrying ------------------------------------------

def _ingress_lines(env: dict[str, str], expected: str, *, after: float = 4.0,
                   timeout: float = 40.0) -> list[str]:
    """Run ``twinctl ingress`` until a line containing ``expected`` appears and ``after``
    more seconds; return its output lines (it must still be running: no crash)."""
    proc = subprocess.Popen([sys.executable, "-m", "twinctl", "ingress"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    seen_at: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while True:
            now = time.monotonic()
            end = deadline if seen_at is None else seen_at + after
            if now >= end:
                break
            try:
                line = lines.get(timeout=end - now)
            except queue.Empty:
                break
            if line is None:
                break
            out.append(line)
            if seen_at is None and expected in line:
                seen_at = time.monotonic()
        assert seen_at is not None, f"no line with {expected!r} in:\n" + "\n".join(out)
        assert proc.poll() is None, "the ingress stopped:\n" + "\n".join(out)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
    return out


def _refused_env(redis_server: Any, url: str, **extra: str) -> dict[str, str]:
    return stack_env(redis_server, SimpleNamespace(url=""), TWIN_MQTT_URL=url,
                     TWIN_LOG_LEVEL="DEBUG", **extra)


@pytest.mark.parametrize(
    ("case", "protocol"),
    [("wrong password", "auto"), ("wrong password", "5"), ("no TLS", "auto"),
     ("unknown CA", "5"), ("no client certificate", "5")],
)
def test_a_refused_ingress_says_why_in_one_line_and_retries(
        case: str, protocol: str, redis_server: Any, tls_broker: TlsMosquitto, pki: Pki,
        tmp_path: Path) -> None:
    where = f"{HOST}:{tls_broker.port}"
    ca = {"TWIN_MQTT_CA_FILE": str(pki.ca)}
    if case == "wrong password":
        wrong = tmp_path / "mqtt-password"
        wrong.write_text("not-the-" + PASSWORD)
        env = _refused_env(redis_server, f"mqtts://{where}", TWIN_MQTT_USERNAME=USER,
                           TWIN_MQTT_PASSWORD_FILE=str(wrong), **ca)
        expected = f"MQTT broker mqtts://{where} refused the connection: "
        words = ["TWIN_MQTT_PASSWORD_FILE", repr(USER)]
    elif case == "no TLS":
        env = _refused_env(redis_server, f"mqtt://{USER}:{PASSWORD}@{where}")
        expected = f"MQTT broker mqtt://{where} closed the connection without answering"
        words = ["mqtts://"]
    elif case == "unknown CA":
        env = _refused_env(redis_server, f"mqtts://{USER}:{PASSWORD}@{where}",
                           TWIN_MQTT_CA_FILE=str(pki.other_ca))
        expected = f"TLS handshake with MQTT broker {where} failed: certificate verify failed"
        words = ["TWIN_MQTT_CA_FILE"]
    else:
        where = f"{HOST}:{tls_broker.mtls_port}"
        env = _refused_env(redis_server, f"mqtts://{USER}:{PASSWORD}@{where}", **ca)
        expected = "client certificate"
        words = ["TWIN_MQTT_CERT_FILE", where]
    env["TWIN_MQTT_PROTOCOL"] = protocol
    out = _ingress_lines(env, expected)
    text = "\n".join(out)
    said = [line for line in out if expected in line and " ERROR " in line]
    assert len(said) == 1, text  # one line, not one per retry …
    assert all(w in said[0] for w in words), said[0]
    assert any(expected in line and " DEBUG " in line for line in out), text  # … it retries
    assert "Traceback" not in text
    for secret in SECRETS:
        assert secret not in text
    if case == "wrong password":
        assert re.search(r"bad user name or password|not authorized", said[0]), said[0]


def test_a_connection_logs_a_refusal_once_then_connects_with_the_right_password(
        tls_broker: TlsMosquitto, pki: Pki, tmp_path: Path, caplog: Any) -> None:
    """In-process: the one ERROR line per cause (repeats at DEBUG), and a client
    certificate made by the test works on the listener that requires one."""
    secret = tmp_path / "pw"
    secret.write_text("wrong\n")
    env = {"TWIN_MQTT_URL": f"mqtts://{HOST}:{tls_broker.port}", "TWIN_MQTT_USERNAME": USER,
           "TWIN_MQTT_PASSWORD_FILE": str(secret), "TWIN_MQTT_CA_FILE": str(pki.ca)}
    caplog.set_level(logging.DEBUG, logger="twinctl.mqtt")
    conn = MqttConnection(endpoint=load_settings(env).mqtt, client_id=f"t-{uuid.uuid4().hex}",
                          persistent=False, backoff=(0.05, 0.2))
    conn.start()
    try:
        deadline = time.monotonic() + 10
        while len([r for r in caplog.records if "refused" in r.getMessage()]) < 4:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    finally:
        conn.stop()
    refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
    assert [r.levelno for r in refusals].count(logging.ERROR) == 1, caplog.text
    assert not conn.connected.is_set()

    secret.write_text(PASSWORD)
    mtls = {**env, "TWIN_MQTT_URL": f"mqtts://{HOST}:{tls_broker.mtls_port}",
            "TWIN_MQTT_CERT_FILE": str(pki.client_cert),
            "TWIN_MQTT_KEY_FILE": str(pki.client_key)}
    endpoint = load_settings(mtls).mqtt
    assert negotiate_protocol(endpoint) == "5"
    conn = MqttConnection(endpoint=endpoint, client_id=f"t-{uuid.uuid4().hex}",
                          persistent=False)
    conn.start()
    try:
        assert conn.wait_connected(10), caplog.text
    finally:
        conn.stop()


def test_tls_against_a_plain_listener_says_so(mqtt_server: Any) -> None:
    endpoint = load_settings({"TWIN_MQTT_URL": f"mqtts://{HOST}:{mqtt_server.port}"}).mqtt
    with pytest.raises(MqttError) as info:
        negotiate_protocol(endpoint)
    message = str(info.value)
    assert message.startswith(f"TLS handshake with MQTT broker {HOST}:{mqtt_server.port} failed")
    assert "a TLS listener?" in message and "\n" not in message
