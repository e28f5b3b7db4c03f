"""The reply envelope and strict JSON encoding of replies (PROTOCOL.md, "Reply envelope").

Every message is strict JSON (RFC 8259): a non-finite number becomes ``null``
and its place is named in the reply's ``warnings``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = ["timestamp", "envelope_parts", "encode_json", "FINAL_TYPES"]

FINAL_TYPES = frozenset({"result", "error", "pong", "description"})
"""Reply types after which no more replies come for a request."""


def timestamp() -> str:
    """Now, as ISO 8601 UTC with milliseconds: ``2026-11-29T14:00:00.123Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _clean(value: Any, path: str, warnings: list[str]) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        warnings.append(f"{path} was {float(value)!r}, sent as null")
        return None
    if isinstance(value, dict):
        return {k: _clean(v, f"{path}.{k}" if path else str(k), warnings)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, f"{path}[{i}]", warnings) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            bad = ~np.isfinite(value)
            if not bad.any():
                return value.tolist()  # the common case: no per-number Python work
            first = int(np.flatnonzero(bad.ravel())[0])
            warnings.append(f"{path} had {int(bad.sum())} non-finite value(s) (the first "
                            f"at index {first}), sent as null")
            return [None if b else v for v, b in zip(value.ravel().tolist(),
                                                      bad.ravel().tolist(), strict=True)]
        return _clean(value.tolist(), path, warnings)
    if isinstance(value, np.generic):
        return _clean(value.item(), path, warnings)
    return value


def encode_json(fields: dict[str, Any]) -> str:
    """``fields`` as strict compact JSON, non-finite numbers replaced by null and named."""
    warnings: list[str] = list(fields.get("warnings", []))
    clean = _clean({k: v for k, v in fields.items() if k != "warnings"}, "", warnings)
    if warnings:
        clean["warnings"] = warnings
    text = json.dumps(clean, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: only an escape can carry it
            text = json.dumps(clean, separators=(",", ":"), allow_nan=False)
    return text


def envelope_parts(
    request_id: str, controller: str, rtype: str, fields: dict[str, Any]
) -> tuple[str, str]:
    """The reply as (head, tail): the message is ``head + str(seq) + tail``.

    ``seq`` is allocated where the reply is stored (the outbox), so it is spliced
    in there; ``id`` and ``controller`` are restricted to characters that need no
    JSON escaping, but are encoded properly all the same.
    """
    head = (
        '{"id":' + json.dumps(request_id) + ',"controller":' + json.dumps(controller)
        + ',"type":' + json.dumps(rtype) + ',"seq":'
    )
    body = encode_json(fields)
    tail = ',"ts":"' + timestamp() + '"' + ("," + body[1:] if body != "{}" else "}")
    return head, tail
