"""docs/models.md is generated from the libraries' metadata; stale docs fail here."""

from __future__ import annotations

from pathlib import Path

from common.settings import TABLE, settings_markdown, with_settings_table
from modellib.docs import library_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"
README = DOC.parent.parent / "README.md"


def test_models_md_is_current() -> None:
    assert DOC.exists(), "docs/models.md is missing: run `python -m modellib.docs > docs/models.md`"
    assert DOC.read_text(encoding="utf-8") == library_markdown(), (
        "docs/models.md is stale: run `python -m modellib.docs > docs/models.md`")


def test_every_model_and_function_is_documented() -> None:
    text = library_markdown()
    from modellib import model_names
    from modellib.functions import function_names

    for name in [*model_names(), *function_names()]:
        assert f"### {name}\n" in text


def test_the_readme_settings_table_is_current() -> None:
    """The table comes from common/settings.py's TABLE, where each setting is declared once."""
    text = README.read_text(encoding="utf-8")
    assert with_settings_table(text) == text, (
        "README.md's settings table is stale: run `twinctl docs`")
    assert settings_markdown() in text
    for setting in TABLE:
        assert f"| `{setting.name}` |" in text
