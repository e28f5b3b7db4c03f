"""``twinctl new-model`` and ``twinctl check-model`` as an author runs them: the written
file passes, a model without units fails, a module:Class target is checked in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_plugins import clean_registry as clean_registry  # noqa: F401  (fixture)
from twinctl.modelcheck import check_model, passed

ROOT = Path(__file__).resolve().parent.parent


def twinctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twinctl", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_a_new_model_file_passes_its_check(tmp_path: Path) -> None:
    made = twinctl("new-model", "BasinHeater", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    path = tmp_path / "basin_heater.py"
    assert path.is_file() and "check-model" in made.stdout
    checked = twinctl("check-model", str(path))
    assert checked.returncode == 0, checked.stdout
    assert "ok    declarations" in checked.stdout and "ok    dynamic run" in checked.stdout
    assert checked.stdout.rstrip().endswith("passed")
    again = twinctl("new-model", "BasinHeater", "--dir", str(tmp_path))
    assert again.returncode == 1 and "not overwritten" in again.stderr


def test_a_model_without_units_fails_its_check(tmp_path: Path) -> None:
    path = tmp_path / "bare.py"
    path.write_text(
        "from modellib import Model, Output, Param, register\n\n\n@register\n"
        "class Bare(Model):\n    name = 'Bare'\n    description = 'no units'\n"
        "    parameters = (Param('k', '', 'gain', default=1.0),)\n"
        "    outputs = (Output('y', 'm', 'y'),)\n\n"
        "    def output(self, t, u, x):\n        return {'y': self.p['k']}\n")
    checked = twinctl("check-model", str(path))
    assert checked.returncode == 1
    assert "parameter 'k' has no unit" in checked.stdout and "failed" in checked.stdout


def test_a_built_in_model_passes_by_module_and_class(clean_registry: None) -> None:  # noqa: F811
    checked = twinctl("check-model", "modellib.models.tank:Tank",
                      "--params", '{"area": 1.0, "outlet_area": 0.01}')
    assert checked.returncode == 0, checked.stdout
    assert "ok    vectorized: two elements at once equal one at a time" in checked.stdout
    missing = twinctl("check-model", "modellib.models.tank:Tank")
    assert missing.returncode == 1 and "no default for area, outlet_area" in missing.stdout
    from modellib import get_model

    assert passed(check_model(get_model("Sine")))
