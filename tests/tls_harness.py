"""The TLS test servers: a Mosquitto with two TLS listeners (one asks for a client
certificate), no anonymous clients and a password file; a Redis server with a password
and a TLS port too. ``tests/test_tls_stack.py`` and ``tests/test_tls_refusals.py``
import the fixtures they use (``from tests.tls_harness import pki as pki``, …).

The certificates are made here with the ``openssl`` CLI: a throw-away CA, a server
certificate for 127.0.0.1 and localhost, a client certificate, and a second CA that
signed nothing the broker has. The test clients are plain paho-mqtt and redis-py (not
twinctl's own connection code).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.orchestrator import Orchestrator
from tests.services import HOST, MosquittoProcess, RedisProcess, free_port

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
