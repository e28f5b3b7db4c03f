"""Celery configuration, loaded by module name (``app.config_from_object``).

JSON only; ``acks_late`` with ``reject_on_worker_lost`` so a job whose worker
dies is run again, and a Redis ``visibility_timeout`` longer than the hard
time limit so a long job is never handed to a second worker while it runs.

Redis as the settings say (:func:`common.settings.load_settings`): a password from
``TWIN_REDIS_PASSWORD_FILE`` goes into the URL (Celery prints URLs with ``**`` for it),
and ``rediss://`` gets ``broker_use_ssl`` and ``redis_backend_use_ssl`` (the
certificate and host name checked, ``TWIN_REDIS_CA_FILE``).
"""

from __future__ import annotations

from kombu import Queue

from common.settings import SettingsError, load_settings

from .queues import ALL, HARD_MARGIN_S, SHORT
from .serializer import CONTENT_TYPE, register_serializer

try:
    _settings = load_settings()
except SettingsError as exc:  # `twinctl worker` says it before; `celery -A tasks.app …` here
    raise SystemExit(f"twinctl: {exc}") from None

broker_url = _settings.redis_url
result_backend = _settings.redis_url
if _settings.redis_ssl:
    broker_use_ssl = _settings.redis_ssl
    redis_backend_use_ssl = _settings.redis_ssl
register_serializer()
task_serializer = "json"  # control messages; the job tasks use NAME (tasks/serializer.py)
result_serializer = "json"
accept_content = ["json", CONTENT_TYPE]  # (by type: known whatever the import order)
result_accept_content = ["json"]
task_ignore_result = True  # replies travel through the outbox, not the result backend

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_soft_time_limit = _settings.soft_time_limit
task_time_limit = task_soft_time_limit + HARD_MARGIN_S
broker_transport_options = {
    # above the hard time limit: a running job is never re-delivered to a second worker
    "visibility_timeout": task_time_limit * 2 + 60,
    "socket_keepalive": True,
    # A Redis that vanishes without closing the connection (a host cut off the
    # network, a failover) must not hold a worker in one socket read: kombu's docs say
    # to set a socket timeout then (its BRPOP waits 1 s, far below it), and its
    # health check drops a stale BRPOP connection after 1 + 10 s.
    "socket_timeout": 10.0,
    "socket_connect_timeout": 10.0,
    "health_check_interval": 10,
}
broker_connection_retry_on_startup = True

task_default_queue = SHORT
task_queues = tuple(Queue(name) for name in ALL)

# Flower and `celery events` see every task
worker_send_task_events = True
task_send_sent_event = False  # saves ~0.5 ms a job; Flower sees tasks from "received" on
worker_hijack_root_logger = False
