"""What the tests of the container deployment in ``compose/`` share: its paths, the
compose file's services as YAML (a module fixture: ``tests/test_compose_file.py`` and
``tests/test_compose_image.py`` import it, ``from tests.compose_helpers import services
as services``) and the shell text of a health check.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    assert isinstance(data, dict)
    result: dict[str, Any] = data["services"]
    return result


def shell_text(check: list[str]) -> str:
    """A health check's shell text as the container's shell sees it ($$ → $)."""
    return check[1].replace("$$", "$")
