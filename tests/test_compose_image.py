"""The image and the broker of the container deployment in ``compose/``, checked
without a Docker engine.

- ``compose/Dockerfile`` copies files that exist, and they are enough for
  ``pip install .`` to find every package and data file that pyproject.toml lists.
- ``compose/mosquitto/mosquitto.conf`` has the agreed settings, and the entry points
  are POSIX sh, mounted where the services run them (the broker, Redis and the
  entry points for real: ``tests/test_compose_security.py``).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from tests.compose_helpers import COMPOSE_DIR, DOCKERFILE, DOCKERIGNORE, MOSQUITTO_DIR, ROOT
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


# ----- Mosquitto: the shipped config ----------------------------------------------------
# (the broker itself, started with it and its entry point: tests/test_compose_security.py)

def test_the_mosquitto_config_has_the_agreed_settings() -> None:
    conf: dict[str, list[str]] = {}
    for line in (MOSQUITTO_DIR / "mosquitto.conf").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.strip().partition(" ")
            conf.setdefault(key, []).append(value)
    assert conf["per_listener_settings"] == ["false"]
    assert conf["listener"] == ["1883 127.0.0.1", "8883"]
    assert conf["allow_anonymous"] == ["false"]
    assert conf["password_file"] == ["/mosquitto/config/passwd"]
    assert conf["acl_file"] == ["/mosquitto/config/acl"]
    assert conf["certfile"] == ["/mosquitto/config/tls/server.crt"]
    assert conf["keyfile"] == ["/mosquitto/config/tls/server.key"]
    assert conf["tls_version"] == ["tlsv1.2"]
    assert conf["set_tcp_nodelay"] == ["true"]
    assert conf["max_queued_messages"] == ["100000"]
    assert conf["persistence"] == ["true"]


def test_the_entry_points_are_posix_sh(services: dict[str, Any]) -> None:
    scripts = [MOSQUITTO_DIR / "entrypoint.sh", COMPOSE_DIR / "make-secrets.sh",
               *sorted((COMPOSE_DIR / "bin").glob("*.sh"))]
    for script in scripts:
        out = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert out.returncode == 0, f"{script}: {out.stderr}"
        if shutil.which("checkbashisms"):
            out = subprocess.run(["checkbashisms", str(script)], capture_output=True, text=True)
            assert out.returncode == 0, f"{script}: {out.stdout}{out.stderr}"
    # each service runs its entry point from the folder mounted for it
    mounts = {"mosquitto": ("./mosquitto:/mosquitto/config-src:ro", "./bin:/twinctl-compose:ro"),
              "redis": ("./bin:/twinctl-compose:ro",), "flower": ("./bin:/twinctl-compose:ro",)}
    for name, wanted in mounts.items():
        for volume in wanted:
            assert volume in services[name]["volumes"], f"{name}: {volume}"
        script = services[name]["entrypoint"][1]
        local = script.replace("/mosquitto/config-src/", "mosquitto/").replace(
            "/twinctl-compose/", "bin/")
        assert (COMPOSE_DIR / local).is_file(), f"{name}: {script}"
