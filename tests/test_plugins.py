"""The operator's own models (modellib.plugins): a model folder and entry points of an
installed distribution load like built-in models; what is broken is skipped with the
file or distribution, the model and why; the model set's digest changes with them."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from modellib import describe_models, get_model
from modellib import plugins as plugins_module
from modellib.functions.registry import FUNCTIONS
from modellib.plugins import check_metadata, load_plugins, model_set_digest
from modellib.registry import MODELS
from scenario_builder import run_scenario

GOOD = '''
from modellib import Input, Model, Output, Param, State, register


@register
class Heater(Model):
    """A well-mixed water volume heated electrically: m c dT/dt = P - UA (T - T_amb)."""

    name = "TestHeater"
    description = "a heated, well-mixed water volume with losses to ambient"
    reference = "energy balance of a lumped thermal mass"
    parameters = (Param("capacity", "J/K", "heat capacity m c", default=4.18e5),
                  Param("ua", "W/K", "loss coefficient UA", default=50.0))
    inputs = (Input("power", "W", "electric heating power", default=0.0),
              Input("ambient", "K", "ambient temperature", default=293.15))
    outputs = (Output("temperature", "K", "water temperature"),)
    states = (State("temperature", "K", "water temperature", default=293.15),)
    feedthrough = False

    def derivatives(self, t, u, x):
        p = self.p
        return {"temperature": (u["power"] - p["ua"] * (x["temperature"] - u["ambient"]))
                / p["capacity"]}

    def output(self, t, u, x):
        return {"temperature": x["temperature"]}
'''


@pytest.fixture()
def clean_registry() -> Iterator[None]:
    """The registries and the plugin loads as they were before the test."""
    models, functions = MODELS.items(), FUNCTIONS.items()
    loads = dict(plugins_module._loaded)
    yield
    for registry, before in ((MODELS, models), (FUNCTIONS, functions)):
        for name in set(registry.items()) - set(before):
            registry.unregister(name)
    plugins_module._loaded.clear()
    plugins_module._loaded.update(loads)
    plugins_module._digest = None


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_a_model_from_a_folder_runs_like_a_built_in_one(tmp_path: Path,
                                                        clean_registry: None) -> None:
    before = model_set_digest()
    loaded = load_plugins(model_path=[folder(tmp_path, {"heater.py": GOOD})])
    assert loaded.models == {"TestHeater": "plugin:heater.py"} and not loaded.skipped
    described = describe_models()["TestHeater"]
    assert described["source"] == "plugin:heater.py"
    assert described["parameters"][0]["unit"] == "J/K"
    assert model_set_digest() != before
    result = run_scenario({"mode": "dynamic",
                           "elements": {"h": {"model": "TestHeater", "params": {"ua": 0.0}}},
                           "inputs": {"h.power": 4180.0}, "outputs": ["h.temperature"],
                           "time": {"start": 0, "stop": 100, "step": 10}})
    # no losses: T rises at P / (m c) = 0.01 K/s
    assert result["values"]["h.temperature"][-1] == pytest.approx(293.15 + 1.0, rel=1e-9)
    assert get_model("Tank").source == "builtin"


def test_broken_files_are_skipped_with_the_file_the_model_and_why(
        tmp_path: Path, clean_registry: None) -> None:
    files = {
        "a_good.py": GOOD,
        "boom.py": "raise RuntimeError('no licence server')\n",
        "clash.py": '''
            from modellib import Model, Output, register

            @register
            class Tank(Model):
                name = "Tank"
                description = "another tank"
                outputs = (Output("y", "m", "level"),)
        ''',
        "no_units.py": '''
            from modellib import Model, Output, Param, register

            @register
            class Bare(Model):
                name = "Bare"
                description = "declarations without units"
                parameters = (Param("k", "", "gain", default=1.0),)
                outputs = (Output("y", "furlongs/fortnight2x", ""),)
        ''',
        "empty.py": "x = 1\n",
    }
    loaded = load_plugins(model_path=[folder(tmp_path, files)])
    assert set(loaded.models) == {"TestHeater"}
    why = {Path(s.where).name: s.why for s in loaded.skipped}
    assert why["boom.py"] == "it could not be imported: RuntimeError: no licence server"
    assert "the model name 'Tank' is taken by the builtin model" in why["clash.py"]
    assert "parameter 'k' has no unit" in why["no_units.py"]
    assert "output 'y': its unit 'furlongs/fortnight2x' is not one" in why["no_units.py"]
    assert "output 'y' has no description" in why["no_units.py"]
    assert "defines no model" in why["empty.py"]
    assert "Bare" not in describe_models() and get_model("Tank").source == "builtin"
    assert check_metadata(get_model("Tank")) == []  # every built-in model is complete


def test_entry_points_of_allowed_distributions_are_loaded(
        tmp_path: Path, clean_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution installed into a folder on sys.path (a dist-info with its
    entry_points.txt, as pip writes it)."""
    site = tmp_path / "site"
    (site / "plant_models").mkdir(parents=True)
    (site / "plant_models" / "__init__.py").write_text(textwrap.dedent(
        GOOD.replace("@register\n", "").replace('"TestHeater"', '"PlantHeater"')))
    info = site / "plant_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plant-models\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[twinctl.models]\nheater = plant_models:Heater\n")
    monkeypatch.syspath_prepend(str(site))
    refused = load_plugins(allow=["someone-else"])
    assert "PlantHeater" not in refused.models
    loaded = load_plugins(allow=["plant-models"])
    assert loaded.models == {"PlantHeater": "plugin:plant-models"}
    assert describe_models()["PlantHeater"]["source"] == "plugin:plant-models"
    sys.modules.pop("plant_models", None)
