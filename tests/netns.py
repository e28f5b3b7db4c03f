"""Test hosts in network namespaces: a small lab for the tests that cross a network.

:class:`Lab` makes one network namespace per host (``tw-<tag>-p<pid>-<host>``), each
with one interface ``eth0`` at ``10.A.B.n/24``, plugged into a switch: the bridge
``br0`` of a namespace of its own (``tw-<tag>-p<pid>-switch``), a port ``p-<host>`` per
host. The test process (the root namespace) is on the switch too, by a veth
``tw<tag>`` at ``.254``, so it reaches every host; nothing else of the machine is (no
route out of the lab, no forwarding).
A host's processes are started with ``ip netns exec <ns> <argv>`` (:meth:`Lab.argv`).
The names carry the test process's pid: a lab left behind by a test process that was
killed (SIGKILL, no clean-up) is removed by the next one (:func:`sweep`).

A host's link can be made slow and lossy (:meth:`Lab.impair`) and cut (:meth:`Lab.cut`:
its switch port down, the host itself running on, as when its cable is pulled):

- with the kernel's ``sch_netem``: ``netem delay … loss …`` on both ends of the link
  (the host's ``eth0`` and its switch port), so each direction is delayed and lossy;
- without it, the loss by a classic-BPF tc filter on both ends (``clsact``, direct
  action: drop when a random u32 is below ``loss · 2³²``, ``cls_bpf``), or by iptables
  ``-m statistic --mode random`` in the host when ``iptables`` is installed; the delay
  then by a userspace :class:`DelayRelay` on the path (each direction's bytes held
  ``delay`` seconds, per connection), since nothing in such a kernel delays packets.

:func:`probe` finds out at test time (in a scratch namespace, removed again) what the
machine can do, and says exactly what is missing. :meth:`Lab.close` always removes
every namespace and link it made and kills what still runs in them.

``python -m tests.netns relay --delay S LISTEN=TARGET …`` is the relay's own process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.services import MosquittoProcess, RedisProcess
from twinctl.embedded import pdeathsig_preexec

__all__ = ["Capabilities", "DelayRelay", "Host", "HostMosquitto", "HostRedis", "Lab", "LabError",
           "probe"]

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"


class LabError(RuntimeError):
    """A command that builds or changes the lab failed (its stderr in the message)."""


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """``argv`` with its output captured; :class:`LabError` (with stderr) if it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from None
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: "
                       f"{(done.stderr or done.stdout).strip()}")
    return done


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return [IP, "netns", "exec", ns, *argv]


# --------------------------------------------------------------------------
# what the machine can do
# --------------------------------------------------------------------------


def bpf_drop_program(loss: float) -> str:
    """A classic BPF program (tc's ``bytecode`` form) for ``cls_bpf`` in direct-action
    mode: ``TC_ACT_SHOT`` (2) when the kernel's random u32 (``ld rand``, the ancillary
    load ``SKF_AD_OFF + SKF_AD_RANDOM``) is below ``loss · 2³²``, else ``TC_ACT_OK``."""
    threshold = max(1, min(0xFFFFFFFF, round(loss * 2**32)))
    return ",".join(["4",
                     f"32 0 0 {0xFFFFF000 + 56}",  # ld rand
                     f"53 1 0 {threshold}",  # jge #threshold: keep, else
                     "6 0 0 2",  # ret #TC_ACT_SHOT
                     "6 0 0 0"])  # ret #TC_ACT_OK


@dataclass
class Capabilities:
    """What :func:`probe` found: for each means, None if it works, else why not."""

    namespaces: str | None
    netem: str | None = "not tried"
    bpf_loss: str | None = "not tried"
    iptables_loss: str | None = "not tried"

    @property
    def loss_method(self) -> str | None:
        """How a link is made lossy: ``netem``, ``bpf``, ``iptables`` or None."""
        for name, why in (("netem", self.netem), ("bpf", self.bpf_loss),
                          ("iptables", self.iptables_loss)):
            if why is None:
                return name
        return None

    def describe(self) -> str:
        def say(why: str | None) -> str:
            return "works" if why is None else f"no ({why})"

        return (f"netem: {say(self.netem)}; tc cls_bpf random drop: {say(self.bpf_loss)}; "
                f"iptables statistic: {say(self.iptables_loss)}")


def probe() -> Capabilities:
    """Try, in a scratch namespace removed again, what :class:`Lab` needs: namespaces
    and veth pairs (``ip``, root), ``tc … netem``, a ``cls_bpf`` random drop and
    iptables' ``statistic`` match."""
    if not sys.platform.startswith("linux"):
        return Capabilities(f"not Linux ({sys.platform})")
    if os.geteuid() != 0:
        return Capabilities("not root: network namespaces need CAP_NET_ADMIN / CAP_SYS_ADMIN")
    if shutil.which("ip") is None and not os.path.exists(IP):
        return Capabilities("no `ip` command (Debian package iproute2)")
    ns = f"tw-{uuid.uuid4().hex[:6]}-p{os.getpid()}-probe"
    try:
        try:
            run([IP, "netns", "add", ns])
            run([IP, "-n", ns, "link", "add", "a0", "type", "veth", "peer", "name", "a1"])
            run([IP, "-n", ns, "link", "set", "lo", "up"])
        except LabError as exc:
            return Capabilities(f"cannot make a network namespace with a veth pair: {exc}")
        caps = Capabilities(None)
        if shutil.which("tc") is None and not os.path.exists(TC):
            caps.netem = caps.bpf_loss = "no `tc` command (Debian package iproute2)"
        else:
            caps.netem = _try([TC, "-n", ns, "qdisc", "add", "dev", "a0", "root", "netem",
                               "delay", "50ms", "loss", "1%"])
            caps.bpf_loss = (
                _try([TC, "-n", ns, "qdisc", "add", "dev", "a1", "clsact"])
                or _try([TC, "-n", ns, "filter", "add", "dev", "a1", "egress", "bpf", "da",
                         "bytecode", bpf_drop_program(0.01)]))
        iptables = shutil.which("iptables")
        if iptables is None:
            caps.iptables_loss = "no `iptables` command (Debian package iptables)"
        else:
            caps.iptables_loss = _try(in_ns(ns, [
                iptables, "-w", "-A", "OUTPUT", "-m", "statistic", "--mode", "random",
                "--probability", "0.01", "-j", "DROP"]))
        return caps
    finally:
        run([IP, "netns", "del", ns], check=False)


def _try(argv: list[str]) -> str | None:
    try:
        run(argv)
    except LabError as exc:
        return str(exc).split(": exit ", 1)[-1]
    return None


# --------------------------------------------------------------------------
# the lab
# --------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    port: str
    """its port on the switch (in the switch namespace)"""
    loss: str | None = None
    """how its link drops packets, once impaired"""
    delay_s: float = 0.0
    """the delay netem puts on each direction of its link (0: none in the kernel)"""


@dataclass
class Lab:
    """Hosts in network namespaces on one switch (see the module); :meth:`close` (or
    leaving ``with``) removes everything, also after a failed :meth:`up`."""

    names: tuple[str, ...]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    caps: Capabilities | None = None
    hosts: dict[str, Host] = field(default_factory=dict)
    subnet: ipaddress.IPv4Network | None = None
    made: list[str] = field(default_factory=list)
    """the namespaces made so far"""

    @property
    def owner(self) -> str:
        """the part of its namespaces' names that says which process made them"""
        return f"tw-{self.tag}-p{os.getpid()}"

    @property
    def switch(self) -> str:
        return f"{self.owner}-switch"

    @property
    def root_link(self) -> str:
        return f"tw{self.tag}"

    @property
    def test_ip(self) -> str:
        """The address of the test process (root namespace) on the switch."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 254)

    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        sweep()
        self.subnet = free_subnet()
        net = self.subnet
        self._ns(self.switch)
        sw = [IP, "-n", self.switch]
        run([*sw, "link", "add", "br0", "type", "bridge"])
        run([*sw, "link", "set", "br0", "up"])
        for k, name in enumerate(self.names, start=1):
            host = Host(name, f"{self.owner}-{name}", str(net.network_address + k), f"p-{name}")
            self._ns(host.ns)
            run([IP, "-n", self.switch, "link", "add", host.port, "type", "veth", "peer",
                 "name", "eth0", "netns", host.ns])
            run([*sw, "link", "set", host.port, "master", "br0", "up"])
            hn = [IP, "-n", host.ns]
            run([*hn, "link", "set", "lo", "up"])
            run([*hn, "addr", "add", f"{host.ip}/{net.prefixlen}", "dev", "eth0"])
            run([*hn, "link", "set", "eth0", "up"])
            self.hosts[name] = host
        run([IP, "link", "add", self.root_link, "type", "veth", "peer", "name", "p-test",
             "netns", self.switch])
        run([*sw, "link", "set", "p-test", "master", "br0", "up"])
        run([IP, "addr", "add", f"{self.test_ip}/{net.prefixlen}", "dev", self.root_link])
        run([IP, "link", "set", self.root_link, "up"])

    def _ns(self, ns: str) -> None:
        run([IP, "netns", "add", ns])
        self.made.append(ns)

    # ----- use ---------------------------------------------------------------
    def ip(self, host: str) -> str:
        return self.hosts[host].ip

    def argv(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run on ``host`` (``ip netns exec``: it execs ``argv``, same pid)."""
        return in_ns(self.hosts[host].ns, argv)

    def impair(self, host: str, delay_s: float, loss: float) -> str:
        """Make ``host``'s link slow and lossy on both of its ends, as far as the kernel
        can (netem for both, else only the loss; see the module); returns what was done.
        The delay not put in the kernel is the caller's (a :class:`DelayRelay`)."""
        caps = self.caps or probe()
        self.caps = caps
        h = self.hosts[host]
        ends = [(h.ns, "eth0"), (self.switch, h.port)]
        method = caps.loss_method
        if method == "netem":
            for ns, dev in ends:
                run([TC, "-n", ns, "qdisc", "add", "dev", dev, "root", "netem",
                     "delay", f"{delay_s * 1000:g}ms", "loss", f"{loss * 100:g}%"])
            h.delay_s = delay_s
        elif method == "bpf":
            for ns, dev in ends:
                run([TC, "-n", ns, "qdisc", "add", "dev", dev, "clsact"])
                run([TC, "-n", ns, "filter", "add", "dev", dev, "egress", "bpf", "da",
                     "bytecode", bpf_drop_program(loss)])
        elif method == "iptables":
            ipt = shutil.which("iptables") or "iptables"
            for chain, way in (("OUTPUT", "-o"), ("INPUT", "-i")):
                run(in_ns(h.ns, [ipt, "-w", "-A", chain, way, "eth0", "-m", "statistic",
                                 "--mode", "random", "--probability", f"{loss:g}",
                                 "-j", "DROP"]))
        h.loss = method
        if method is None:
            return f"{host}: no loss, no delay in the kernel ({caps.describe()})"
        delay = f"netem delay {delay_s * 1000:g} ms" if method == "netem" else "no delay"
        return f"{host}: {loss * 100:g} % loss each way by {method}, {delay} in the kernel"

    def drops(self, host: str) -> tuple[int, int]:
        """``(packets dropped, packets seen)`` by ``host``'s loss, both ends together."""
        h = self.hosts[host]
        dropped = seen = 0
        if h.loss in ("netem", "bpf"):
            for ns, dev in ((h.ns, "eth0"), (self.switch, h.port)):
                out = run([TC, "-n", ns, "-s", "qdisc", "show", "dev", dev]).stdout
                kind = "netem" if h.loss == "netem" else "clsact"
                block = out.split(f"qdisc {kind}", 1)[-1].split("\nqdisc ", 1)[0]
                m = re.search(r"Sent \d+ bytes (\d+) pkt \(dropped (\d+)", block)
                if m:  # clsact counts every packet it sees as sent, netem the ones it passed
                    seen += int(m.group(1)) + (int(m.group(2)) if h.loss == "netem" else 0)
                    dropped += int(m.group(2))
        elif h.loss == "iptables":
            ipt = shutil.which("iptables") or "iptables"
            for chain in ("OUTPUT", "INPUT"):
                out = run(in_ns(h.ns, [ipt, "-w", "-nvxL", chain])).stdout
                m = re.search(r"^\s*(\d+)\s+\d+\s+DROP", out, re.M)
                dropped += int(m.group(1)) if m else 0
                if chain == "OUTPUT":  # dropped before eth0 counts them
                    seen += int(m.group(1)) if m else 0
            for dev in ("rx_packets", "tx_packets"):
                seen += int(run(in_ns(h.ns, ["cat", f"/sys/class/net/eth0/statistics/{dev}"]))
                            .stdout.strip() or 0)
        return dropped, seen

    def cut(self, host: str) -> None:
        """``host``'s switch port down: it is off the network, and runs on."""
        run([IP, "-n", self.switch, "link", "set", self.hosts[host].port, "down"])

    def mend(self, host: str) -> None:
        run([IP, "-n", self.switch, "link", "set", self.hosts[host].port, "up"])

    def pids(self, ns: str) -> list[int]:
        done = run([IP, "netns", "pids", ns], check=False)
        return [int(p) for p in done.stdout.split() if p.isdigit()]

    def close(self) -> None:
        """Kill whatever still runs in the lab's namespaces, remove them (and so every
        veth pair and the bridge) and the test's own link; never raises."""
        for ns in self.made:
            for pid in self.pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(self.pids(ns) for ns in self.made) and time.monotonic() < deadline:
            time.sleep(0.05)
        for ns in reversed(self.made):
            run([IP, "netns", "del", ns], check=False)
        self.made = []
        if run([IP, "link", "show", self.root_link], check=False).returncode == 0:
            run([IP, "link", "del", self.root_link], check=False)


STALE = re.compile(r"^tw-[0-9a-f]+-p(\d+)-")


def sweep() -> list[str]:
    """Remove the namespaces of labs whose test process is gone (killed before it could
    clean up), with what still runs in them; returns their names."""
    gone = []
    for line in run([IP, "netns", "list"], check=False).stdout.splitlines():
        name = line.split(" ", 1)[0]
        m = STALE.match(name)
        if m is None or Path(f"/proc/{m.group(1)}").exists():
            continue
        done = run([IP, "netns", "pids", name], check=False)
        for pid in (int(p) for p in done.stdout.split() if p.isdigit()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run([IP, "netns", "del", name], check=False)
        gone.append(name)
    return gone


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0-10.249.255.0 that no route or address of the root namespace
    overlaps (the lab's hosts exist only inside this machine)."""
    used: list[ipaddress.IPv4Network] = []
    for what in (["-4", "route", "show", "table", "all"], ["-4", "addr"]):
        for entry in json.loads(run([IP, "-j", *what]).stdout or "[]"):
            items = [entry.get("dst")] if "dst" in entry else [
                f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])]
            for item in items:
                with contextlib.suppress(ValueError, TypeError):
                    used.append(ipaddress.IPv4Network(item, strict=False))
    rng = random.Random()
    for _ in range(500):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(200, 250)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise LabError("no free /24 in 10.200.0.0/13 for the lab")


# --------------------------------------------------------------------------
# servers on a host of the lab
# --------------------------------------------------------------------------


class HostRedis(RedisProcess):
    """:class:`~tests.services.RedisProcess` on ``host`` of ``lab``, bound to its address."""

    def __init__(self, lab: Lab, host: str, port: int, dir: str | os.PathLike[str],
                 appendonly: bool = False) -> None:
        super().__init__(port, dir, appendonly, host=lab.ip(host))
        self.lab, self.on = lab, host

    def argv(self) -> list[str]:
        return self.lab.argv(self.on, super().argv())


class HostMosquitto(MosquittoProcess):
    """:class:`~tests.services.MosquittoProcess` on ``host`` of ``lab``, bound to its
    address."""

    def __init__(self, lab: Lab, host: str, port: int, dir: str | os.PathLike[str]) -> None:
        super().__init__(port, dir, host=lab.ip(host))
        self.lab, self.on = lab, host

    def argv(self) -> list[str]:
        return self.lab.argv(self.on, super().argv())


# --------------------------------------------------------------------------
# the delay, in userspace
# --------------------------------------------------------------------------


class DelayRelay:
    """A TCP relay on ``host`` of ``lab`` (its own process there) that holds the bytes of
    each direction of each connection ``delay_s`` seconds before passing them on, in
    order: ``routes`` maps a port it listens on (at the host's address) to the
    ``(address, port)`` it connects to for each client.

    The delay a missing ``sch_netem`` cannot give: put in front of a server, every
    client's round trip to it takes ``2 · delay_s`` more (as netem ``delay_s`` on both
    ends of the client's link would); the packets themselves still cross the lab's
    links, with their loss and cuts."""

    def __init__(self, lab: Lab, host: str, routes: dict[int, tuple[str, int]],
                 delay_s: float, log: Path) -> None:
        self.lab, self.host, self.routes, self.delay_s, self.log = lab, host, routes, delay_s, log
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, scheme: str, port: int, path: str = "") -> str:
        return f"{scheme}://{self.lab.ip(self.host)}:{port}{path}"

    def start(self, timeout: float = 15.0) -> None:
        me = self.lab.ip(self.host)
        argv = [sys.executable, "-m", "tests.netns", "relay", "--delay", str(self.delay_s),
                *(f"{me}:{port}={addr}:{to}" for port, (addr, to) in self.routes.items())]
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        log: IO[bytes] = open(self.log, "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.lab.argv(self.host, argv), cwd=root, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                preexec_fn=pdeathsig_preexec(signal.SIGKILL))  # dies with the test
        finally:
            log.close()
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.stop()
            raise LabError(f"the delay relay did not start: {line!r}; "
                           f"{self.log.read_text('utf-8', 'replace')[-2000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


async def _relay(routes: list[tuple[str, int, str, int]], delay: float) -> None:
    loop = asyncio.get_running_loop()
    stats = {"connections": 0, "bytes": 0}

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def take() -> None:
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return

        taker = asyncio.create_task(take())
        try:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                stats["bytes"] += len(data)
                await writer.drain()
        finally:
            taker.cancel()

    def serve(addr: str, port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                Awaitable[None]]:
        async def handle(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
            stats["connections"] += 1
            try:
                sreader, swriter = await asyncio.open_connection(addr, port)
            except OSError:
                cwriter.close()
                return
            try:
                await asyncio.gather(pipe(creader, swriter), pipe(sreader, cwriter))
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                for w in (cwriter, swriter):
                    w.close()
        return handle

    servers = [await asyncio.start_server(serve(to_addr, to_port), addr, port)
               for addr, port, to_addr, to_port in routes]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()
    print(f"relay: {stats['connections']} connections, {stats['bytes']} bytes",
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netns")
    sub = parser.add_subparsers(dest="what", required=True)
    relay = sub.add_parser("relay", help="a TCP relay that delays each direction")
    relay.add_argument("--delay", type=float, required=True, help="seconds, each direction")
    relay.add_argument("routes", nargs="+", metavar="LISTEN_ADDR:PORT=TARGET_ADDR:PORT")
    args = parser.parse_args(argv)
    routes = []
    for item in args.routes:
        listen, target = item.split("=", 1)
        la, lp = listen.rsplit(":", 1)
        ta, tp = target.rsplit(":", 1)
        routes.append((la, int(lp), ta, int(tp)))
    asyncio.run(_relay(routes, args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
