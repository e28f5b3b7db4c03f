"""`TWIN_LOG_FORMAT=json` end to end: the ingress's one line per command and the
Celery worker's own lines are JSON objects a log collector can read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_id, stack_env
from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

pytestmark = pytest.mark.integration


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_json_logs_from_the_ingress_and_the_worker(redis_server: Any, mqtt_server: Any,
                                                   tmp_path: Path) -> None:
    env = stack_env(redis_server, mqtt_server, TWIN_LOG_FORMAT="json", TWIN_LOG_LEVEL="INFO")
    stack = Stack(env=env, workers=1, quiet=True, log_dir=tmp_path)
    stack.start(embedded_ok=False)
    rid, bad = new_id("log"), new_id("log-bad")
    try:
        stack.wait_ready(60)
        s = stack.settings
        orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        try:
            orch.request({"id": rid, "cmd": "call", "function": "mean",
                          "args": {"x": [1, 2, 3]}})
            orch.request({"id": bad, "cmd": "run", "scenario": {"elements": {
                "p": {"model": "Pmp"}}}})
        finally:
            orch.close()
    finally:
        stack.stop()
    ingress = json_lines(tmp_path / "ingress.log")
    by_id = {e.get("request_id"): e for e in ingress}
    assert by_id[rid]["cmd"] == "call" and by_id[rid]["outcome"] == "ack"
    assert by_id[bad]["outcome"] == "unknown_model"
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in ingress)
    assert isinstance(by_id[rid]["duration_ms"], float)
    # (the call may be taken by either worker of the short queue)
    worker = json_lines(tmp_path / "worker.log") + json_lines(tmp_path / "short-worker.log")
    assert any("twin.call" in e["message"] and "succeeded" in e["message"]
               and e["level"] == "INFO" for e in worker), worker[-5:]
