"""The operator's own models over MQTT with real workers: a model from TWIN_MODEL_PATH in
`describe` with its source and units, run connected to a built-in model (checked
against its closed form), a broken file skipped in `describe` and the status, and a
worker started with another model set refusing the job."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_id, running_stack, stack_env
from tests.faults.fixtures import orchestrators as orchestrators
from tests.faults.fixtures import servers as servers
from tests.faults.harness import Servers, controller, wait_worker
from tests.orchestrator import Orchestrator
from tests.test_plugins import GOOD

pytestmark = pytest.mark.integration


def model_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "heater.py").write_text(GOOD)
    (root / "boom.py").write_text("import not_installed_anywhere\n")
    return root


@pytest.fixture(scope="module")
def orch(redis_server: Any, mqtt_server: Any, tmp_path_factory: Any) -> Iterator[Orchestrator]:
    folder = model_folder(tmp_path_factory.mktemp("models"))
    env = stack_env(redis_server, mqtt_server, TWIN_MODEL_PATH=str(folder))
    with running_stack(env, tmp_path_factory.mktemp("logs"), workers=1) as stack:
        s = stack.settings
        o = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        yield o
        o.close()


def test_a_folder_model_is_described_with_its_source_and_the_broken_one_skipped(
        orch: Orchestrator) -> None:
    described = orch.request({"id": new_id("d"), "cmd": "describe"})[-1]
    heater = described["models"]["TestHeater"]
    assert heater["source"] == "plugin:heater.py"
    assert {p["name"]: p["unit"] for p in heater["parameters"]} == {"capacity": "J/K",
                                                                    "ua": "W/K"}
    assert all(v["description"] for v in heater["inputs"] + heater["outputs"])
    assert described["models"]["Tank"]["source"] == "builtin"
    skipped = {Path(s["where"]).name: s["why"] for s in described["skipped"]}
    assert skipped == {"boom.py": "it could not be imported: ModuleNotFoundError: No module "
                                  "named 'not_installed_anywhere'"}
    status = orch.last_status(orch.cid)
    assert status is not None and len(status["models_digest"]) == 16
    assert [Path(s["where"]).name for s in status["skipped"]] == ["boom.py"]


def test_a_folder_model_runs_connected_to_a_built_in_one(orch: Orchestrator) -> None:
    power, ua, capacity, ambient = 4180.0, 50.0, 4.18e5, 293.15
    result = orch.request({"id": new_id("run"), "cmd": "run", "scenario": {
        "mode": "dynamic",
        "elements": {"switch": {"model": "Step", "params": {"final": power,
                                                            "step_time": 600}},
                     "heater": {"model": "TestHeater", "params": {"ua": ua}}},
        "connections": [{"from": "switch.y", "to": "heater.power"}],
        "outputs": ["heater.temperature"], "time": {"start": 0, "stop": 7200, "step": 600}}},
        timeout=30)[-1]
    assert result["type"] == "result" and result["status"] == "ok", result
    assert result["units"] == {"heater.temperature": "K"}
    for t, temp in zip(result["t"], result["values"]["heater.temperature"], strict=True):
        rise = 0.0 if t < 600 else power / ua * (1 - math.exp(-ua * (t - 600) / capacity))
        assert temp == pytest.approx(ambient + rise, rel=1e-6, abs=1e-6)


@pytest.mark.timeout(120)
def test_a_worker_with_another_model_set_refuses_the_job(
        servers: Servers, orchestrators: Callable[..., Orchestrator], tmp_path: Path) -> None:
    ctl = controller(servers, orchestrators, tmp_path)
    orch, parts = ctl.orch, ctl.parts
    try:
        parts.ingress(env={"TWIN_MODEL_PATH": str(model_folder(tmp_path / "models"))})
        orch.wait(lambda: orch.status(ctl.cid)[-1:] == ["online"], 30, "the ingress online")
        parts.worker(name="w1")  # started without the model folder
        wait_worker(ctl.redis.url, 30)
        rid = new_id("other")
        orch.send({"id": rid, "cmd": "run", "scenario": {
            "mode": "static", "elements": {"lag": {"model": "FirstOrderLag",
                                                   "params": {"time_constant": 1.0}}},
            "inputs": {"lag.u": 1.0}}})
        error = orch.wait_final(rid, timeout=30)[-1]
        assert error["type"] == "error" and error["code"] == "internal_error", error
        assert "model library" in error["message"] and "TWIN_MODEL_PATH" in error["message"]
    finally:
        parts.stop()


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cooling-tower"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: Any) -> Path:
    """The worked example, installed by pip into a folder of its own (as an operator
    installs it next to twinctl), on the stack's PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "cooling-tower"
    shutil.copytree(EXAMPLE, source)  # (pip builds in the source: not in the checkout)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--target", str(site), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return site


def test_the_installed_example_package_runs_connected_to_a_built_in_model(
        installed: Path, redis_server: Any, mqtt_server: Any, tmp_path: Path) -> None:
    env = stack_env(redis_server, mqtt_server, PYTHONPATH=str(installed),
                    TWIN_PLUGINS="twinctl-cooling-tower")
    with running_stack(env, tmp_path / "logs", workers=1) as stack:
        s = stack.settings
        orch = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
        try:
            described = orch.request({"id": new_id("d"), "cmd": "describe"})[-1]
            tower = described["models"]["CoolingTower"]
            assert tower["source"] == "plugin:twinctl-cooling-tower"
            assert {p["name"]: p["unit"] for p in tower["inputs"]} == {
                "t_in": "K", "flow": "m3/s", "t_wb": "K"}
            q, volume, e, t_in, t_wb, t0 = 0.02, 20.0, 0.6, 308.15, 293.15, 300.15
            result = orch.request({"id": new_id("run"), "cmd": "run", "scenario": {
                "mode": "dynamic",
                "elements": {"pump": {"model": "Step", "params": {"final": q,
                                                                  "step_time": 0}},
                             "tower": {"model": "CoolingTower"}},
                "connections": [{"from": "pump.y", "to": "tower.flow"}],
                "outputs": ["tower.temperature", "tower.duty"],
                "time": {"start": 0, "stop": 3000, "step": 300}}}, timeout=30)[-1]
        finally:
            orch.close()
    assert result["type"] == "result" and result["status"] == "ok", result
    t_out = t_in - e * (t_in - t_wb)  # the fill's outlet; the basin relaxes towards it
    for t, temp in zip(result["t"], result["values"]["tower.temperature"], strict=True):
        assert temp == pytest.approx(t_out + (t0 - t_out) * math.exp(-q * t / volume),
                                     rel=1e-6)
    assert result["values"]["tower.duty"][-1] == pytest.approx(
        998.0 * 4182.0 * q * e * (t_in - t_wb), rel=1e-9)
