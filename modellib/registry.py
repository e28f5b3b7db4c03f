"""The model registry: model classes by name."""

from __future__ import annotations

from typing import Any, TypeVar

from .base import Model
from .errors import UnknownModel

__all__ = ["register", "get_model", "model_names", "describe_models"]

_MODELS: dict[str, type[Model]] = {}
M = TypeVar("M", bound=type[Model])


def register(cls: M) -> M:
    """Class decorator: add a model to the registry under ``cls.name``."""
    if cls.name in _MODELS and _MODELS[cls.name] is not cls:
        raise ValueError(f"two models are named {cls.name!r}")
    _MODELS[cls.name] = cls
    return cls


def get_model(name: object, *, path: str | None = None) -> type[Model]:
    """The model class called ``name``; :class:`UnknownModel` with a hint otherwise."""
    if isinstance(name, str) and name in _MODELS:
        return _MODELS[name]
    raise UnknownModel(str(name), _MODELS, path=path)


def model_names() -> list[str]:
    return sorted(_MODELS)


def describe_models() -> dict[str, dict[str, Any]]:
    """Every model's metadata, by name."""
    return {name: _MODELS[name].describe() for name in sorted(_MODELS)}
