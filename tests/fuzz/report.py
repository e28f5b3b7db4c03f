"""The fuzz test's report: how the commands ended, what the ingress logged, and the
findings by kind, each with how often it happened and the shortest command."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from tests.fuzz.harness import Fuzzer
from tests.fuzz.oracle import Finding
from tests.fuzz.protocol import FINAL


def outcomes(fuzzer: Fuzzer) -> Counter[str]:
    """How the commands on reply topics ended: reply type, or error code."""
    tally: Counter[str] = Counter()
    for m in fuzzer.sent:
        finals = [r for r in fuzzer.col.by_id.get(m.rid or "", []) if r.get("type") in FINAL]
        tally[(finals[0].get("code") or finals[0].get("type")) if finals
              else "(errors topic)" if m.rid is None else "(nothing)"] += 1
    return tally


def ingress_exceptions(log_dir: Path | None) -> str:
    """The exceptions the ingress logged (each a command it could not handle), by place."""
    log = (log_dir or Path("/nonexistent")) / "ingress.log"
    if not log.exists():
        return ""
    places: Counter[str] = Counter()
    for block in re.split(r"\n(?=\d{4}-\d\d-\d\d )", log.read_text(errors="replace")):
        if "Traceback" not in block:
            continue
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', block)
        own = [f"{Path(f).parent.name}/{Path(f).name}:{n} {fn}" for f, n, fn in frames
               if "site-packages" not in f and "/lib/python" not in f]
        places[f"{block.strip().splitlines()[-1][:100]} at {' > '.join(own[-2:])}"] += 1
    if not places:
        return ""
    return "\nexceptions in the ingress log (" + str(log) + "):\n" + "\n".join(
        f"  {n} x {place}" for place, n in places.most_common())


def report(findings: list[Finding]) -> str:
    groups: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        groups[f.what].append(f)
    lines = [f"{len(findings)} finding(s) in {len(groups)} kind(s):"]
    for what, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = min(items, key=lambda f: len(f.msg.payload) if f.msg else 1 << 30)
        lines.append(f"\n* {what}: {len(items)} time(s)")
        if first.msg is not None:
            lines.append(f"  shortest command ({first.msg.kind}): {first.msg.show()}")
        lines.append(f"  got: {first.detail}")
    return "\n".join(lines)


def summarize(fuzzer: Fuzzer, seconds: float, rss_warm: int, rss_end: int) -> str:
    """How much was sent and answered, how long it took, the ingress's memory, and how
    the commands ended."""
    col = fuzzer.col
    total = len(fuzzer.sent)
    summary = (f"fuzz: {fuzzer.generated} generated messages ({total} sent with the stops) in "
               f"{fuzzer.batches} batches, {col.received} replies, "
               f"{len(col.acked_realtime)} real-time runs, {seconds:.0f} s "
               f"(slowest batch {max(fuzzer.batch_seconds):.1f} s); ingress RSS "
               f"{rss_warm / 1024:.1f} MiB after the warm-up, {rss_end / 1024:.1f} MiB at "
               f"the end ({(rss_end - rss_warm) / 1024:+.1f} MiB)")
    return summary + f"\noutcomes: {dict(outcomes(fuzzer).most_common())}"


def by_kind(fuzzer: Fuzzer) -> Counter[str]:
    """The messages sent by kind of case (its label up to a colon or a parenthesis)."""
    return Counter(m.kind.split(":")[0].split(" (")[0] for m in fuzzer.sent)
