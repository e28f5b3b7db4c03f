"""twinctl.embedded is a facade over one module per job; the amqtt child stands alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from twinctl import (
    embedded,
    embedded_amqtt,
    embedded_launch,
    embedded_mqtt,
    embedded_redis,
    embedded_service,
)


def test_the_facade_exports_what_its_callers_use() -> None:
    for name in embedded.__all__:
        assert hasattr(embedded, name), name
    assert embedded.start_redis is embedded_redis.start_redis
    assert embedded.start_mqtt is embedded_mqtt.start_mqtt
    assert embedded.mqtt_probe is embedded_mqtt.mqtt_probe
    assert embedded.EmbeddedService is embedded_service.EmbeddedService
    assert embedded.EmbeddedError is embedded_service.EmbeddedError
    assert embedded.port_answers is embedded_launch.port_answers
    assert embedded.free_port is embedded_launch.free_port
    assert embedded.pdeathsig_preexec is embedded_launch.pdeathsig_preexec
    assert embedded.main is embedded_amqtt.main


def test_the_amqtt_child_imports_nothing_of_twinctl() -> None:
    """It runs as a plain script (runpy.run_path), without the project on sys.path."""
    tree = ast.parse(Path(embedded_amqtt.__file__).read_text("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and (node.module or "").split(".")[0] != "twinctl"
        elif isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] != "twinctl" for a in node.names)
    assert embedded_amqtt.HOST == embedded_service.HOST


def test_the_amqtt_child_runs_its_own_file() -> None:
    argv = embedded_mqtt._amqtt_argv(1884)
    assert Path(argv[-3]) == Path(embedded_amqtt.__file__).resolve()
    assert argv[-2:] == ["amqtt", "1884"]


def test_the_amqtt_child_refuses_a_bad_command_line() -> None:
    assert embedded.main(["mosquitto", "1884"]) == 2
    done = subprocess.run([sys.executable, "-m", "twinctl.embedded", "amqtt"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "usage: python -m twinctl.embedded amqtt PORT [HOST]\n"
