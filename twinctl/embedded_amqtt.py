"""The amqtt broker's child process: ``python -m twinctl.embedded amqtt PORT [HOST]``.

:func:`twinctl.embedded_mqtt.start_mqtt` runs this file as ``__main__`` in a child
Python process when there is no ``mosquitto``. The file imports nothing of twinctl
(only the standard library, and amqtt when it serves), so it runs as a plain script
without the project on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["HOST", "amqtt_config", "main"]

HOST = "127.0.0.1"
"""The address to bind by default: :data:`twinctl.embedded_service.HOST` (this file
imports nothing of twinctl; a test checks the two agree)."""


def amqtt_config(port: int, host: str = HOST) -> dict[str, Any]:
    """Return an amqtt 0.12 ``BrokerConfig`` dict: one TCP listener, anonymous allowed.

    amqtt >= 0.11 configures plugins by dotted class path in ``plugins``;
    the older ``auth:``/``topic-check:`` sections are deprecated.  The
    ``$SYS`` and packet-logging plugins are left out on purpose.
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def _serve_amqtt(port: int, host: str) -> None:
    from amqtt.broker import Broker

    broker = Broker(amqtt_config(port, host))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"amqtt broker listening on {host}:{port}", flush=True)
    await stop.wait()
    try:
        await asyncio.wait_for(broker.shutdown(), timeout=3.0)
    except Exception as exc:
        print(f"amqtt shutdown: {exc!r}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Child-process entry point: ``python -m twinctl.embedded amqtt PORT [HOST]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3) or args[0] != "amqtt" or not args[1].isdigit():
        print("usage: python -m twinctl.embedded amqtt PORT [HOST]", file=sys.stderr)
        return 2
    port = int(args[1])
    host = args[2] if len(args) == 3 else HOST
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_serve_amqtt(port, host))
    except Exception as exc:
        print(f"amqtt broker failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
