"""``twinctl``: run the controller's parts, and talk to a controller.

    twinctl up [--workers N] [--flower]   ingress + N worker processes (+ Flower)
    twinctl ingress                       the MQTT ingress alone
    twinctl worker [--concurrency N]      one Celery worker alone
    twinctl send FILE|-                   send a command, print its replies
    twinctl demo                          start the stack, run a scenario, stop

Settings come from ``TWIN_*`` environment variables (see :mod:`twinctl.settings`);
a wrong one stops the command with one clear line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .settings import Settings, SettingsError, load_settings

__all__ = ["main"]

EXAMPLE = Path(__file__).resolve().parent / "examples" / "pump_line_tank.json"


def _setup_logging(verbose: bool = False) -> None:
    level = os.environ.get("TWIN_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def cmd_ingress(args: argparse.Namespace, settings: Settings) -> int:
    from ingress.service import Ingress

    _setup_logging(args.verbose)
    ingress = Ingress(settings)
    ingress.start()
    _wait_for_signal()
    ingress.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    queues = args.queues or "twin.short,twin.long"
    argv = [sys.executable, "-m", "celery", "-A", "tasks.app", "worker",
            "--loglevel", os.environ.get("TWIN_LOG_LEVEL", "INFO"),
            "--queues", queues, "--pool", args.pool, "--concurrency", str(args.concurrency),
            "--hostname", f"twin-{settings.controller_id}-{os.getpid()}@{socket.gethostname()}",
            "--without-mingle", "--without-gossip"]
    os.environ.update(settings.to_env())
    os.execv(sys.executable, argv)  # the Celery worker takes over this process


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from .stack import Stack, StackError

    stack = Stack(env=dict(os.environ), workers=args.workers, flower=args.flower,
                  flower_port=args.flower_port, pool=args.pool)
    try:
        stack.start()
        stack.wait_ready(timeout=args.ready_timeout)
        print("twinctl: ready; Ctrl-C stops", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            bad = stack.failed()
            if bad:
                print(f"twinctl: the {bad} stopped; stopping the rest", file=sys.stderr)
                return 1
        return 0
    except StackError as exc:
        print(f"twinctl: {exc}", file=sys.stderr)
        return 1
    finally:
        print("twinctl: stopping", flush=True)
        stack.stop()


def _print_reply(reply: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply), flush=True)
        return
    kind = reply.get("type")
    if kind == "error":
        where = f" at {reply['path']}" if reply.get("path") else ""
        print(f"error {reply.get('code')}{where}: {reply.get('message')}", flush=True)
    else:
        print(json.dumps(reply, indent=2), flush=True)


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from .client import send_command

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `twinctl send … | head` ends quietly

    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        command = json.loads(text)
    except OSError as exc:
        print(f"twinctl send: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"twinctl send: {args.file} is not JSON: {exc}", file=sys.stderr)
        return 1
    if not isinstance(command, dict):
        print("twinctl send: the command must be a JSON object", file=sys.stderr)
        return 1
    exchange = send_command(settings, command, timeout=args.timeout,
                            on_reply=lambda r: _print_reply(r, args.json))
    final = exchange.final
    if final is None:
        print(f"twinctl send: no final reply within {args.timeout:g} s", file=sys.stderr)
        return 2
    return 1 if final.get("type") == "error" else 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .client import send_command
    from .stack import Stack, StackError

    logs = Path(tempfile.mkdtemp(prefix="twinctl-demo-"))
    stack = Stack(env=dict(os.environ), workers=args.workers, quiet=True, log_dir=logs)
    try:
        stack.start()
        print(f"twinctl demo: starting the ingress and {args.workers} worker process(es) "
              f"(logs in {logs})", flush=True)
        stack.wait_ready(timeout=120)
        command = json.loads(EXAMPLE.read_text("utf-8"))
        print(f"twinctl demo: sending {EXAMPLE.name} to {stack.settings.cmd_topic}", flush=True)
        exchange = send_command(stack.settings, command, timeout=60,
                                on_reply=lambda r: _print_reply(r, False))
        final = exchange.final
        if final is None:
            print("twinctl demo: no result within 60 s", file=sys.stderr)
            return 2
        return 1 if final.get("type") == "error" else 0
    except StackError as exc:
        print(f"twinctl demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def cmd_docs(args: argparse.Namespace, settings: Settings) -> int:
    from modellib.docs import library_markdown

    Path(args.out).write_text(library_markdown(), encoding="utf-8")
    print(f"twinctl docs: wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run ingress and workers (and Flower) until Ctrl-C")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument("--flower", action="store_true", help="also run Flower")
    up.add_argument("--flower-port", type=int, default=5555)
    up.add_argument("--pool", default="prefork", choices=("prefork", "solo", "threads"))
    up.add_argument("--ready-timeout", type=float, default=120.0)
    up.set_defaults(func=cmd_up)

    sub.add_parser("ingress", help="run the MQTT ingress").set_defaults(func=cmd_ingress)

    worker = sub.add_parser("worker", help="run one Celery worker")
    worker.add_argument("--concurrency", "-c", type=int, default=2)
    worker.add_argument("--pool", default="prefork", choices=("prefork", "solo", "threads"))
    worker.add_argument("--queues", "-Q", default=None,
                        help="comma-separated queues (default twin.short,twin.long)")
    worker.set_defaults(func=cmd_worker)

    send = sub.add_parser("send", help="send a command and print its replies")
    send.add_argument("file", help="a JSON command file, or - for standard input")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    send.add_argument("--json", action="store_true", help="print each reply as one JSON line")
    send.set_defaults(func=cmd_send)

    docs = sub.add_parser("docs", help="write the model and function library reference")
    docs.add_argument("--out", default="docs/models.md")
    docs.set_defaults(func=cmd_docs)

    demo = sub.add_parser("demo", help="start the stack, run an example scenario, stop")
    demo.add_argument("--workers", type=int, default=2)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("workers", "concurrency"):
        if getattr(args, name, 1) < 1:
            print(f"twinctl: --{name} must be at least 1", file=sys.stderr)
            return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"twinctl: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(args, settings)
    return result
