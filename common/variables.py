"""How one ``TWIN_*`` variable is read: :class:`Setting` and the marshmallow fields it uses.

A :class:`Setting` turns the text of its variable into a value (blank: the default)
and back (:meth:`Setting.dump`, for a child process); a wrong value is one line,
``NAME=value: what would be right``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from marshmallow import ValidationError, validate
from marshmallow import fields as mf

from .errors import SettingsError

__all__ = ["Setting", "whole", "flag", "name_field", "choice", "text", "Names", "File", "Folder",
           "NAME_RE"]

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def whole(lo: int, hi: int, example: int) -> mf.Field:
    return mf.Integer(
        validate=validate.Range(lo, hi, error=f"must be between {lo} and {hi}"),
        error_messages={"invalid": f"must be a whole number, e.g. {example}"})


def flag() -> mf.Field:
    return mf.Boolean(truthy={"1", "true", "yes", "on"}, falsy={"0", "false", "no", "off"},
                      error_messages={"invalid": "must be 1 or 0"})


def name_field() -> mf.Field:
    return mf.String(validate=validate.Regexp(
        NAME_RE, error="use 1-64 characters of letters, digits, '.', '_' or '-'"))


class Choice(mf.String):
    """One of a few words."""


def choice(*choices: str) -> mf.Field:
    return Choice(validate=validate.OneOf(
        choices, error="must be " + " or ".join(repr(c) for c in choices)))


class Names(mf.Field):
    """A comma-separated list of names (each known name is checked by its user)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kw: Any) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(n.strip() for n in str(value).split(",") if n.strip()))
        if not names:
            raise ValidationError(f"give {self.metadata['kind']} names separated by commas")
        return names

    def _serialize(self, value: Any, attr: Any, obj: Any, **kw: Any) -> str:
        return ",".join(value)


class File(mf.Field):
    """A file that exists and can be read."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kw: Any) -> str:
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise ValidationError("no such file")
        if not os.access(path, os.R_OK):
            raise ValidationError("cannot be read (permissions)")
        return str(path)


class Folder(mf.Field):
    """A folder (created when missing), not a file."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kw: Any) -> Path:
        path = Path(str(value)).expanduser()
        if path.exists() and not path.is_dir():
            raise ValidationError("not a folder")
        return path

    def _serialize(self, value: Any, attr: Any, obj: Any, **kw: Any) -> str:
        return str(value)


class Folders(mf.Field):
    """Folders that exist, separated by ``:`` (``os.pathsep``)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kw: Any) -> tuple[Path, ...]:
        paths = tuple(Path(p).expanduser() for p in str(value).split(os.pathsep) if p.strip())
        for path in paths:
            if not path.is_dir():
                raise ValidationError(f"{path} is not a folder")
        return paths

    def _serialize(self, value: Any, attr: Any, obj: Any, **kw: Any) -> str:
        return os.pathsep.join(str(p) for p in value)


def text() -> mf.Field:
    return mf.String()


@dataclass(frozen=True)
class Setting:
    """One environment variable: how it is read, its default, and what it is for."""

    name: str
    field: mf.Field
    default: Any
    help: str
    shown_default: str | None = None
    """the README's default column, where it is not the default itself"""
    attr: str | None = None
    """the :class:`Settings` field it fills; None: read with others (URLs, secrets)"""
    secret: bool = False
    """never logged, never passed on in clear where a file can carry it"""
    case: Literal["upper", "lower"] | None = "lower"
    """how the text is read: lowercased (flags, choices), uppercased, or as it is (None)"""

    def parse(self, env: Mapping[str, str]) -> Any:
        """The value in ``env`` (blank: the default); :class:`SettingsError` if wrong."""
        raw = env.get(self.name, "")
        raw = raw.rstrip("\r\n") if self.secret else raw.strip()
        if self.case is not None and isinstance(self.field, mf.Boolean | Choice):
            raw = raw.upper() if self.case == "upper" else raw.lower()
        if raw == "":
            return self.default() if callable(self.default) else self.default
        try:
            return self.field.deserialize(raw)
        except ValidationError as exc:
            shown = "***" if self.secret else raw if isinstance(self.field, File) else repr(raw)
            raise SettingsError(f"{self.name}={shown}: {first_message(exc.messages)}") from None

    def dump(self, value: Any) -> str:
        """``value`` as the variable's text (for a child process's environment)."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else "0"
        dumped = self.field._serialize(value, None, None)  # noqa: SLF001
        return str(dumped)


def first_message(messages: Any) -> str:
    while isinstance(messages, list | dict):
        messages = next(iter(messages.values() if isinstance(messages, dict) else messages))
    return str(messages)
