"""The task messages' serializer: JSON, encoded with orjson, decoded with the standard
library.

A run's message carries its whole scenario (a long input series: a 0.4 MB message);
the standard ``json`` encoder takes ~9 ms for it, in one C call that holds the
interpreter lock of the ingress, where every other command waits; orjson takes
~1 ms. What it cannot encode (an integer beyond 64 bits) falls back to kombu's
own JSON encoder. Decoding stays with the standard library (orjson turns such an
integer into a float), so a worker reads exactly what was checked. The format on
the wire is plain JSON under its own content type, so only JSON is accepted, as
before (``accept_content``), never pickle.
"""

from __future__ import annotations

from typing import Any

import orjson
from kombu.serialization import register
from kombu.utils.json import dumps as kombu_dumps
from kombu.utils.json import loads as kombu_loads

__all__ = ["NAME", "CONTENT_TYPE", "dumps", "loads", "register_serializer"]

NAME = "twinjson"
CONTENT_TYPE = "application/x-twinctl+json"


def dumps(obj: Any) -> str:
    """JSON text of a task message (orjson; kombu's encoder for what orjson refuses)."""
    try:
        return orjson.dumps(obj).decode("utf-8")
    except TypeError:
        return kombu_dumps(obj)


def loads(data: str | bytes) -> Any:
    return kombu_loads(data)


def register_serializer() -> None:
    """Make :data:`NAME` known to kombu (idempotent): the app does it at import."""
    register(NAME, dumps, loads, content_type=CONTENT_TYPE, content_encoding="utf-8")
