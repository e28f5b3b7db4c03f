"""TLS and passwords against real servers: a Mosquitto with two TLS listeners (one asks
for a client certificate), no anonymous clients and a password file; Redis servers with
a password, one with a TLS port too.

The certificates are made here with the ``openssl`` CLI: a throw-away CA, a server
certificate for 127.0.0.1 and localhost, a client certificate, and a second CA that
signed nothing the broker has. The test clients are plain paho-mqtt and redis-py (not
twinctl's own connection code).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from common.settings import load_settings
from ingress.mqttconn import MqttConnection, MqttError, negotiate_protocol
from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator
from tests.services import HOST, MosquittoProcess, RedisProcess, free_port
from twinctl.client import send_command
from twinctl.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "twin-op", "mqtt-Secret-7f3a9c"
REDIS_PASSWORD = "redis-Secret-51bd2e"
SECRETS = (PASSWORD, REDIS_PASSWORD)


# ----- certificates ------------------------------------------------------------------

_EXT = {
    "server": ("basicConstraints=critical,CA:FALSE\n"
               "keyUsage=critical,digitalSignature,keyEncipherment\n"
               "extendedKeyUsage=serverAuth\n"
               "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
    "client": ("basicConstraints=critical,CA:FALSE\n"
               "keyUsage=critical,digitalSignature,keyEncipherment\n"
               "extendedKeyUsage=clientAuth\n"),
}


class Pki:
    """A CA, a server and a client certificate signed by it, and a stranger CA."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("openssl") is None:
            pytest.fail("openssl is not installed: run the tests through `make test` "
                        "(scripts/ensure-services.sh installs it)")
        self.dir = folder
        self.ca = self._ca("ca", "twinctl test CA")
        self.other_ca = self._ca("other-ca", "some other CA")
        self.server_cert, self.server_key = self._leaf("server", "localhost")
        self.client_cert, self.client_key = self._leaf("client", "twinctl-test-client")

    def _openssl(self, *args: str) -> None:
        out = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, f"openssl {' '.join(args)}: {out.stderr}"

    def _ca(self, name: str, cn: str) -> Path:
        self._openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                      "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={cn}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return self.dir / f"{name}.crt"

    def _leaf(self, name: str, cn: str) -> tuple[Path, Path]:
        ext = self.dir / f"{name}.ext"
        ext.write_text(_EXT[name] + "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
                      "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                      "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
                      "-extfile", str(ext))
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


# ----- servers -----------------------------------------------------------------------

def paho_tls(port: int, pki: Pki, *, client_cert: bool = False, timeout: float = 5.0,
             client_id: str | None = None) -> mqtt.Client:
    """A plain paho client connected over TLS with the password (raises if refused)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                    client_id=client_id or f"test-tls-{uuid.uuid4().hex[:8]}")
    c.tls_set(ca_certs=str(pki.ca), certfile=str(pki.client_cert) if client_cert else None,
              keyfile=str(pki.client_key) if client_cert else None)
    c.username_pw_set(USER, PASSWORD)
    got: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(cl: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        got["rc"] = rc
        done.set()

    c.on_connect = on_connect
    c.connect(HOST, port, keepalive=10)
    c.loop_start()
    if not done.wait(timeout) or got["rc"].is_failure:
        c.loop_stop()
        raise RuntimeError(f"TLS connect to {port}: {got.get('rc', 'no CONNACK')}")
    return c


class TlsMosquitto(MosquittoProcess):
    """Mosquitto with a TLS listener on ``port`` and one that requires a client
    certificate on ``mtls_port``; no anonymous clients, one user in a password file."""

    name = "mosquitto-tls"

    def __init__(self, port: int, mtls_port: int, folder: Path, pki: Pki) -> None:
        super().__init__(port, folder)
        self.mtls_port, self.pki = mtls_port, pki
        self.passwd = self.dir / "passwd"
        exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        out = subprocess.run([exe, "-c", "-b", str(self.passwd), USER, PASSWORD],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"mosquitto_passwd: {out.stderr}"

    def argv(self) -> list[str]:
        tls = [f"cafile {self.pki.ca}", f"certfile {self.pki.server_cert}",
               f"keyfile {self.pki.server_key}"]
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.passwd}",
            "set_tcp_nodelay true",
            "persistence false",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            f"listener {self.port} {HOST}", *tls, "require_certificate false",
            f"listener {self.mtls_port} {HOST}", *tls, "require_certificate true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [self.exe, "-c", str(self.conf)]

    def probe(self, remaining: float) -> str | None:
        try:
            paho_tls(self.port, self.pki, timeout=min(2.0, remaining)).disconnect()
        except (OSError, RuntimeError) as exc:
            return str(exc)
        return None


class PasswordRedis(RedisProcess):
    """redis-server with ``requirepass``, on a plain port and a TLS port."""

    name = "redis-password"

    def __init__(self, port: int, tls_port: int, folder: Path, pki: Pki) -> None:
        super().__init__(port, folder)
        self.tls_port, self.pki = tls_port, pki

    def argv(self) -> list[str]:
        return [*super().argv(), "--requirepass", REDIS_PASSWORD,
                "--tls-port", str(self.tls_port), "--tls-cert-file", str(self.pki.server_cert),
                "--tls-key-file", str(self.pki.server_key),
                "--tls-ca-cert-file", str(self.pki.ca), "--tls-auth-clients", "no"]

    def client(self, db: int = 0, timeout: float = 5.0) -> Any:
        import redis

        return redis.Redis(host=HOST, port=self.port, db=db, password=REDIS_PASSWORD,
                           socket_timeout=timeout, socket_connect_timeout=min(timeout, 1.0))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: Any) -> Iterator[TlsMosquitto]:
    broker = TlsMosquitto(free_port(), free_port(), tmp_path_factory.mktemp("mosquitto"), pki)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def password_redis(pki: Pki, tmp_path_factory: Any) -> Iterator[PasswordRedis]:
    server = PasswordRedis(free_port(), free_port(), tmp_path_factory.mktemp("redis"), pki)
    server.start()
    yield server
    server.stop()


class TlsOrchestrator(Orchestrator):
    """tests.orchestrator.Orchestrator over TLS with the password (and a client
    certificate when ``client_cert``)."""

    def __init__(self, port: int, pki: Pki, prefix: str, cid: str, *,
                 client_cert: bool = False) -> None:
        self.prefix, self.cid = prefix, cid
        self.messages = []
        self.raw = []
        self._cond = threading.Condition()
        ready = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                             client_id=f"test-orch-{uuid.uuid4().hex[:8]}")
        client.tls_set(ca_certs=str(pki.ca),
                       certfile=str(pki.client_cert) if client_cert else None,
                       keyfile=str(pki.client_key) if client_cert else None)
        client.username_pw_set(USER, PASSWORD)
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: ready.set()
        client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/#", 1)
        self.client = client
        client.connect(HOST, port)
        client.loop_start()
        assert ready.wait(10), "the TLS test orchestrator could not subscribe"


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
