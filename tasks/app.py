"""The Celery app: one factory, configuration loaded by module name.

Run a worker with ``celery -A tasks.app worker`` (or ``twinctl worker``).
"""

from __future__ import annotations

from celery import Celery

__all__ = ["make_app", "app"]


def make_app(config: str = "tasks.celeryconfig") -> Celery:
    """A Celery app configured from the module ``config``, with twinctl's tasks."""
    application = Celery("twinctl")
    application.config_from_object(config)
    application.conf.include = ["tasks.jobs"]
    return application


app = make_app()
