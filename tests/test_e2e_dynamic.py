"""Dynamic runs over MQTT with real workers: results, templates, and long series
streamed as `data` chunks (a stack with TWIN_MAX_RESULT_ROWS=100)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conftest import new_id, running_stack, stack_env
from tests.orchestrator import Orchestrator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_rows(redis_server: Any, mqtt_server: Any,
               tmp_path_factory: Any) -> Iterator[Orchestrator]:
    env = stack_env(redis_server, mqtt_server, TWIN_MAX_RESULT_ROWS="100")
    with running_stack(env, tmp_path_factory.mktemp("logs"), workers=2) as stack:
        s = stack.settings
        orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        yield orch
        orch.close()


def draining(rid: str, stop: float, step: float) -> dict[str, Any]:
    return {"id": rid, "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"tank": {"model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01},
                              "initial": {"level": 2.0}}},
        "outputs": ["tank.level"], "time": {"start": 0, "stop": stop, "step": step}}}


def test_a_short_dynamic_run_returns_its_columns(small_rows: Orchestrator) -> None:
    rid = new_id("dyn")
    replies = small_rows.request(draining(rid, 50, 1.0), timeout=30)
    assert [r["type"] for r in replies] == ["ack", "result"]
    assert replies[0]["queue"] == "twin.long"
    result = replies[1]
    assert result["t"][0] == 0 and result["t"][-1] == 50 and len(result["t"]) == 51
    t = np.asarray(result["t"])
    exact = (np.sqrt(2.0) - 0.62 * 0.01 * np.sqrt(9.80665 / 2) * t) ** 2
    assert np.allclose(result["values"]["tank.level"], exact, rtol=1e-4)


def test_a_long_series_is_streamed_in_chunks_then_one_result(small_rows: Orchestrator) -> None:
    rid = new_id("stream")
    replies = small_rows.request(draining(rid, 100, 0.1), timeout=60)  # 1001 rows
    kinds = [r["type"] for r in replies]
    assert kinds == ["ack", *["data"] * 11, "result"]
    assert [r["seq"] for r in replies] == list(range(13))
    data = [r for r in replies if r["type"] == "data"]
    t = [x for r in data for x in r["t"]]
    assert t == pytest.approx([round(0.1 * k, 10) for k in range(1001)])
    assert sum(len(r["values"]["tank.level"]) for r in data) == 1001
    result = replies[-1]
    assert result["streamed"] is True and result["chunks"] == 11 and result["rows"] == 1001
    assert "values" not in result


def test_a_template_runs_with_its_arguments(small_rows: Orchestrator) -> None:
    rid = new_id("tpl")
    replies = small_rows.request({"id": rid, "cmd": "run", "template": "pump_to_tank",
                                  "args": {"speed": 1300, "stop": 60, "step": 1}}, timeout=60)
    result = replies[-1]
    assert result["type"] == "result", result
    assert len(result["t"]) == 61
    assert result["post"]["mean_power"] > 0
    (bad,) = small_rows.request({"id": new_id("tpl"), "cmd": "run", "template": "pump_to_tnak",
                                 "args": {}})
    assert (bad["code"], bad["path"]) == ("unknown_template", "template")
    assert "pump_to_tank" in bad["message"]


def test_describe_lists_the_templates(small_rows: Orchestrator) -> None:
    (reply,) = small_rows.request({"id": new_id("describe"), "cmd": "describe"})
    assert {"pump_to_tank", "tank_draining", "pump_operating_point", "level_control"} <= set(
        reply["templates"])
    assert reply["templates"]["pump_to_tank"]["args"]["speed"]["unit"] == "rpm"
