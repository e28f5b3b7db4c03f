"""``twinctl``: run the controller's parts, and talk to a controller.

    twinctl up [--workers N] [--flower]   ingress + N batch worker processes, a real-time
                                          worker (+ Flower)
    twinctl ingress                       the MQTT ingress alone
    twinctl worker [--concurrency N]      one Celery worker alone
    twinctl send FILE|- [--plot F] [--csv F]   send a command, print its replies (a sweep:
                                               its table; --plot-x/--plot-y choose the plot)
    twinctl describe                      the controller's model library as tables
    twinctl status                        the controllers online/offline, their queues
    twinctl alarms                        the controller's live alarms (--json)
    twinctl check-model TARGET            check a model (module:Class or a .py file)
    twinctl new-model NAME                write a model file to start from
    twinctl demo                          start the stack, run a scenario, stop

Settings come from ``TWIN_*`` environment variables (see :mod:`common.settings`);
a wrong one stops the command with one clear line. ``send``, ``describe`` and
``status`` take ``--json`` for scripts; ``TWIN_LOG_FORMAT=json`` makes the
ingress's log lines JSON objects (:mod:`common.logs`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from common.settings import Settings, SettingsError, load_settings, read

__all__ = ["main"]

EXAMPLE = Path(__file__).resolve().parent / "examples" / "pump_line_tank.json"


def _setup_logging(verbose: bool = False) -> None:
    """Root logging: ``TWIN_LOG_LEVEL`` (INFO; DEBUG with ``-v``), ``TWIN_LOG_FORMAT``
    ``text`` (default) or ``json`` (one JSON object per line, see :mod:`common.logs`)."""
    from common.logs import configure, log_format

    try:
        level, fmt = "DEBUG" if verbose else read("TWIN_LOG_LEVEL"), log_format()
    except ValueError as exc:
        raise SystemExit(f"twinctl: {exc}") from None
    configure(level, fmt)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def cmd_ingress(args: argparse.Namespace, settings: Settings) -> int:
    from ingress.service import Ingress

    _setup_logging(args.verbose)
    # The handler threads share the interpreter: a thread that waits for the lock gets
    # it after 1 ms instead of 5 (a ping beside the check of a 1 MB run), and what
    # is loaded at start-up is left out of the garbage collector's full passes.
    sys.setswitchinterval(0.001)
    ingress = Ingress(settings)
    gc.freeze()
    ingress.start()
    _wait_for_signal()
    ingress.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.queues import BATCH

    queues = args.queues or ",".join(BATCH)
    if args.nice:
        os.nice(args.nice)  # batch work yields the CPU to real-time workers
    argv = [sys.executable, "-m", "celery", "-A", "tasks.app", "worker",
            "--loglevel", settings.log_level,
            "--queues", queues, "--pool", args.pool, "--concurrency", str(args.concurrency),
            "--hostname", f"twin-{settings.controller_id}-{os.getpid()}@{socket.gethostname()}",
            "--without-mingle", "--without-gossip"]
    os.environ.update(settings.to_env())
    os.execv(sys.executable, argv)  # the Celery worker takes over this process


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from .stack import Stack, StackError

    stack = Stack(env=dict(os.environ), workers=args.workers, flower=args.flower, short=args.short,
                  flower_port=args.flower_port, pool=args.pool, realtime=args.realtime)
    try:
        stack.start()
        stack.wait_ready(timeout=args.ready_timeout)
        print("twinctl: ready; Ctrl-C stops", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            for line in stack.supervise():  # a part that died is restarted, with backoff
                print(line, file=sys.stderr, flush=True)
        return 0
    except StackError as exc:
        print(f"twinctl: {exc}", file=sys.stderr)
        return 1
    finally:
        print("twinctl: stopping", flush=True)
        stack.stop()


def _print_reply(reply: dict[str, Any], as_json: bool,
                 seen: list[dict[str, Any]] | None = None) -> None:
    """One reply: a JSON line, or readable (a run's result as a table when ``seen``, the
    replies so far, is given; an error as one line on stderr)."""
    if as_json:
        print(json.dumps(reply), flush=True)
        return
    from . import display, runs

    if seen is not None:
        seen.append(reply)
    series = runs.collect_series(seen) if seen and reply.get("type") == "result" else None
    display.print_reply(reply, display.make_console(), series=series,
                        units=runs.result_units(reply), err=display.make_console(stderr=True))


def _read_command(source: str) -> dict[str, Any] | str:
    """The command in ``source`` (a file or ``-``), or a one-line complaint."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
        command = json.loads(text)
    except OSError as exc:
        return f"cannot read {source}: {exc.strerror}"
    except ValueError as exc:
        return f"{source} is not JSON: {exc}"
    if not isinstance(command, dict):
        return "the command must be a JSON object"
    return command


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    """Send a command; print its replies; exit 0 on a result, 1 on an error, 2 on a
    timeout (no reply for ``--timeout`` seconds: each reply restarts it)."""
    import uuid

    from . import display, runs, sweeptable

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `twinctl send … | head` ends quietly
    command = _read_command(args.file)
    if isinstance(command, str):
        print(f"twinctl send: {command}", file=sys.stderr)
        return 1
    if args.id:
        command["id"] = args.id
    command.setdefault("id", f"cli-{uuid.uuid4().hex[:12]}")
    if sweeptable.is_sweep(command):
        return _send_sweep(args, settings, command)
    span = runs.run_span(command)
    if args.plot and span.mode == "static":
        print("twinctl send: --plot draws a time series, and a static run gives one value "
              "per output: use --csv for them", file=sys.stderr)
        return 1
    units = runs.output_units(command)
    out, err = display.make_console(), display.make_console(stderr=True)
    progress = None
    if span.timed and not args.json and sys.stderr.isatty():
        progress = display.RunProgress(span, err)
    seen: list[dict[str, Any]] = []

    def show(reply: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(reply), flush=True)
            return
        series = None
        if reply.get("type") == "result" and span.mode is not None:
            series = runs.collect_series(seen)
        shown = {**units, **runs.result_units(reply)}
        display.print_reply(reply, out, series=series, units=shown, err=err)

    def on_reply(reply: dict[str, Any]) -> None:
        if reply.get("type") == "alarm" and progress is not None and not args.json:
            progress.progress.console.print(display.alarm_line(reply))  # live, above the bar
            return
        seen.append(reply)
        if progress is not None:
            progress.update(reply)  # the replies are printed when the bar is done
        else:
            show(reply)

    exchange = _exchange(settings, command, args.timeout, on_reply, progress)
    if isinstance(exchange, int):
        return exchange
    if progress is not None:  # the bar showed the data; now the other replies
        for reply in seen:
            if reply.get("type") != "data":
                show(reply)
    final = exchange.final
    if final is None:
        after = f" after the last of {len(seen)} replies" if seen else ""
        print(f"twinctl send: no final reply within {args.timeout:g} s{after}",
              file=sys.stderr)
        return 2
    if final.get("type") == "error":
        return 1
    if args.csv or args.plot:
        return _write_series(args, runs.collect_series(exchange.replies), command,
                             {**units, **runs.result_units(final)})
    return 0


def _exchange(settings: Settings, command: dict[str, Any], timeout: float,
              on_reply: Any, progress: Any) -> Any:
    """Send ``command`` and gather its replies (``progress`` shown meanwhile): the
    exchange, or the exit code when the broker could not be reached or it was
    interrupted."""
    import contextlib

    from ingress.mqttconn import MqttError

    from .client import send_command

    try:
        with progress or contextlib.nullcontext():
            return send_command(settings, command, timeout=timeout, on_reply=on_reply)
    except MqttError as exc:
        print(f"twinctl send: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("twinctl send: interrupted", file=sys.stderr)
        return 130


def _send_sweep(args: argparse.Namespace, settings: Settings, command: dict[str, Any]) -> int:
    """``twinctl send`` of a sweep: a bar of cases, the table, ``--csv`` and ``--plot``
    (a collected value against a swept path)."""
    from . import display, sweeptable

    out, err = display.make_console(), display.make_console(stderr=True)
    progress = None
    if not args.json and sys.stderr.isatty():
        progress = display.SweepProgress(sweeptable.sweep_size(command), err)

    def show(reply: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(reply), flush=True)
        elif not (progress is not None and reply.get("type") == "data"):
            display.print_reply(reply, out, err=err)

    def on_reply(reply: dict[str, Any]) -> None:
        if progress is not None:
            progress.update(reply)
        else:
            show(reply)

    exchange = _exchange(settings, command, args.timeout, on_reply, progress)
    if isinstance(exchange, int):
        return exchange
    if progress is not None:
        for reply in exchange.replies:
            show(reply)
    final = exchange.final
    if final is None:
        print(f"twinctl send: no final reply within {args.timeout:g} s", file=sys.stderr)
        return 2
    if final.get("type") == "error":
        return 1
    table = sweeptable.collect_table(exchange.replies, command)
    if table is None or not (args.csv or args.plot):
        return 0
    units = {str(k): str(v) for k, v in (final.get("units") or {}).items()}
    try:
        if args.csv:
            rows = sweeptable.write_table_csv(args.csv, table, units)
            if not args.json:
                print(f"twinctl send: wrote {rows} case(s) to {args.csv}", file=sys.stderr)
        if args.plot:
            x, y = sweeptable.plot_table(args.plot, table, title=str(command["id"]),
                                         x=args.plot_x, y=args.plot_y, units=units)
            if not args.json:
                print(f"twinctl send: plotted {y} against {x} to {args.plot}",
                      file=sys.stderr)
    except sweeptable.PlotChoiceError as exc:
        print(f"twinctl send: --plot: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"twinctl send: cannot write {args.csv or args.plot}: {exc}", file=sys.stderr)
        return 1
    return 0


def _write_series(args: argparse.Namespace, series: Any, command: dict[str, Any],
                  units: dict[str, str]) -> int:
    from . import runs

    if series is None:
        print("twinctl send: the final reply has no values to write (only a run's result "
              "has them)", file=sys.stderr)
        return 1
    if args.csv:
        try:
            rows = runs.write_csv(args.csv, series, units)
        except OSError as exc:
            print(f"twinctl send: cannot write {args.csv}: {exc.strerror}", file=sys.stderr)
            return 1
        if not args.json:
            print(f"twinctl send: wrote {rows} row(s) to {args.csv}", file=sys.stderr)
    if args.plot:
        try:
            runs.plot_series(args.plot, series, title=str(command["id"]), units=units)
        except runs.StaticPlotError as exc:
            print(f"twinctl send: --plot: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"twinctl send: cannot write {args.plot}: {exc}", file=sys.stderr)
            return 1
        if not args.json:
            print(f"twinctl send: plotted {len(series.values)} output(s) to {args.plot}",
                  file=sys.stderr)
    return 0


def _ask(settings: Settings, cmd: str, timeout: float) -> dict[str, Any] | int:
    """Send the command ``cmd`` (no fields) and return its final reply, or the exit code
    after saying why there is none (2: no broker or no reply; 1: an error reply)."""
    from ingress.mqttconn import MqttError

    from . import display
    from .client import send_command

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        exchange = send_command(settings, {"cmd": cmd}, timeout=timeout)
    except MqttError as exc:
        print(f"twinctl {cmd}: {exc}", file=sys.stderr)
        return 2
    final = exchange.final
    if final is None:
        print(f"twinctl {cmd}: no reply from {settings.controller_id} within {timeout:g} s",
              file=sys.stderr)
        return 2
    if final.get("type") == "error":
        print(display.error_line(final), file=sys.stderr)
        return 1
    return final


def cmd_describe(args: argparse.Namespace, settings: Settings) -> int:
    """Ask the controller to ``describe`` itself; print its libraries as tables."""
    from . import display

    final = _ask(settings, "describe", args.timeout)
    if isinstance(final, int):
        return final
    if args.json:
        print(json.dumps(final), flush=True)
    else:
        display.print_description(final, display.make_console())
    return 0


def cmd_alarms(args: argparse.Namespace, settings: Settings) -> int:
    """The controller's live alarms (``alarms``) as a table; exits 0 (none is not an
    error), 1 on an error reply, 2 without a reply."""
    from . import display

    final = _ask(settings, "alarms", args.timeout)
    if isinstance(final, int):
        return final
    alarms = final.get("alarms") or []
    if args.json:
        print(json.dumps(alarms), flush=True)
    elif alarms:
        display.make_console().print(display.alarms_table(alarms))
    else:
        print(f"no live alarm on {settings.controller_id}", file=sys.stderr)
    return 0


def cmd_check_model(args: argparse.Namespace, settings: Settings) -> int:
    """Check a model (``module:Class`` or a ``.py`` file): a report, exit 0 when every
    check passes (or is skipped), 1 when one fails or nothing could be loaded."""
    from .modelcheck import check_model, load_target, passed

    try:
        params = json.loads(args.params) if args.params else {}
    except ValueError as exc:
        print(f"twinctl check-model: --params is not JSON: {exc}", file=sys.stderr)
        return 1
    classes, problems = load_target(args.target)
    for problem in problems:
        print(f"FAIL  load: {problem}")
    ok = not problems and bool(classes)
    for cls in classes:
        print(f"{cls.name} ({args.target})")
        checks = check_model(cls, params)
        for check in checks:
            print(f"  {check.status:<4}  {check.name}: {check.detail}")
        ok = ok and passed(checks)
    print("passed" if ok else "failed")
    return 0 if ok else 1


def cmd_new_model(args: argparse.Namespace, settings: Settings) -> int:
    """Write a model file with every declaration filled in, which check-model passes."""
    import re

    name = args.name
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name):
        print("twinctl new-model: NAME must be a class name in CamelCase, e.g. CoolingTower",
              file=sys.stderr)
        return 1
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    path = Path(args.dir) / f"{snake}.py"
    if path.exists():
        print(f"twinctl new-model: {path} exists; not overwritten", file=sys.stderr)
        return 1
    template = (Path(__file__).parent / "templates" / "model.py.txt").read_text("utf-8")
    path.write_text(template.replace("{title}", name).replace("{cls}", name)
                    .replace("{name}", name).replace("{file}", path.name), "utf-8")
    print(f"wrote {path}: check it with `twinctl check-model {path}`, then put its folder "
          "in TWIN_MODEL_PATH")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """The retained status of every controller under the prefix: online or offline,
    queue depths, outbox size. Exits 1 when none has published one."""
    from ingress.mqttconn import MqttError

    from . import display
    from .client import read_status

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        statuses = read_status(settings, wait=args.wait)
    except MqttError as exc:
        print(f"twinctl status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(statuses), flush=True)
    elif statuses:
        display.make_console().print(display.status_table(statuses))
    if not statuses:
        print(f"twinctl status: no controller status on {settings.mqtt_prefix}/+/status "
              f"within {args.wait:g} s", file=sys.stderr)
        return 1
    return 0


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
        seen: list[dict[str, Any]] = []
        exchange = send_command(stack.settings, command, timeout=60,
                                on_reply=lambda r: _print_reply(r, False, seen))
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
    from common.settings import with_settings_table
    from modellib.docs import library_markdown

    Path(args.out).write_text(library_markdown(), encoding="utf-8")
    print(f"twinctl docs: wrote {args.out}")
    readme = Path(args.readme)
    if readme.is_file():
        readme.write_text(with_settings_table(readme.read_text("utf-8")), encoding="utf-8")
        print(f"twinctl docs: wrote the settings table of {readme}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run ingress and workers (and Flower) until Ctrl-C")
    up.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    up.add_argument("--flower", action="store_true", help="also run Flower")
    up.add_argument("--flower-port", type=int, default=5555)
    up.add_argument("--realtime", type=int, default=2,
                    help="real-time job slots: a worker of their own (default 2; 0: none)")
    up.add_argument("--short", type=int, default=1,
                    help="slots kept for static runs and calls, which long runs cannot take "
                         "(a worker of their own; default 1; 0: none)")
    up.add_argument("--pool", default="prefork", choices=("prefork", "solo", "threads"))
    up.add_argument("--ready-timeout", type=float, default=120.0)
    up.set_defaults(func=cmd_up)

    sub.add_parser("ingress", help="run the MQTT ingress").set_defaults(func=cmd_ingress)

    worker = sub.add_parser("worker", help="run one Celery worker")
    worker.add_argument("--concurrency", "-c", type=int, default=2)
    worker.add_argument("--pool", default="prefork", choices=("prefork", "solo", "threads"))
    worker.add_argument("--queues", "-Q", default=None,
                        help="comma-separated queues (default twin.short,twin.long,twin.sweep; "
                             "twin.realtime for a real-time worker)")
    worker.add_argument("--nice", type=int, default=0,
                        help="raise the worker's niceness by N (batch workers beside "
                             "real-time ones)")
    worker.set_defaults(func=cmd_worker)

    send = sub.add_parser("send", help="send a command and print its replies")
    send.add_argument("file", help="a JSON command file, or - for standard input")
    send.add_argument("--timeout", type=float, default=30.0,
                      help="seconds to wait for the next reply; each reply restarts it, so "
                           "a run that keeps sending data never times out (30)")
    send.add_argument("--json", action="store_true", help="print each reply as one JSON line")
    send.add_argument("--id", help="the request id (default: the file's, else a new one); "
                                   "`stop` and `set` name a job by it")
    send.add_argument("--plot", metavar="FILE",
                      help="draw the run's series into a PNG (one subplot per unit); a "
                           "sweep: a collected value against a swept path")
    send.add_argument("--csv", metavar="FILE",
                      help="write the run's series as CSV (t, then one column per output); "
                           "a sweep: its table, one row per case")
    send.add_argument("--plot-x", metavar="PATH", default=None,
                      help="a sweep's --plot: the swept path on the x axis (the first); "
                           "each value of another swept path is a line")
    send.add_argument("--plot-y", metavar="NAME", default=None,
                      help="a sweep's --plot: the collected value drawn (the objective's, "
                           "else the first)")
    send.set_defaults(func=cmd_send)

    describe = sub.add_parser("describe", help="the controller's models, functions, "
                                               "instances and templates as tables")
    describe.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    describe.add_argument("--json", action="store_true", help="print the raw description")
    describe.set_defaults(func=cmd_describe)

    status = sub.add_parser("status", help="the controllers online/offline, their queues")
    status.add_argument("--wait", type=float, default=1.5,
                        help="seconds to listen for the retained statuses (1.5)")
    status.add_argument("--json", action="store_true",
                        help="print {controller: status} as one JSON object")
    status.set_defaults(func=cmd_status)

    check = sub.add_parser("check-model", help="check a model before the controller loads "
                                               "it: declarations, schema, equations")
    check.add_argument("target", help="package.module:Class, or a .py file of models")
    check.add_argument("--params", default=None,
                       help="JSON values for parameters without a default")
    check.set_defaults(func=cmd_check_model)

    new = sub.add_parser("new-model", help="write a model file to start from (a cooling "
                                           "tower basin, every declaration filled in)")
    new.add_argument("name", help="the class and model name, CamelCase")
    new.add_argument("--dir", default=".", help="where to write it (.)")
    new.set_defaults(func=cmd_new_model)

    alarms = sub.add_parser("alarms", help="the controller's live alarms as a table")
    alarms.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    alarms.add_argument("--json", action="store_true", help="print the alarms as JSON")
    alarms.set_defaults(func=cmd_alarms)

    docs = sub.add_parser("docs", help="write the model and function library reference and "
                                       "the README's settings table")
    docs.add_argument("--out", default="docs/models.md")
    docs.add_argument("--readme", default="README.md")
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
        if args.func in (cmd_ingress, cmd_up, cmd_demo):
            from ingress.policy import Policy

            Policy.from_settings(settings)  # TWIN_ALLOW_* names the real things
    except SettingsError as exc:
        print(f"twinctl: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(args, settings)
    return result
