"""Celery side of twinctl: the app and its configuration, the queues, the tasks, the job
board and the Redis outbox that holds every reply (the publisher that drains it to MQTT
runs in the ingress: :mod:`ingress.publisher`).

Importing this package does not create the Celery app; import :mod:`tasks.app`
(workers) or :mod:`tasks.jobs` (to send tasks) for that.
"""

from .outbox import Outbox, Stored, outbox_stream
from .replies import FINAL_TYPES, encode_json, envelope_parts, timestamp

__all__ = ["Outbox", "Stored", "outbox_stream", "FINAL_TYPES", "encode_json",
           "envelope_parts", "timestamp"]
