"""Instance library: shipped data loads; bad files are named; resolution into params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instances import InstanceLibrary
from modellib import CodedError
from twinctl.settings import DEFAULT_INSTANCES


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
