"""The instance library: design data of equipment, one JSON file per instance.

A file ``P-101.json`` holds ``{"id": "P-101", "model": "CentrifugalPump",
"params": {...}, "description": "...", "tags": [...]}``; it is checked against
the model's parameter schema when loaded, and a bad file is named with the field
and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modellib import get_model
from modellib.errors import CodedError

from .errors import InvalidInstance, UnknownInstance

__all__ = ["Instance", "InstanceLibrary", "SHIPPED_INSTANCES"]

SHIPPED_INSTANCES = Path(__file__).resolve().parent / "default"
"""The instance set shipped with twinctl (a small plant); it seeds a new folder."""

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
"""An instance id: it names its file, so it starts with a letter or digit (a leading
'.' would make a hidden file that a restart does not read)."""


@dataclass(frozen=True)
class Instance:
    id: str
    model: str
    params: dict[str, Any]
    description: str = ""
    tags: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "params": dict(self.params),
                "description": self.description, "tags": list(self.tags)}


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(target: Path, body: bytes) -> None:
    """Write ``body`` to ``target`` so that a crash leaves the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


def _instance_from(data: Any, where: str) -> Instance:
    if not isinstance(data, dict):
        raise InvalidInstance(f"{where} must be a JSON object", path=where)
    unknown = set(data) - {"id", "model", "params", "description", "tags"}
    if unknown:
        raise InvalidInstance(f"{where}: unknown field {sorted(unknown)[0]!r}", path=where)
    iid = data.get("id")
    if not isinstance(iid, str) or not ID_RE.match(iid):
        raise InvalidInstance(
            f"{where}.id must be 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit", path=f"{where}.id"
        )
    if not isinstance(data.get("model"), str):
        raise InvalidInstance(f"{where}.model must be the name of a model of the library, "
                              "e.g. \"CentrifugalPump\"", path=f"{where}.model")
    model = get_model(data.get("model"), path=f"{where}.model")
    params = data.get("params", {})
    model.load_params(params, path=f"{where}.params")  # raises with the field named
    description = data.get("description", "")
    tags = data.get("tags", [])
    if not isinstance(description, str):
        raise InvalidInstance(f"{where}.description must be a string", path=f"{where}.description")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidInstance(f"{where}.tags must be a list of strings", path=f"{where}.tags")
    return Instance(iid, model.name, dict(params), description, list(tags))


class InstanceLibrary:
    """The instances of one controller, kept as one JSON file each in a folder.

    :meth:`put` and :meth:`delete` change the folder atomically: a new file is
    written beside the old one, flushed to disk and renamed over it, so a crash
    leaves either the old or the new file, never half of one.
    """

    def __init__(self, folder: Path, *, seed: Path | None = None) -> None:
        """Load ``folder``; if it does not exist yet, create it with a copy of ``seed``."""
        self.folder = Path(folder)
        if not self.folder.exists() and seed is not None:
            self.folder.mkdir(parents=True)
            for source in sorted(Path(seed).glob("*.json")):
                _write_atomically(self.folder / source.name, source.read_bytes())
        self._items: dict[str, Instance] = {}
        self._files: dict[str, Path] = {}
        self._lock = threading.Lock()
        """serializes changes; readers use the dictionaries, which are replaced, never
        changed in place (copy on write), so a reader in another thread sees one whole
        version"""
        self.reload()

    def reload(self) -> None:
        items: dict[str, Instance] = {}
        files: dict[str, Path] = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                inst = _instance_from(data, "instance")
            except json.JSONDecodeError as exc:
                raise InvalidInstance(f"instance file {path}: not valid JSON ({exc})") from None
            except CodedError as exc:
                raise InvalidInstance(f"instance file {path}: {exc.message}",
                                      path=exc.path) from None
            if inst.id in items:
                raise InvalidInstance(f"instance file {path}: id {inst.id!r} is used twice")
            items[inst.id] = inst
            files[inst.id] = path
        self._items, self._files = items, files

    def check(self, data: Any, *, path: str = "instance") -> Instance:
        """Check an instance object against its model's parameter schema; store nothing."""
        return _instance_from(data, path)

    def put(self, data: Any, *, path: str = "instance") -> tuple[Instance, bool]:
        """Check and store an instance (new or replacing one); return it and whether it is new."""
        inst = _instance_from(data, path)
        with self._lock:
            target = self._files.get(inst.id, self.folder / f"{inst.id}.json")
            body = json.dumps(inst.describe(), indent=2, ensure_ascii=False) + "\n"
            _write_atomically(target, body.encode("utf-8"))
            created = inst.id not in self._items
            self._files = {**self._files, inst.id: target}
            self._items = {**self._items, inst.id: inst}
        return inst, created

    def delete(self, iid: str, *, path: str = "instance_id") -> Instance:
        """Remove an instance and its file."""
        with self._lock:
            inst = self.get(iid, path=path)
            target = self._files[iid]
            target.unlink(missing_ok=True)
            _sync_folder(target.parent)
            self._items = {k: v for k, v in self._items.items() if k != iid}
            self._files = {k: v for k, v in self._files.items() if k != iid}
        return inst

    def __contains__(self, iid: object) -> bool:
        return iid in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, iid: str, *, path: str | None = None) -> Instance:
        items = self._items
        if iid not in items:
            raise UnknownInstance(iid, items, path=path)
        return items[iid]

    def describe(self) -> dict[str, dict[str, Any]]:
        return {iid: inst.describe() for iid, inst in sorted(self._items.items())}

    def resolve(self, scenario: Any, *, path: str = "scenario") -> Any:
        """A copy of ``scenario`` whose elements carry full parameters.

        An element's ``instance`` supplies the design data; its own ``params``
        override or complete them. Anything that is not a well-formed element is
        left as it is for the scenario checks to report.
        """
        if not isinstance(scenario, dict) or not isinstance(scenario.get("elements"), dict):
            return scenario
        # only the elements with an instance change (their model and params, replaced
        # with new values): a copy of those, not of the whole scenario (whose input
        # series may have a million points)
        out = {**scenario, "elements": dict(scenario["elements"])}
        for name, el in out["elements"].items():
            if not isinstance(el, dict) or "instance" not in el:
                continue
            el = out["elements"][name] = dict(el)
            where = f"{path}.elements.{name}.instance"
            iid = el["instance"]
            if not isinstance(iid, str):
                raise InvalidInstance(f"{where} must be a string", path=where)
            inst = self.get(iid, path=where)
            if "model" in el and el["model"] != inst.model and isinstance(el["model"], str):
                get_model(el["model"], path=f"{path}.elements.{name}.model")
                raise InvalidInstance(
                    f"{where}: instance {iid!r} is a {inst.model}, not a {el['model']}",
                    path=where,
                )
            el.setdefault("model", inst.model)
            own = el.get("params", {})
            if isinstance(own, dict):
                el["params"] = {**inst.params, **own}
        return out
