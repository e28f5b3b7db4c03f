"""The Celery app: one factory, configuration loaded by module name.

Run a worker with ``celery -A tasks.app worker`` (or ``twinctl worker``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from common.logs import JsonFormatter, log_format

from .serializer import register_serializer

__all__ = ["make_app", "app"]


def make_app(config: str = "tasks.celeryconfig") -> Celery:
    """A Celery app configured from the module ``config``, with twinctl's tasks."""
    register_serializer()  # before anything (a control reply, a task) is encoded
    application = Celery("twinctl")
    application.config_from_object(config)
    application.conf.include = ["tasks.jobs"]
    return application


def _json_logs(logger: logging.Logger, **_: Any) -> None:
    """``TWIN_LOG_FORMAT=json``: the worker's log lines as JSON objects, like the ingress's."""
    try:
        json_wanted = log_format() == "json"
    except ValueError:
        json_wanted = False  # the CLI refuses a bad value before a worker starts
    if json_wanted:
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())


signals.after_setup_logger.connect(_json_logs, weak=False)
signals.after_setup_task_logger.connect(_json_logs, weak=False)

app = make_app()
