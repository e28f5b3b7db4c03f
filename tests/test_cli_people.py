"""`twinctl send --plot --csv`, `describe` and `status` as a person (or a script) runs
them, against a real stack: Redis, Mosquitto, the ingress and a Celery worker."""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from tests.conftest import new_id, running_stack, stack_env
from twinctl.stack import Stack

pytestmark = pytest.mark.integration

MAX_ROWS = 25  # this stack streams a series longer than 25 rows as data chunks


@pytest.fixture(scope="module")
def people(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    env = stack_env(redis_server, mqtt_server, TWIN_MAX_RESULT_ROWS=str(MAX_ROWS))
    with running_stack(env, tmp_path_factory.mktemp("cli-people-logs"), workers=1,
                       realtime=1) as s:
        yield s


def twinctl(stack: Stack, *args: str, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twinctl", *args], input=stdin,
                          env={**os.environ, **stack.env}, capture_output=True, text=True,
                          timeout=timeout)


def draining(stop: float, step: float = 1.0) -> dict[str, Any]:
    return {"id": new_id("cli"), "cmd": "run", "template": "tank_draining",
            "args": {"initial_level": 2.0, "stop": stop, "step": step}}


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_send_plot_and_csv_of_a_streamed_dynamic_run(people: Stack, tmp_path: Path) -> None:
    png, table = tmp_path / "out.png", tmp_path / "out.csv"
    cmd = draining(60)  # 61 rows: streamed as chunks of 25, 25, 11
    out = twinctl(people, "send", "-", "--json", "--plot", str(png), "--csv", str(table),
                  stdin=json.dumps(cmd))
    assert out.returncode == 0, out.stderr
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["type"] for r in replies] == ["ack", "data", "data", "data", "result"]
    assert replies[-1]["streamed"] is True
    rows = read_csv(table)
    assert rows[0] == ["t [s]", "tank.level [m]", "tank.outflow [m3/s]"]  # the result's units
    assert len(rows) == 1 + 61
    assert [float(r[0]) for r in rows[1:]] == [float(i) for i in range(61)]
    assert float(rows[1][1]) == pytest.approx(2.0)
    assert float(rows[-1][1]) < 2.0  # it drained
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(str(png)).ndim == 3
    assert out.stderr == ""  # --json: nothing but the replies


def test_send_of_a_short_dynamic_run_prints_a_summary(people: Stack, tmp_path: Path) -> None:
    table = tmp_path / "short.csv"
    out = twinctl(people, "send", "-", "--csv", str(table), stdin=json.dumps(draining(10)))
    assert out.returncode == 0, out.stderr
    assert len(read_csv(table)) == 1 + 11
    assert "11 rows, t = 0 … 10 s" in out.stdout
    assert "tank.level" in out.stdout and "m3/s" in out.stdout
    assert f"wrote 11 row(s) to {table}" in out.stderr
    assert "\x1b[" not in out.stdout + out.stderr  # no terminal: no colours, no progress bar


def test_a_static_run_writes_one_csv_row_and_refuses_to_plot(people: Stack,
                                                            tmp_path: Path) -> None:
    cmd = {"cmd": "run", "template": "pump_operating_point", "args": {"speed": 1450}}
    table = tmp_path / "static.csv"
    out = twinctl(people, "send", "-", "--csv", str(table), stdin=json.dumps(cmd))
    assert out.returncode == 0, out.stderr
    rows = read_csv(table)
    assert len(rows) == 2 and all(float(v) == float(v) for v in rows[1])
    refused = twinctl(people, "send", "-", "--plot", str(tmp_path / "x.png"),
                      stdin=json.dumps(cmd))
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "--plot" in refused.stderr and "static" in refused.stderr
    assert not (tmp_path / "x.png").exists()


def test_send_shows_a_progress_bar_on_a_terminal(people: Stack) -> None:
    """stderr on a pseudo-terminal: the bar runs to 100 % with the rows; stdout (a pipe)
    gets the replies, free of escape codes."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "twinctl", "send", "-"],
                            env={**os.environ, **people.env, "COLUMNS": "120", "TERM": "xterm"},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave,
                            text=True)
    os.close(slave)
    stdout, _ = proc.communicate(json.dumps(draining(60)), timeout=60)
    shown = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.returncode == 0, shown.decode(errors="replace")
    screen = shown.decode(errors="replace")
    assert "100%" in screen and "61 rows" in screen and "t = 60 / 60 s" in screen
    assert "61 rows, t = 0 … 60 s" in stdout and "\x1b[" not in stdout


def test_a_realtime_run_longer_than_the_timeout_goes_on_while_data_comes(
        people: Stack, tmp_path: Path) -> None:
    """5 s of real time, rows every 0.5 s, --timeout 3: each reply restarts the timeout."""
    cmd = {"id": new_id("cli-rt"), "cmd": "run", "scenario": {
        "mode": "realtime",
        "elements": {"lag": {"model": "FirstOrderLag",
                             "params": {"gain": 2.0, "time_constant": 0.5}}},
        "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"],
        "time": {"start": 0, "stop": 5, "step": 0.1},
        "realtime": {"speed": 1.0, "publish_every": 5}}}
    table = tmp_path / "rt.csv"
    started = time.monotonic()
    out = twinctl(people, "send", "-", "--json", "--timeout", "3", "--csv", str(table),
                  stdin=json.dumps(cmd))
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started > 4.5
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert replies[-1]["type"] == "result" and replies[-1]["status"] == "completed"
    rows = read_csv(table)
    assert rows[0] == ["t [s]", "lag.y [1]"] and len(rows) == 1 + 51


def test_describe_prints_the_library_as_tables(people: Stack) -> None:
    out = twinctl(people, "describe")
    assert out.returncode == 0, out.stderr
    for word in ("Models", "CentrifugalPump", "flow [m3/s]", "Functions", "Instances",
                 "P-101", "Templates", "tank_draining"):
        assert word in out.stdout, word
    raw = twinctl(people, "describe", "--json")
    assert raw.returncode == 0, raw.stderr
    description = json.loads(raw.stdout)
    assert description["type"] == "description"
    assert "CentrifugalPump" in description["models"]


def test_status_lists_this_controller_online(people: Stack) -> None:
    cid = people.settings.controller_id
    out = twinctl(people, "status", "--json")
    assert out.returncode == 0, out.stderr
    statuses = json.loads(out.stdout)
    assert statuses[cid]["state"] == "online"
    assert set(statuses[cid]["queues"]) >= {"twin.short", "twin.long"}
    assert isinstance(statuses[cid]["outbox"], int)
    table = twinctl(people, "status", "--wait", "1")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if cid in line)
    assert "online" in row


def test_status_of_a_prefix_without_controllers_exits_1(people: Stack) -> None:
    out = subprocess.run([sys.executable, "-m", "twinctl", "status", "--wait", "0.3"],
                         env={**os.environ, **people.env, "TWIN_MQTT_PREFIX": "nobody-here"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "no controller status on nobody-here/+/status" in out.stderr


def test_alarms_of_a_run_are_printed_and_twinctl_alarms_lists_the_live_ones(
        people: Stack, tmp_path: Path) -> None:
    cmd = draining(60)
    cmd["args"]["initial_level"] = 2.0
    from scenario_builder import expand_template

    scenario = expand_template("tank_draining", cmd.pop("args"))
    del cmd["template"]
    scenario["alarms"] = [{"name": "T1-low", "on": "tank.level", "low": 1.9,
                           "priority": "high"}]
    out = twinctl(people, "send", "-", stdin=json.dumps({**cmd, "scenario": scenario}))
    assert out.returncode == 0, out.stderr
    assert "alarm T1-low raised at t = " in out.stdout and "[high]" in out.stdout
    assert "tank.level 1.9 m below 1.9 m" in out.stdout
    listed = twinctl(people, "alarms", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    none = twinctl(people, "alarms")
    assert none.returncode == 0
    assert "no live alarm" in none.stderr or "source" in none.stdout
