"""The Celery app: one factory, configuration loaded by module name.

Run a worker with ``celery -A tasks.app worker`` (or ``twinctl worker``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from celery import Celery, signals

from common.logs import JsonFormatter, log_format

from .queues import SUPERVISOR_ENV
from .serializer import register_serializer

__all__ = ["make_app", "app"]


def make_app(config: str = "tasks.celeryconfig") -> Celery:
    """A Celery app configured from the module ``config``, with twinctl's tasks."""
    register_serializer()  # before anything (a control reply, a task) is encoded
    application = Celery("twinctl")
    application.config_from_object(config)
    application.conf.include = ["tasks.jobs", "tasks.sweeps"]
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


ORPHAN_GRACE_S = 10.0
"""How long a worker whose supervisor is gone may take to finish (it was sent SIGTERM
with its supervisor's death) before it and its pool are killed."""


def _watch_supervisor(**_: Any) -> None:
    """A worker started by ``twinctl up`` must not outlive it: when its parent is gone
    (SIGKILL, a crash: ``twinctl up`` could not stop it), the worker's warm shutdown
    (SIGTERM, sent by the kernel with the parent's death) gets :data:`ORPHAN_GRACE_S`,
    then the worker and its pool processes (its process group) are killed. A job cut
    off so is run again (``acks_late``), or, real-time, answered lost by the ingress."""
    raw = os.environ.get(SUPERVISOR_ENV, "")
    if not raw.isdigit():
        return
    supervisor = int(raw)

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(0.5)
        logging.getLogger("twinctl.worker").error(
            "the supervisor (pid %d, twinctl up) is gone: stopping; killed in %g s if not "
            "stopped by then", supervisor, ORPHAN_GRACE_S)
        time.sleep(ORPHAN_GRACE_S)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _read_units(**_: Any) -> None:
    """The units library read once in the worker's main process, before it forks its
    pool (~0.35 s), so that no job's first check waits for it."""
    from modellib import units

    units.dimension("m3/s")


signals.worker_init.connect(_watch_supervisor, weak=False)
def _load_plugins(**_: Any) -> None:
    """The operator's models (TWIN_MODEL_PATH, entry points of TWIN_PLUGINS) loaded in
    the worker's main process, before it forks its pool: every job runs on them."""
    from common.settings import load_settings
    from modellib.plugins import load_plugins, model_set_digest

    s = load_settings()
    loaded = load_plugins(model_path=s.model_path, allow=s.plugins)
    log = logging.getLogger("twinctl.worker")
    for skipped in loaded.skipped:
        log.error("plugin skipped: %s: %s", skipped.where, skipped.why)
    if loaded.models or loaded.functions:
        log.warning("plugins loaded: %s (model set %s)",
                    ", ".join(f"{n} ({src})" for n, src in {**loaded.models,
                                                             **loaded.functions}.items()),
                    model_set_digest())


signals.worker_init.connect(_read_units, weak=False)
signals.worker_init.connect(_load_plugins, weak=False)
signals.after_setup_logger.connect(_json_logs, weak=False)
signals.after_setup_task_logger.connect(_json_logs, weak=False)

app = make_app()
