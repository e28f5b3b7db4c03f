"""The deployment in ``compose/`` is secure by default (issue 13: no client can
silence or starve the controller), checked without a Docker engine.

- Redis: on the internal network only, no published port, a password from the
  secret ``redis_password`` that every twinctl service reads from its file
  (``TWIN_REDIS_PASSWORD_FILE``); a real ``redis-server`` started by
  ``compose/bin/redis-entrypoint.sh`` refuses clients without it, and twinctl's
  settings and the service's health check get in with it.
- Mosquitto: only its TLS listener is published; accounts ``controller`` (the
  ingress), ``orchestrator`` and ``health``; an ACL. A real broker, set up by
  ``compose/make-secrets.sh`` and ``compose/mosquitto/entrypoint.sh`` as the service
  does, lets the orchestrator send commands and read replies, and refuses it the
  controller's replies, statuses, errors and alarms and the commands of others; a real
  ingress works behind it with the controller account.
- The entry points refuse a missing secret, an empty password, a placeholder
  (``change-me``…) and one shorter than 12 characters, with one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compose_helpers import (
    BIN_DIR,
    CID,
    COMPOSE_DIR,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    MOSQUITTO_DIR,
    ROOT,
    Broker,
    Client,
    compose,
    compose_model,
    entrypoint_env,
    free_port,
    login,
    make_secrets,
    mosquitto_base,
    mount_secrets,
    secret_files,
    shell_text,
    start_broker,
    stop_broker,
)
from tests.compose_helpers import services as services

TWINCTL_SERVICES = ("ingress", "worker", "short-worker", "realtime-worker", "flower")
# a bad password → the word its refusal says
REFUSED = {"": "empty", "change-me": "placeholder", "changeme": "placeholder",
           "password": "placeholder", "CHANGE-ME-mqtt-1234": "placeholder",
           "change_me_please": "placeholder", "short-pw-11": "too short",
           "x": "too short", "two\nlines-of-it": "line break"}


# ----- the compose file, read by us ---------------------------------------------------------

def test_redis_is_on_the_internal_network_only_and_publishes_no_port(
    services: dict[str, Any],
) -> None:
    networks = compose_model()["networks"]
    redis = services["redis"]
    assert "ports" not in redis and "expose" not in redis
    assert redis["networks"] == ["backend"]
    assert networks["backend"]["internal"] is True
    assert not networks["frontend"].get("internal")
    # the twinctl services that publish nothing are on the backend alone
    for name in ("ingress", "worker", "short-worker", "realtime-worker"):
        assert services[name]["networks"] == ["backend"], name
        assert "ports" not in services[name], name
    # the published ports need a network with a way out
    assert set(services["mosquitto"]["networks"]) == {"frontend", "backend"}
    assert set(services["flower"]["networks"]) == {"frontend", "backend"}
    assert services["flower"]["secrets"]  # flower: its own list, with the Redis password
    for name, svc in services.items():
        assert svc.get("network_mode") is None, name  # no way around the networks


def test_the_broker_publishes_its_tls_listener_only(services: dict[str, Any]) -> None:
    ports = [str(p) for p in services["mosquitto"]["ports"]]
    assert ports == ["${MQTT_BIND:-127.0.0.1}:${MQTT_TLS_PORT:-8883}:8883"]
    listeners = re.findall(r"^listener (.*)$", (MOSQUITTO_DIR / "mosquitto.conf").read_text(
        "utf-8"), re.M)
    # the plain one on the container's loopback (the health check), TLS for the rest
    assert listeners == ["1883 127.0.0.1", "8883"]


def _resolved() -> dict[str, Any]:
    """The compose file as Docker Compose itself resolves it with compose/.env.example."""
    out = compose("-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE),
                   "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    model: dict[str, Any] = json.loads(out.stdout)
    return model


def _secret_names(svc: dict[str, Any]) -> set[str]:
    return {s["source"] if isinstance(s, dict) else s for s in svc.get("secrets", [])}


def test_every_twinctl_service_reads_its_passwords_from_secret_files() -> None:
    model = _resolved()
    svcs = model["services"]
    for name in TWINCTL_SERVICES:
        env = svcs[name]["environment"]
        assert env["TWIN_REDIS_URL"] == "redis://redis:6379/0", name  # no password in it
        assert env["TWIN_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password", name
        assert env["TWIN_MQTT_URL"] == "mqtts://mosquitto:8883", name
        assert env["TWIN_MQTT_CA_FILE"] == "/run/secrets/mqtt_ca", name
        assert {"redis_password", "mqtt_ca"} <= _secret_names(svcs[name]), name
        assert "TWIN_MQTT_PASSWORD" not in env, name
        for key, value in env.items():
            assert "change-me" not in str(value), f"{name}: {key}"
    # only the ingress talks MQTT: it alone has the controller's login
    ingress = svcs["ingress"]
    assert ingress["environment"]["TWIN_MQTT_USERNAME"] == "controller"
    assert (ingress["environment"]["TWIN_MQTT_PASSWORD_FILE"]
            == "/run/secrets/mqtt_controller_password")
    for name in ("worker", "short-worker", "realtime-worker", "flower"):
        assert not svcs[name]["environment"].get("TWIN_MQTT_PASSWORD_FILE"), name
        assert "mqtt_controller_password" not in _secret_names(svcs[name]), name
    assert "mqtt_orchestrator_password" in _secret_names(svcs["mosquitto"])
    assert _secret_names(svcs["redis"]) == {"redis_password"}
    # Flower's login from a secret too, not from FLOWER_BASIC_AUTH in compose/.env
    flower = svcs["flower"]
    assert "FLOWER_BASIC_AUTH" not in flower["environment"]
    assert "flower_password" in _secret_names(flower)
    assert flower["entrypoint"] == ["/bin/sh", "/twinctl-compose/flower-entrypoint.sh"]
    # the secrets are the files of compose/secrets/ (TWIN_SECRETS_DIR)
    for name, spec in model["secrets"].items():
        assert Path(spec["file"]).parent == COMPOSE_DIR / "secrets", name


def test_the_secrets_can_live_elsewhere(tmp_path: Path) -> None:
    """TWIN_SECRETS_DIR in compose/.env: Compose mounts the files make-secrets.sh made."""
    made = tmp_path / "elsewhere"
    assert make_secrets(made).returncode == 0
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text("utf-8") + f"\nTWIN_SECRETS_DIR={made}\n",
                        "utf-8")
    out = compose("-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config",
                  "--format", "json")
    assert out.returncode == 0, out.stderr
    files = {name: Path(spec["file"]) for name, spec in json.loads(out.stdout)["secrets"].items()}
    assert files and all(f.parent == made and f.is_file() for f in files.values()), files


def test_the_health_checks_log_in(services: dict[str, Any]) -> None:
    redis = shell_text(services["redis"]["healthcheck"]["test"])
    assert "REDISCLI_AUTH=" in redis and "/run/secrets/redis_password" in redis
    broker = shell_text(services["mosquitto"]["healthcheck"]["test"])
    assert "-u health" in broker and "/mosquitto/config/health_password" in broker
    assert "change-me" not in COMPOSE_FILE.read_text("utf-8")


def test_compose_env_example_holds_no_password() -> None:
    text = ENV_EXAMPLE.read_text("utf-8")
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if line and not line.startswith("#"))
    for gone in ("MQTT_USER", "MQTT_PASSWORD", "FLOWER_BASIC_AUTH", "TWIN_MQTT_PASSWORD"):
        assert gone not in settings, gone
    assert "change-me" not in text
    # set but empty, these would replace the secret files of the compose file
    for key in ("TWIN_MQTT_PASSWORD_FILE", "TWIN_MQTT_CA_FILE", "TWIN_REDIS_PASSWORD_FILE"):
        assert key not in settings, f"{key}= in compose/.env.example"


def test_the_secrets_are_git_ignored_and_out_of_the_build_context() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["compose/secrets/redis_password", "compose/secrets/server.key",
             "compose/mosquitto/acl.local", "compose/mosquitto/passwd", "compose/.env"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.stdout.split() == paths, out.stdout + out.stderr
    ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text("utf-8").splitlines()
    assert "compose" in ignore  # the image's build context never holds the secrets


# ----- make-secrets.sh -----------------------------------------------------------------------

def test_make_secrets_makes_every_secret_of_the_compose_file(tmp_path: Path) -> None:
    made = tmp_path / "secrets"
    out = make_secrets(made, MQTT_TLS_NAMES="broker.example.com,10.1.2.3")
    assert out.returncode == 0, out.stderr
    files = secret_files()
    assert sorted(p.name for p in made.iterdir()) == sorted({*files.values(), "ca.key"})
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in made.iterdir()}
    # read by root only (the mosquitto entry point) or by nobody in a container
    for private in ("ca.key", "server.key", "mqtt_orchestrator_password"):
        assert modes[private] == 0o600, private
    # read by the user twin of the twinctl image (Compose mounts them as they are)
    for shared in ("redis_password", "mqtt_controller_password", "flower_password",
                   "ca.crt", "server.crt"):
        assert modes[shared] == 0o644, shared
    passwords = [(made / f).read_text("utf-8").strip() for f in
                 ("redis_password", "mqtt_controller_password",
                  "mqtt_orchestrator_password", "flower_password")]
    assert len(set(passwords)) == 4
    assert all(re.fullmatch(r"[0-9a-f]{64}", p) for p in passwords)
    sans = subprocess.run(["openssl", "x509", "-in", str(made / "server.crt"), "-noout",
                           "-ext", "subjectAltName"], capture_output=True, text=True)
    names = set(re.findall(r"(?:DNS:|IP Address:)([^,\s]+)", sans.stdout))
    assert {"mosquitto", "localhost", "127.0.0.1", "broker.example.com", "10.1.2.3"} <= names
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile",
                             str(made / "ca.crt"), str(made / "server.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # run again: every file kept, so a running deployment keeps its passwords
    before = {p.name: p.read_bytes() for p in made.iterdir()}
    again = make_secrets(made)
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in made.iterdir()} == before


# ----- the entry points refuse what is no password ----------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One set of secrets from make-secrets.sh for the entry point tests."""
    folder = tmp_path_factory.mktemp("made") / "secrets"
    out = make_secrets(folder)
    assert out.returncode == 0, out.stderr
    return folder


def _good_secrets(tmp: Path, made: Path) -> Path:
    """/run/secrets/ of a container: each secret under its name, good ones."""
    return mount_secrets(made, tmp / "run-secrets")


def _run_entrypoint(which: str, tmp: Path, run_secrets: Path,
                    command: list[str]) -> subprocess.CompletedProcess[str]:
    if which == "mosquitto":
        base = tmp / "mosquitto"
        if not base.exists():
            base = mosquitto_base(tmp)
        script = MOSQUITTO_DIR / "entrypoint.sh"
        env = entrypoint_env(base, run_secrets)
    else:
        script = BIN_DIR / f"{which}-entrypoint.sh"
        env = {**os.environ, "TWINCTL_COMPOSE_BIN": str(BIN_DIR),
               "SECRETS_DIR": str(run_secrets)}
    return subprocess.run(["/bin/sh", str(script), *command], env=env, capture_output=True,
                          text=True, timeout=30)


_SECRET_OF = {"mosquitto": "mqtt_controller_password", "redis": "redis_password",
              "flower": "flower_password"}


@pytest.mark.parametrize("which", ["mosquitto", "redis", "flower"])
@pytest.mark.parametrize("bad", list(REFUSED))
def test_the_entry_points_refuse_placeholder_and_short_passwords(
    tmp_path: Path, made: Path, which: str, bad: str,
) -> None:
    run_secrets = _good_secrets(tmp_path, made)
    (run_secrets / _SECRET_OF[which]).write_text(bad + "\n", "utf-8")
    marker = tmp_path / "started"
    out = _run_entrypoint(which, tmp_path, run_secrets, ["touch", str(marker)])
    assert out.returncode != 0, f"{which} started with the password {bad!r}"
    assert not marker.exists(), "the command ran"
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr  # one clear line
    assert str(run_secrets / _SECRET_OF[which]) in lines[0]
    assert REFUSED[bad] in lines[0], lines[0]
    if len(bad) >= 12:
        assert bad not in lines[0]  # the password itself is not shown
    if which == "mosquitto":
        assert not (tmp_path / "mosquitto" / "config" / "passwd").exists()


@pytest.mark.parametrize("which", ["mosquitto", "redis", "flower"])
def test_the_entry_points_refuse_a_missing_secret(tmp_path: Path, made: Path, which: str) -> None:
    run_secrets = _good_secrets(tmp_path, made)
    (run_secrets / _SECRET_OF[which]).unlink()
    out = _run_entrypoint(which, tmp_path, run_secrets, ["true"])
    assert out.returncode != 0
    assert re.fullmatch(r"twinctl compose: .* is missing: run: sh compose/make-secrets\.sh\n",
                        out.stderr), out.stderr


def test_the_broker_refuses_one_password_for_two_accounts(tmp_path: Path, made: Path) -> None:
    run_secrets = _good_secrets(tmp_path, made)
    shutil.copy(run_secrets / "mqtt_controller_password",
                run_secrets / "mqtt_orchestrator_password")
    out = _run_entrypoint("mosquitto", tmp_path, run_secrets, ["true"])
    assert out.returncode != 0 and "the same MQTT password" in out.stderr, out.stderr


def test_the_redis_and_flower_entry_points_pass_a_good_password_on(
    tmp_path: Path, made: Path,
) -> None:
    run_secrets = _good_secrets(tmp_path, made)
    tricky = 'a "quoted" pass\\word $x'
    (run_secrets / "redis_password").write_text(tricky + "\n", "utf-8")
    out = _run_entrypoint("redis", tmp_path, run_secrets, ["cat"])  # what redis-server reads
    assert out.returncode == 0, out.stderr
    assert out.stdout == 'requirepass "a \\"quoted\\" pass\\\\word $x"\n'
    out = _run_entrypoint("flower", tmp_path, run_secrets,
                          ["sh", "-c", 'printf %s "$FLOWER_BASIC_AUTH"'])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "admin:" + (run_secrets / "flower_password").read_text().strip()


# ----- Redis, for real ---------------------------------------------------------------------

@pytest.mark.integration
def test_redis_asks_for_the_password_of_its_secret(
    tmp_path: Path, made: Path, services: dict[str, Any],
) -> None:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run the tests through `make test`")
    run_secrets = _good_secrets(tmp_path, made)
    port = free_port()
    command = [str(a) for a in services["redis"]["command"]]
    assert command[:2] == ["redis-server", "-"]
    proc = subprocess.Popen(
        ["/bin/sh", str(BIN_DIR / "redis-entrypoint.sh"), *command, "--port", str(port),
         "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""],
        env={**os.environ, "TWINCTL_COMPOSE_BIN": str(BIN_DIR),
             "SECRETS_DIR": str(run_secrets)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import redis

        _wait_listening(port, proc)
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        anonymous = redis.Redis(port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.AuthenticationError):  # NOAUTH: it asks for the password
            anonymous.ping()
        with pytest.raises(redis.AuthenticationError):
            anonymous.xadd("twin:c1:outbox", {"t": "twin/c1/reply/x", "p": "forged"})

        from common.settings import load_settings

        settings = load_settings({
            "TWIN_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "TWIN_REDIS_PASSWORD_FILE": str(run_secrets / "redis_password"),
            "TWIN_CONTROLLER_ID": CID})
        assert redis.Redis.from_url(settings.redis_url).ping()

        check = shell_text(services["redis"]["healthcheck"]["test"]).replace(
            "/run/secrets/", f"{run_secrets}/").replace("redis-cli ", f"redis-cli -p {port} ")
        assert subprocess.run(["sh", "-c", check], timeout=10).returncode == 0
        unauthenticated = check.replace("redis_password", "no-such-file")
        assert subprocess.run(["sh", "-c", unauthenticated], timeout=10,
                              capture_output=True).returncode != 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            pytest.fail(f"the server stopped: {proc.stdout.read() if proc.stdout else ''!r}")
        assert time.monotonic() < deadline, f"nothing listens on port {port} after {timeout} s"
        time.sleep(0.05)


# ----- Mosquitto, for real -----------------------------------------------------------------

@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    stop_broker(b)


def _as(broker: Broker, account: str, **kw: Any) -> Client:
    return Client(broker.tls_port, account, broker.password(account), ca_file=broker.ca_file,
                  **kw)


@pytest.mark.integration
def test_the_orchestrator_sends_a_command_and_reads_the_controllers_reply(
    broker: Broker,
) -> None:
    with _as(broker, "controller") as ctl, _as(broker, "orchestrator") as orch:
        assert not ctl.subscribe("twin/c1/cmd").is_failure
        assert not orch.subscribe("twin/+/reply/#").is_failure
        assert orch.sent("twin/c1/cmd", '{"id": "r1", "cmd": "ping"}')
        assert ctl.wait_for("twin/c1/cmd") == [b'{"id": "r1", "cmd": "ping"}']
        assert ctl.sent("twin/c1/reply/r1", '{"type": "pong"}')
        assert orch.wait_for("twin/c1/reply/r1") == [b'{"type": "pong"}']
        # a group command reaches the controller's shared subscription
        assert not ctl.subscribe("$share/default/twin/group/default/cmd").is_failure
        assert orch.sent("twin/group/default/cmd", "g")
        assert ctl.wait_for("twin/group/default/cmd") == [b"g"]
        # and the controller's status, errors and alarms reach the orchestrator
        for topic in ("twin/c1/status", "twin/c1/errors", "twin/c1/alarms"):
            assert not orch.subscribe(topic).is_failure
            assert ctl.sent(topic, "from the controller")
            assert orch.wait_for(topic) == [b"from the controller"], topic


@pytest.mark.integration
def test_the_orchestrator_cannot_forge_replies_statuses_errors_or_alarms(
    broker: Broker,
) -> None:
    with _as(broker, "controller") as ctl, _as(broker, "orchestrator") as orch, \
            _as(broker, "orchestrator") as watcher:
        assert not ctl.subscribe("twin/c1/reply/#").is_failure
        for topic in ("twin/c1/status", "twin/c1/errors", "twin/c1/alarms"):
            assert not watcher.subscribe(topic).is_failure
        for topic in ("twin/c1/reply/victim", "twin/c1/status", "twin/c1/errors",
                      "twin/c1/alarms", "twin/c2/reply/x", "twin/c1/reply/victim/deeper"):
            reason = orch.publish(topic, '{"type": "result", "forged": true}',
                                  retain=topic.endswith("status"))
            assert reason.value == 0x87, f"{topic}: {reason}"  # not authorized
        time.sleep(0.3)
        assert ctl.messages == [] and watcher.messages == [], (ctl.messages, watcher.messages)
        # nor read another orchestrator's commands, or the controllers' commands at all
        assert not watcher.subscribe("twin/#").is_failure  # granted, but filtered
        assert not ctl.subscribe("twin/c1/cmd").is_failure
        assert orch.sent("twin/c1/cmd", '{"id": "secret", "cmd": "ping"}')
        assert ctl.wait_for("twin/c1/cmd") == [b'{"id": "secret", "cmd": "ping"}']
        assert [t for t, _, _ in watcher.messages if t.endswith("/cmd")] == []


@pytest.mark.integration
def test_the_controller_publishes_only_its_own_topics_and_response_topics(
    broker: Broker,
) -> None:
    with _as(broker, "controller") as ctl, _as(broker, "orchestrator") as orch:
        assert not orch.subscribe("responses/orchestrator/#").is_failure
        assert ctl.sent("responses/orchestrator/job-1", "to the response topic")
        assert orch.wait_for("responses/orchestrator/job-1") == [b"to the response topic"]
        for topic in ("twin/c2/cmd", "twin/c2/reply/x", "twin/c2/status", "twin/group/default/cmd",
                      "plant/valve/setpoint", "$SYS/broker/forged"):
            assert ctl.refused(topic, "x"), topic
        # it reads the other members' statuses (a group member gone is taken over)
        assert not ctl.subscribe("twin/+/status").is_failure
        # the orchestrator reads its own response tree only, and cannot write into it
        assert orch.refused("responses/orchestrator/job-2", "x")
        assert ctl.sent("responses/someone-else/job-3", "x")
        assert not orch.subscribe("responses/#").is_failure
        time.sleep(0.3)
        assert [t for t, _, _ in orch.messages] == ["responses/orchestrator/job-1"]


@pytest.mark.integration
def test_unknown_accounts_wrong_passwords_and_anonymous_clients_are_refused(
    broker: Broker,
) -> None:
    ca = broker.ca_file
    for port, ca_file in ((broker.tls_port, ca), (broker.plain_port, None)):
        assert login(port, "orchestrator", broker.password("orchestrator"), ca_file=ca_file)
        assert not login(port, "orchestrator", "wrong-password-123", ca_file=ca_file)
        assert not login(port, "orchestrator", broker.password("controller"), ca_file=ca_file)
        assert not login(port, "intruder", broker.password("orchestrator"), ca_file=ca_file)
        assert not login(port, None, None, ca_file=ca_file)


@pytest.mark.integration
def test_the_tls_listener_works_with_the_generated_ca_only(broker: Broker) -> None:
    assert login(broker.tls_port, "controller", broker.password("controller"),
                 ca_file=broker.ca_file)
    # the system's CAs do not know the broker's certificate
    client = Client(broker.tls_port, "controller", broker.password("controller"))
    client.client.tls_set()
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect()
    # the certificate names this broker; another name is refused
    ctx = ssl.create_default_context(cafile=str(broker.ca_file))
    for name in ("localhost", "127.0.0.1", "mosquitto"):
        with socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5) as sock, \
                ctx.wrap_socket(sock, server_hostname=name) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5) as sock, \
            pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
        ctx.wrap_socket(sock, server_hostname="elsewhere.example")
    # no plain MQTT on the TLS port
    assert not login(broker.tls_port, "controller", broker.password("controller"))
    # twinctl's own TLS client, as the ingress is set up (TWIN_MQTT_CA_FILE, a password file)
    from common.settings import load_settings
    from ingress.mqttconn import negotiate_protocol

    settings = load_settings({
        "TWIN_MQTT_URL": f"mqtts://localhost:{broker.tls_port}",
        "TWIN_MQTT_CA_FILE": str(broker.ca_file), "TWIN_MQTT_USERNAME": "controller",
        "TWIN_MQTT_PASSWORD_FILE": str(broker.made / "mqtt_controller_password"),
        "TWIN_CONTROLLER_ID": CID})
    assert negotiate_protocol(settings.mqtt) == "5"


@pytest.mark.integration
def test_the_broker_health_check_passes_with_its_own_account(
    broker: Broker, services: dict[str, Any],
) -> None:
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub (Debian's mosquitto-clients; the image has it) is missing")
    check = shell_text(services["mosquitto"]["healthcheck"]["test"])
    check = check.replace("-p 1883", f"-p {broker.plain_port}").replace(
        "/mosquitto/", f"{broker.base}/")
    health = subprocess.run(["sh", "-c", check], capture_output=True, text=True, timeout=15)
    assert health.returncode == 0, f"the health check fails: {health.stderr}"
    assert stat.S_IMODE((broker.base / "config" / "passwd").stat().st_mode) == 0o600
    password = (broker.base / "config" / "health_password").read_text().strip()
    with Client(broker.plain_port, "health", password) as health_client:
        assert not health_client.subscribe("twin/#").is_failure
        with _as(broker, "controller") as ctl:
            assert ctl.sent("twin/c1/status", "online")
        time.sleep(0.3)
        assert health_client.messages == []  # $SYS/broker/version and nothing else


# ----- the real ingress behind the broker -----------------------------------------------------

@pytest.mark.integration
def test_the_ingress_works_with_the_controller_account(
    broker: Broker, tmp_path: Path, services: dict[str, Any],
) -> None:
    """`twinctl ingress` as the compose file sets it up (TLS, the account controller, a
    password-protected Redis): it logs in, subscribes, publishes its retained status,
    answers an orchestrator's ping, and its own health check passes."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run the tests through `make test`")
    redis_pw = broker.made / "redis_password"
    rport = free_port()
    rproc = subprocess.Popen(
        ["/bin/sh", str(BIN_DIR / "redis-entrypoint.sh"), "redis-server", "-", "--port",
         str(rport), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""],
        env={**os.environ, "TWINCTL_COMPOSE_BIN": str(BIN_DIR),
             "SECRETS_DIR": str(broker.made)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    common = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    common.update({
        "TWIN_MQTT_URL": f"mqtts://localhost:{broker.tls_port}",
        "TWIN_MQTT_CA_FILE": str(broker.ca_file),
        "TWIN_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
        "TWIN_REDIS_PASSWORD_FILE": str(redis_pw),
        "TWIN_CONTROLLER_ID": CID, "TWIN_MQTT_PREFIX": "twin", "TWIN_GROUP": "default",
        "TWIN_INSTANCES": str(tmp_path / "instances"), "HOME": str(tmp_path)})
    controller = {**common, "TWIN_MQTT_USERNAME": "controller",
                  "TWIN_MQTT_PASSWORD_FILE": str(broker.made / "mqtt_controller_password")}
    orchestrator = {**common, "TWIN_MQTT_USERNAME": "orchestrator",
                    "TWIN_MQTT_PASSWORD_FILE": str(broker.made / "mqtt_orchestrator_password")}
    twinctl = [sys.executable, "-m", "twinctl"]
    log = tmp_path / "ingress.log"
    with log.open("wb") as out:
        ingress = subprocess.Popen([*twinctl, "ingress"], env=controller, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with _as(broker, "orchestrator") as orch:
            assert not orch.subscribe("twin/c1/status").is_failure
            deadline = time.monotonic() + 15
            while not any(b'"online"' in p for p in orch.wait_for("twin/c1/status", 0.2)):
                assert ingress.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"no status online:\n{log.read_text()}"
        send = subprocess.run([*twinctl, "send", "-", "--timeout", "10"], env=orchestrator,
                              input='{"cmd": "ping"}', capture_output=True, text=True,
                              timeout=30)
        assert send.returncode == 0, send.stdout + send.stderr + log.read_text()
        assert "pong" in send.stdout
        check = shell_text(services["ingress"]["healthcheck"]["test"]).replace(
            "twinctl send", f"{sys.executable} -m twinctl send")
        health = subprocess.run(["sh", "-c", check], env=controller, capture_output=True,
                                text=True, timeout=30)
        assert health.returncode == 0, health.stderr + log.read_text()
        assert "refused" not in log.read_text().lower(), log.read_text()
    finally:
        for proc in (ingress, rproc):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (ingress, rproc):
            proc.wait(timeout=15)
