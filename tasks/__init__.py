"""Celery side of twinctl: the app and its configuration, the tasks, the outbox and
the publisher that drains it to MQTT.

Importing this package does not create the Celery app; import :mod:`tasks.app`
(workers) or :mod:`tasks.jobs` (to send tasks) for that.
"""

from .outbox import Outbox, Stored, outbox_stream
from .replies import FINAL_TYPES, encode_json, envelope_parts, timestamp

__all__ = ["Outbox", "Stored", "outbox_stream", "FINAL_TYPES", "encode_json",
           "envelope_parts", "timestamp"]
