"""Log output for people or for log collectors: ``TWIN_LOG_FORMAT=text|json``.

``text`` (the default) is one readable line per record. ``json`` makes every
record one JSON object on one line — ``ts`` (ISO 8601 UTC with milliseconds),
``level``, ``logger``, ``message``, then every field passed with
``extra={...}`` (the ingress logs ``request_id``, ``cmd``, ``outcome`` and
``duration_ms`` per command that way), and ``exception`` with the traceback
when there is one — so Loki, Elasticsearch or ``jq`` can read the fields
without parsing text.

Any process can use it: :func:`configure` for a plain Python program; a Celery
worker can put :class:`JsonFormatter` on its handlers from Celery's
``after_setup_logger`` / ``after_setup_task_logger`` signals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .settings import read

__all__ = ["JsonFormatter", "TEXT_FORMAT", "configure", "log_format", "make_formatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_format(env: Mapping[str, str] | None = None) -> str:
    """``TWIN_LOG_FORMAT``, checked: ``text`` or ``json``; ``ValueError`` (one line) otherwise."""
    value: str = read("TWIN_LOG_FORMAT", env)
    return value


def make_formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str | int = "INFO", fmt: str | None = None) -> None:
    """Set up the root logger: one stderr handler with the text or JSON formatter."""
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(fmt or log_format()))
    logging.basicConfig(level=level, handlers=[handler])
