"""The fuzz test's oracle: what a correct answer is.

Strict JSON as the contract reads it (:func:`strict_json`), what must come back for
each message sent (:class:`Msg`, from its bytes alone), and :class:`Oracle`, which
compares what came back with that and returns :class:`Finding` s: every message
answered (on its reply topic or the errors topic), seq 0, 1, 2… without gaps, one
final reply, the right error code or a correct final reply, strict JSON.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tests.fuzz.protocol import (
    COMMANDS,
    ERROR_CODES,
    FINAL,
    MAX_BYTES,
    REPLY_TYPES,
    SNIFFED_ID,
    SUCCESS,
    USABLE_ID,
    WITH_ACK,
)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > 308:  # docs/protocol.md: beyond a double's range
        raise ValueError("integer out of range")
    return int(digits)


def strict_json(payload: bytes) -> Any:
    """The command as the contract reads it; ValueError where it is ``invalid_json``
    (docs/protocol.md: NaN/Infinity, integers beyond ±1.8e308, lone surrogates)."""
    doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constant,
                     parse_int=_bounded_int)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError: lone surrogate
    return doc


SIGNATURE = re.compile(rb"\A(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63}:)?[0-9a-fA-F]{64} ")
DEEP_ENOUGH = 100


def _nesting(payload: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (strings left out)."""
    if payload.count(b"[") + payload.count(b"{") < DEEP_ENOUGH:
        return 0
    bare = np.frombuffer(re.sub(rb'"(?:[^"\\]|\\.)*"', b"", payload), dtype=np.uint8)
    steps = np.isin(bare, (91, 123)).astype(np.int64) - np.isin(bare, (93, 125))
    return int(np.cumsum(steps).max()) if len(steps) else 0


def sniff(payload: bytes) -> str | None:
    match = SNIFFED_ID.search(payload)
    return match.group(1).decode() if match else None


@dataclass
class Msg:
    """One message sent, and what PROTOCOL.md says must come back."""

    index: int
    payload: bytes
    kind: str
    expect_ok: bool = False
    codes: frozenset[str] | None = None
    allowed: frozenset[str] = frozenset()
    rid: str | None = None
    """the reply topic's id; None: the errors topic"""
    code: str | None = None
    """the error code the envelope alone decides"""
    claims: bool = False
    cmd: str | None = None
    doc: Any = None
    alt: frozenset[str] = frozenset()
    """another error code as good as ``code``: ``invalid_json`` for a command nested
    deeply (docs/protocol.md: "nesting too deep to read"; how deep depends on the reader)"""

    def classify(self) -> None:
        if len(self.payload) > MAX_BYTES:
            self.rid, self.code = sniff(self.payload), "too_large"
            return
        # docs/protocol.md: a signature prefix is ignored when signing is off
        unsigned = SIGNATURE.sub(b"", self.payload, count=1)
        try:
            doc = strict_json(unsigned)
        except (ValueError, RecursionError):
            self.rid, self.code = sniff(self.payload), "invalid_json"
            return
        if _nesting(self.payload) >= DEEP_ENOUGH:
            self.alt = frozenset({"invalid_json"})
        if not isinstance(doc, dict):
            self.code = "invalid_command"
            return
        rid = doc.get("id")
        if not isinstance(rid, str) or not USABLE_ID.fullmatch(rid):
            self.code = "invalid_command"
            return
        self.rid, self.doc = rid, doc
        cmd = doc.get("cmd")
        if not isinstance(cmd, str) or cmd not in COMMANDS:
            self.code = "invalid_command"
            return
        self.cmd, self.claims = cmd, True

    def show(self, limit: int = 400) -> str:
        text = repr(self.payload[:limit])
        return text + (f"... ({len(self.payload)} bytes)" if len(self.payload) > limit else "")


@dataclass
class Finding:
    """A problem: its kind, the message that showed it (None: no single one), and
    what came back."""

    what: str
    msg: Msg | None
    detail: str


class Received(Protocol):
    """What came back, as the harness's collector holds it."""

    cid: str
    by_id: dict[str, list[dict[str, Any]]]
    """the replies on each reply topic, by the topic's id"""
    errors: list[dict[str, Any]]
    """the errors topic, in order"""
    unreadable: list[tuple[str, bytes, str]]
    """messages that are no strict JSON object: topic, bytes, why"""


class Oracle:
    """Checks what came back (``got``) against the messages sent; ``stop_targets``:
    the jobs a ``stop`` was sent for (a run may end ``stopped`` only then)."""

    def __init__(self, got: Received, stop_targets: set[str]) -> None:
        self.got = got
        self.stop_targets = stop_targets
        self.findings: list[Finding] = []
        self.expected_errors: list[Msg] = []

    def check(self, sent: list[Msg], expected_errors: list[Msg]) -> list[Finding]:
        """Compare everything that came back with what had to (after the last batch):
        ``sent``, every message in order; ``expected_errors``, those of them that must
        be answered on the errors topic, in order."""
        self.expected_errors = expected_errors
        by_rid: dict[str, list[Msg]] = defaultdict(list)
        for m in sent:
            if m.rid is not None:
                by_rid[m.rid].append(m)
        for rid, msgs in by_rid.items():
            self._check_rid(rid, msgs, self.got.by_id.get(rid, []))
        for rid in set(self.got.by_id) - set(by_rid):
            self.findings.append(Finding(
                "replies on the topic of an id that no command had (as PROTOCOL.md reads it)",
                None, f"topic id {rid!r}: {json.dumps(self.got.by_id[rid])[:300]}"))
        self._check_errors_topic()
        for topic, payload, why in self.got.unreadable:
            self.findings.append(Finding("a message that is not strict JSON", None,
                                         f"on {topic}: {payload!r} ({why})"))
        return self.findings

    def _check_errors_topic(self) -> None:
        got = self.got.errors
        for e in got:
            problem = _error_problem(e)
            if problem or e.get("controller") != self.got.cid or not isinstance(e.get("ts"), str):
                self.findings.append(Finding("a malformed error on the errors topic", None,
                                             f"{problem or 'envelope'}: {e}"))
        want = [m.code for m in self.expected_errors]
        have = [e.get("code") for e in got]
        if len(want) == len(have) and self._same_errors_reordered(got):
            # The order is kept per orchestrator only (ingress/inbox.py): a raw payload
            # that starts like a signature (``name:…``) claims orchestrator ``name``,
            # whose queue is handled beside the others'. Every error is there.
            return
        if len(want) == len(have):
            for m, e in zip(self.expected_errors, got, strict=True):
                if e.get("code") != m.code and e.get("code") not in m.alt:
                    self.findings.append(Finding(
                        f"wrong error code on the errors topic: {e.get('code')} instead of "
                        f"{m.code}", m, json.dumps(e)[:300]))
            return
        matcher = difflib.SequenceMatcher(a=want, b=have, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            lost = self.expected_errors[i1:i2]
            extra = got[j1:j2]
            if tag == "replace" and len(lost) == len(extra):
                for m, e in zip(lost, extra, strict=True):
                    self.findings.append(Finding(
                        f"wrong error code on the errors topic: {e.get('code')} instead of "
                        f"{m.code}", m, json.dumps(e)[:300]))
                continue
            for m in lost:
                self.findings.append(Finding(
                    f"no error on the errors topic for a command without a usable id "
                    f"(expected {m.code})", m, "nothing (or not in order) on the errors topic"))
            for e in extra:
                self.findings.append(Finding("an error on the errors topic that no command "
                                             "explains", None, json.dumps(e)[:300]))

    def _same_errors_reordered(self, got: list[dict[str, Any]]) -> bool:
        """Whether each error received matches one expected (its code or an alternative),
        each expected one used once, in whatever order."""
        pool = list(self.expected_errors)
        for e in got:
            code = e.get("code")
            found = next((i for i, m in enumerate(pool) if code == m.code), None)
            if found is None:
                found = next((i for i, m in enumerate(pool) if code in m.alt), None)
            if found is None:
                return False
            pool.pop(found)
        return not pool

    def _check_rid(self, rid: str, msgs: list[Msg], replies: list[dict[str, Any]]) -> None:
        def bad(what: str, detail: str, m: Msg | None = None) -> None:
            self.findings.append(Finding(what, m or msgs[0], detail))

        replies = sorted(replies, key=lambda r: (r.get("seq", -1)))
        seqs = [r.get("seq") for r in replies]
        unique = {json.dumps(r.get("seq")): r for r in replies}
        if len(unique) != len(replies):  # at-least-once: a copy must be the same reply
            dupes = [s for s, n in Counter(json.dumps(s) for s in seqs).items() if n > 1]
            bad("two different replies with the same (id, seq)", f"seq {dupes}: {replies}")
            replies = list(unique.values())
            seqs = [r.get("seq") for r in replies]
        if seqs != list(range(len(replies))):
            bad("seq does not count 0, 1, 2… without gaps", f"seqs {seqs}")
        for r in replies:
            if (r.get("id") != rid or r.get("controller") != self.got.cid
                    or r.get("type") not in REPLY_TYPES or not isinstance(r.get("ts"), str)):
                bad("a reply with a wrong envelope", json.dumps(r)[:300])
            if r.get("type") == "error" and (problem := _error_problem(r)):
                bad(f"a malformed error: {problem}", json.dumps(r)[:300])
        finals = [r for r in replies if r.get("type") in FINAL]
        if len(finals) < len(msgs):
            for m in msgs[len(finals):] if len(msgs) > 1 else msgs:
                expected = m.code or ("a success" if m.expect_ok else "an answer")
                bad(f"unanswered ({m.kind.split(':')[0]}; expected {expected})",
                    f"replies: {json.dumps(replies)[:300]}", m)
            return
        if len(finals) > len(msgs):
            bad("more final replies than commands", json.dumps(replies)[:400])
        if finals and replies.index(finals[-1]) != len(replies) - 1 and len(msgs) == 1:
            bad("a reply after the final one", json.dumps(replies)[:400])
        claims = sum(m.claims for m in msgs)
        dupes = sum(f.get("code") == "duplicate_id" for f in finals)
        if dupes != max(0, claims - 1):
            bad(f"{dupes} duplicate_id error(s) for {claims} command(s) that claim the id",
                json.dumps(finals)[:400], msgs[-1])
        codes = Counter(f.get("code") for f in finals if f.get("type") == "error")
        if len(msgs) > 1:
            for m in msgs:
                want = m.code or ("duplicate_id" if m.codes == {"duplicate_id"} and m.claims
                                  else None)
                if want and codes[want] == 0:
                    bad(f"no {want} error", json.dumps(finals)[:400], m)
            return
        (m,), (final,) = msgs, finals[:1]
        self._check_one(m, final, replies)

    def _check_one(self, m: Msg, final: dict[str, Any], replies: list[dict[str, Any]]) -> None:
        def bad(what: str) -> None:
            self.findings.append(Finding(what, m, json.dumps(replies)[:500]))

        is_error = final.get("type") == "error"
        code = final.get("code")
        want = m.code or None
        if want is not None:
            if not is_error or (code != want and code not in m.alt):
                bad(f"{code or final.get('type')} instead of {want}")
            return
        if m.alt and is_error and code in m.alt:
            return
        if m.codes is not None and (not is_error or code not in m.codes):
            bad(f"{code or final.get('type')} instead of {' or '.join(sorted(m.codes))} "
                f"({m.kind.split(':')[0]})")
            return
        types = [r.get("type") for r in replies]
        if "ack" in types and (types.index("ack") != 0 or m.cmd not in WITH_ACK):
            bad(f"an ack where none belongs (a {m.cmd!r})")
        if "data" in types and m.cmd != "run":
            bad(f"data replies for a {m.cmd!r}")
        if is_error:
            if code == "internal_error":
                bad(f"internal_error (a crash, caught) for a {m.cmd!r}")
            elif m.expect_ok and code not in m.allowed:
                bad(f"a valid command refused: {code} ({m.kind})")
            return
        problem = _success_problem(m, final, types)
        if problem:
            bad(problem)
        if (final.get("status") == "stopped" and m.rid not in self.stop_targets):
            bad("a run ended 'stopped' without a stop")


def _error_problem(e: dict[str, Any]) -> str | None:
    if e.get("type") != "error":
        return "type is not 'error'"
    if e.get("code") not in ERROR_CODES:
        return f"code {e.get('code')!r} is not one of PROTOCOL.md's"
    if not isinstance(e.get("message"), str) or not e["message"].strip():
        return "no message"
    if "path" in e and not isinstance(e["path"], str):
        return "path is not a string"
    return None


def _success_problem(m: Msg, final: dict[str, Any], types: list[Any]) -> str | None:
    cmd, doc = m.cmd, m.doc or {}
    want = SUCCESS.get(cmd or "", "result")
    if final.get("type") != want:
        return f"a {cmd!r} answered with {final.get('type')!r}, not {want!r}"
    if cmd in WITH_ACK and types[0] != "ack":
        return f"a {cmd!r} without an ack first"
    if cmd == "describe":
        missing = {"models", "functions", "instances", "templates"} - set(final)
        return f"description without {sorted(missing)}" if missing else None
    if cmd == "ping":
        return None
    status = final.get("status")
    if status not in ("ok", "stopped", "completed"):
        return f"a result with status {status!r}"
    if status == "stopped" and cmd in ("run", "call"):
        return None
    if cmd == "run" and status == "ok":
        if "values" not in final and not final.get("streamed"):
            return "a run's result without values"
    if cmd == "call" and ("value" not in final or final.get("function") != doc.get("function")):
        return "a call's result without its value or function"
    if cmd == "put_instance" and not isinstance(final.get("instance"), dict):
        return "put_instance's result without the instance"
    if cmd == "delete_instance" and final.get("deleted") != doc.get("instance_id"):
        return "delete_instance's result does not name the instance"
    if cmd in ("stop", "set") and final.get("target") != doc.get("target"):
        return f"{cmd}'s result does not name its target"
    if cmd == "jobs" and not isinstance(final.get("jobs"), list):
        return "jobs' result without a list"
    return None
