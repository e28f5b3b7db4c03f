"""Registries by name: one for models, one (in :mod:`modellib.functions`) for functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .base import Model
from .errors import ModelLibError, UnknownModel

__all__ = ["Registry", "NameTaken", "register", "get_model", "model_names", "describe_models"]


class NameTaken(ValueError):
    """A second class registered under a name already taken (by ``taken``)."""

    def __init__(self, name: str, taken: Any) -> None:
        super().__init__(f"two entries are named {name!r}")
        self.name = name
        self.taken = taken


T = TypeVar("T", bound=type[Any])
"""a class with a ``name`` and a ``describe()`` classmethod"""


class Registry(Generic[T]):
    """Classes by their ``name``; an unknown name raises ``unknown(name, known, path)``."""

    def __init__(self, unknown: Callable[..., ModelLibError]) -> None:
        self._items: dict[str, T] = {}
        self._unknown = unknown

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under ``cls.name``."""
        if cls.name in self._items and self._items[cls.name] is not cls:
            raise NameTaken(cls.name, self._items[cls.name])
        self._items[cls.name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Remove the entry ``name`` (a plugin's that failed its checks)."""
        self._items.pop(name, None)

    def items(self) -> dict[str, T]:
        """A copy of the entries, by name."""
        return dict(self._items)

    def get(self, name: object, *, path: str | None = None) -> T:
        if isinstance(name, str) and name in self._items:
            return self._items[name]
        raise self._unknown(name, self._items, path=path)

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every entry's metadata, by name."""
        return {name: self._items[name].describe() for name in sorted(self._items)}


def _unknown_model(name: object, known: dict[str, Any], *, path: str | None) -> ModelLibError:
    return UnknownModel(str(name), known, path=path)


MODELS: Registry[type[Model]] = Registry(_unknown_model)
register = MODELS.register
get_model = MODELS.get
model_names = MODELS.names
describe_models = MODELS.describe
