"""TLS and passwords against real servers (:mod:`tests.tls_harness`): a whole stack
over MQTT TLS with a password, and with passwords from files, a client certificate and
Redis with a password (plain or TLS). No password may reach a log or a shown setting.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator
from tests.services import HOST
from tests.tls_harness import (
    PASSWORD,
    REDIS_PASSWORD,
    SECRETS,
    USER,
    PasswordRedis,
    Pki,
    TlsMosquitto,
    TlsOrchestrator,
)
from tests.tls_harness import password_redis as password_redis
from tests.tls_harness import pki as pki
from tests.tls_harness import tls_broker as tls_broker
from twinctl.client import send_command
from twinctl.stack import Stack

pytestmark = pytest.mark.integration


def run_ping_and_static(orch: Orchestrator) -> None:
    rid = new_id("tls-ping")
    assert [r["type"] for r in orch.request({"id": rid, "cmd": "ping"})] == ["pong"]
    rid = new_id("tls-run")
    replies = orch.request({"id": rid, "cmd": "run", "scenario": {
        "mode": "static",
        "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
        "inputs": {"pump.speed": 1300, "pump.flow": 0.025}}})
    assert [(r["type"], r["seq"]) for r in replies] == [("ack", 0), ("result", 1)]
    head = 40.0 * (1300 / 1450) ** 2 - 20000.0 * 0.025**2  # P-101's design data
    assert replies[1]["values"]["pump.head"] == pytest.approx(head, rel=1e-12)


def assert_no_secret_in(stack: Stack, log_dir: Path) -> None:
    texts = {p.name: p.read_text("utf-8", "replace") for p in log_dir.glob("*.log")}
    assert {"ingress.log", "worker.log"} <= set(texts)
    assert "listening on" in texts["ingress.log"]  # INFO lines were written
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"a password is in {name}"
    settings = stack.settings
    for shown in (repr(settings), str(settings), repr(settings.mqtt), settings.mqtt.url,
                  settings.redis_url_safe):
        for secret in SECRETS:
            assert secret not in shown


# ----- the stack over TLS --------------------------------------------------------------

def test_a_stack_over_mqtt_tls_with_a_password(redis_server: Any, tls_broker: TlsMosquitto,
                                               pki: Pki, tmp_path: Path) -> None:
    env = stack_env(redis_server, SimpleNamespace(url=""),
                    TWIN_MQTT_URL=f"mqtts://{USER}:{PASSWORD}@{HOST}:{tls_broker.port}",
                    TWIN_MQTT_CA_FILE=str(pki.ca), TWIN_LOG_LEVEL="INFO")
    with running_stack(env, tmp_path, workers=1) as stack:
        s = stack.settings
        orch = TlsOrchestrator(tls_broker.port, pki, s.mqtt_prefix, s.controller_id)
        try:
            run_ping_and_static(orch)
        finally:
            orch.close()
        # the CLI's client (twinctl send) goes over TLS too
        exchange = send_command(s, {"cmd": "ping"}, timeout=10)
        assert [r["type"] for r in exchange.replies] == ["pong"]
    assert_no_secret_in(stack, tmp_path)


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_a_stack_with_passwords_from_files_a_client_certificate_and_redis_tls(
        scheme: str, password_redis: PasswordRedis, tls_broker: TlsMosquitto, pki: Pki,
        tmp_path: Path) -> None:
    """Redis with ``requirepass`` and the password from TWIN_REDIS_PASSWORD_FILE (plain,
    or rediss:// with TWIN_REDIS_CA_FILE); MQTT on the listener that requires a client
    certificate, with the password from TWIN_MQTT_PASSWORD_FILE."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "redis").write_text(REDIS_PASSWORD + "\n")
    (secrets / "mqtt").write_text(PASSWORD + "\n")
    port = password_redis.tls_port if scheme == "rediss" else password_redis.port
    env = stack_env(SimpleNamespace(url=f"{scheme}://{HOST}:{port}/0"), SimpleNamespace(url=""),
                    fresh_db=False,  # (its own Redis, with a password: nothing left in it)
                    TWIN_MQTT_URL=f"mqtts://{HOST}:{tls_broker.mtls_port}",
                    TWIN_MQTT_CA_FILE=str(pki.ca), TWIN_MQTT_CERT_FILE=str(pki.client_cert),
                    TWIN_MQTT_KEY_FILE=str(pki.client_key), TWIN_MQTT_USERNAME=USER,
                    TWIN_MQTT_PASSWORD_FILE=str(secrets / "mqtt"),
                    TWIN_REDIS_PASSWORD_FILE=str(secrets / "redis"), TWIN_LOG_LEVEL="INFO")
    if scheme == "rediss":
        env["TWIN_REDIS_CA_FILE"] = str(pki.ca)
    logs = tmp_path / "logs"
    with running_stack(env, logs, workers=1) as stack:
        s = stack.settings
        assert s.redis_url.startswith(f"{scheme}://:")  # the file's password is in use
        orch = TlsOrchestrator(tls_broker.mtls_port, pki, s.mqtt_prefix, s.controller_id,
                               client_cert=True)
        try:
            run_ping_and_static(orch)
        finally:
            orch.close()
    assert_no_secret_in(stack, logs)
