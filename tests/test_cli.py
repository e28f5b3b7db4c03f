"""`twinctl up` and `twinctl send` as a user runs them, against real Mosquitto and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import new_id, stack_env

pytestmark = pytest.mark.integration


def twinctl(*args: str, env: dict[str, str], stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twinctl", *args], input=stdin,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def up(redis_server: Any, mqtt_server: Any) -> Iterator[tuple[subprocess.Popen[str], dict]]:
    env = stack_env(redis_server, mqtt_server)
    proc = subprocess.Popen([sys.executable, "-m", "twinctl", "up", "--workers", "1"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "ready" in line:
            break
    assert any("ready" in line for line in lines), "".join(lines)
    yield proc, env
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def test_send_prints_replies_and_exits_0_on_result(up: Any) -> None:
    _, env = up
    cmd = {"id": new_id("cli"), "cmd": "run", "scenario": {
        "elements": {"pump": {"model": "CentrifugalPump", "instance": "P-101"}},
        "inputs": {"pump.speed": 1450, "pump.flow": 0.0}}}
    out = twinctl("send", "-", "--json", env=env, stdin=json.dumps(cmd))
    assert out.returncode == 0, out.stderr
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["type"] for r in replies] == ["ack", "result"]
    assert replies[1]["values"]["pump.head"] == pytest.approx(40.0)


def test_send_exits_1_on_error_with_a_readable_line(up: Any, tmp_path: Any) -> None:
    _, env = up
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"cmd": "run", "scenario": {"elements": {
        "pump": {"model": "CentrifugalPmp"}}}}))
    out = twinctl("send", str(path), env=env)
    assert out.returncode == 1
    # the error is one line on stderr: code, path, message
    line, = (x for x in out.stderr.splitlines() if x.startswith("error "))
    assert line.startswith("error unknown_model at scenario.elements.pump.model: ")
    assert "did you mean 'CentrifugalPump'" in line


def test_send_exits_2_on_timeout(up: Any) -> None:
    _, env = up
    out = twinctl("send", "-", "--timeout", "1", env={**env, "TWIN_CONTROLLER_ID": "nobody"},
                  stdin='{"cmd": "ping"}')
    assert out.returncode == 2
    assert "no final reply" in out.stderr


def test_up_stops_cleanly_on_sigterm(up: Any) -> None:
    proc, env = up
    assert twinctl("send", "-", env=env, stdin='{"cmd": "ping"}').returncode == 0
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0
    # the last will / clean stop leaves the retained status offline
    out = subprocess.run(
        [sys.executable, "-c", (
            "import paho.mqtt.subscribe as s, sys;"
            f"m = s.simple('{env['TWIN_MQTT_PREFIX']}/{env['TWIN_CONTROLLER_ID']}/status',"
            f"hostname='127.0.0.1', port={env['TWIN_MQTT_URL'].rsplit(':', 1)[1]});"
            "sys.stdout.write(m.payload.decode())")],
        capture_output=True, text=True, timeout=20)
    assert json.loads(out.stdout)["state"] == "offline"
