"""The image and the broker of the container deployment in ``compose/``, checked
without a Docker engine.

- ``compose/Dockerfile`` copies files that exist, and they are enough for
  ``pip install .`` to find every package and data file that pyproject.toml lists.
- ``compose/mosquitto/``: a real ``mosquitto`` (the one ``make test`` installs)
  starts with the shipped config and entry point, refuses anonymous clients and
  passes the service's own health check (integration: it starts a broker).
"""

from __future__ import annotations

import fnmatch
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

from tests.compose_helpers import DOCKERFILE, DOCKERIGNORE, MOSQUITTO_DIR, ROOT, shell_text
from tests.compose_helpers import services as services

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
            check = shell_text(services["mosquitto"]["healthcheck"]["test"]).replace(
                "-p 1883", f"-p {port}")
            health = subprocess.run(["sh", "-c", check], env=env, capture_output=True,
                                    text=True, timeout=15)
            assert health.returncode == 0, f"the health check fails: {health.stderr}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
