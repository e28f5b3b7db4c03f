"""Instance library: shipped data loads; bad files are named; resolution into params."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from instances import SHIPPED_INSTANCES as DEFAULT_INSTANCES
from instances import InstanceLibrary
from modellib import CodedError


def test_the_shipped_library_loads_and_validates() -> None:
    lib = InstanceLibrary(DEFAULT_INSTANCES)
    assert "P-101" in lib
    assert lib.get("P-101").model == "CentrifugalPump"


def test_resolve_merges_instance_and_element_params() -> None:
    lib = InstanceLibrary(DEFAULT_INSTANCES)
    out = lib.resolve({"elements": {"p": {"instance": "P-101", "params": {"efficiency": 0.5}}}})
    params = out["elements"]["p"]["params"]
    assert params["efficiency"] == 0.5 and params["shutoff_head"] == 40.0
    assert out["elements"]["p"]["model"] == "CentrifugalPump"


def test_resolve_leaves_the_scenario_it_is_given_unchanged() -> None:
    """It copies the elements it completes, not the whole scenario (a long input series
    is shared, not copied: the copy once cost half of checking a 0.7 MB run)."""
    lib = InstanceLibrary(DEFAULT_INSTANCES)
    series = {"t": [0.0, 1.0], "v": [1.0, 2.0]}
    given = {"elements": {"p": {"instance": "P-101", "params": {"efficiency": 0.5}},
                          "q": {"model": "FirstOrderLag"}},
             "inputs": {"q.u": series}}
    before = json.dumps(given, sort_keys=True)
    out = lib.resolve(given)
    assert json.dumps(given, sort_keys=True) == before
    assert out["elements"]["p"]["model"] == "CentrifugalPump"
    assert "model" not in given["elements"]["p"] and out["inputs"]["q.u"] is series


def test_unknown_instance_and_wrong_model() -> None:
    lib = InstanceLibrary(DEFAULT_INSTANCES)
    with pytest.raises(CodedError) as info:
        lib.resolve({"elements": {"p": {"instance": "P-1O1"}}})
    assert info.value.code == "unknown_instance"
    assert info.value.path == "scenario.elements.p.instance"
    assert "P-101" in info.value.message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{nope", "not valid JSON"),
        (json.dumps({"id": "X", "model": "Pmp", "params": {}}), "no model"),
        (json.dumps({"id": "X", "model": "CentrifugalPump", "params": {"rated_speed": 1}}),
         "shutoff_head"),
    ],
)
def test_a_bad_file_is_named(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(CodedError) as info:
        InstanceLibrary(tmp_path)
    assert "bad.json" in info.value.message and words in info.value.message


NEW_PUMP = {"id": "P-201", "model": "CentrifugalPump", "description": "spare pump",
            "tags": ["pump"], "params": {"rated_speed": 2900, "shutoff_head": 55.0,
                                         "curve_coefficient": 30000.0, "efficiency": 0.7}}


def test_a_new_folder_is_seeded_from_the_shipped_set(tmp_path: Path) -> None:
    lib = InstanceLibrary(tmp_path / "lib", seed=DEFAULT_INSTANCES)
    assert "P-101" in lib
    assert sorted(p.name for p in (tmp_path / "lib").glob("*.json")) == sorted(
        p.name for p in DEFAULT_INSTANCES.glob("*.json"))


def test_put_and_delete_persist_and_survive_a_reload(tmp_path: Path) -> None:
    lib = InstanceLibrary(tmp_path / "lib", seed=DEFAULT_INSTANCES)
    inst, created = lib.put(NEW_PUMP)
    assert created and inst.id == "P-201"
    _, created = lib.put({**NEW_PUMP, "description": "renamed"})
    assert not created
    again = InstanceLibrary(tmp_path / "lib")
    assert again.get("P-201").description == "renamed"
    again.delete("P-101")
    assert "P-101" not in InstanceLibrary(tmp_path / "lib")
    # no temporary files are left behind
    assert not list((tmp_path / "lib").glob(".*"))


def test_put_refuses_a_bad_instance_and_writes_nothing(tmp_path: Path) -> None:
    lib = InstanceLibrary(tmp_path / "lib", seed=DEFAULT_INSTANCES)
    before = sorted((tmp_path / "lib").iterdir())
    with pytest.raises(CodedError) as info:
        lib.put({**NEW_PUMP, "params": {**NEW_PUMP["params"], "efficiency": 2}})
    assert (info.value.code, info.value.path) == ("invalid_argument",
                                                  "instance.params.efficiency")
    assert sorted((tmp_path / "lib").iterdir()) == before


def test_a_crash_while_writing_leaves_the_old_file(tmp_path: Path, monkeypatch: Any) -> None:
    lib = InstanceLibrary(tmp_path / "lib", seed=DEFAULT_INSTANCES)
    target = tmp_path / "lib" / "P-101.json"
    old = target.read_bytes()

    def crash(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        lib.put({**json.loads(old), "description": "half-written?"})
    assert target.read_bytes() == old
    assert not list((tmp_path / "lib").glob(".*"))


@pytest.mark.parametrize(("data", "path"), [
    ({"id": "P-1\n", "model": "Pipe", "params": {}}, "instance.id"),
    ({"id": ".hidden", "model": "Pipe", "params": {}}, "instance.id"),
    ({"id": "P-1", "model": ["Pipe"], "params": {}}, "instance.model"),
])
def test_instance_ids_and_models_that_cannot_be_files_or_names(
        tmp_path: Path, data: dict[str, Any], path: str) -> None:
    lib = InstanceLibrary(tmp_path / "lib")
    with pytest.raises(CodedError) as info:
        lib.check(data)
    assert (info.value.code, info.value.path) == ("invalid_argument", path)
