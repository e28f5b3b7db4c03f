"""docs/models.md is generated from the libraries' metadata; stale docs fail here."""

from __future__ import annotations

from pathlib import Path

from modellib.docs import library_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"


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
