"""What hypothesis draws for the fuzz test: :class:`Case` (one or more messages, made
once their ids are known) and the mix of cases (:func:`a_case`) — valid commands,
mutations of valid ones (a key dropped, a type changed, a special value put in,
garbage bytes inserted, the bytes truncated, a bad id, oversize), random commands,
bad and edge ids, raw payloads, odd values, huge time spans, the size limit — and
:func:`edge_cases`, the hand-picked warm-up batch sent first."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.commands import (
    Ref,
    any_text,
    chance,
    dynamic_run,
    json_value,
    junk,
    odd_text,
    pick,
    valid_command,
)
from tests.fuzz.protocol import COMMANDS, ID_CHARS, MAX_BYTES
from tests.fuzz.random_commands import random_command
from tests.fuzz.values import (
    BAD_IDS,
    DEEP,
    EDGE_IDS,
    FIELD_NAMES,
    GARBAGE,
    HUGE,
    NAN_TOKENS,
    ODD_TEXT,
    RAW_PAYLOADS,
    SPECIALS,
    TYPE_SAMPLES,
    Raw,
    type_of,
)
from tests.test_e2e import pump_run


@dataclass
class Case:
    """What hypothesis draws: one or more messages, made when their ids are known."""

    kind: str
    body: Any = None
    id_value: Any = "new"
    """"new": a fresh unique id first in the object; "none": no id; else the id as given"""
    raw: bytes | None = None
    bytes_op: tuple[str, float, bytes] | None = None
    ascii_only: bool = True
    expect_ok: bool = False
    codes: frozenset[str] | None = None
    """the error codes this input must get; None: any code (or a success)"""
    allowed: frozenset[str] = frozenset()
    """errors a valid command may get all the same (a stop target that ended, …)"""
    twin: Any = None
    """a second body sent with the same id (a duplicate on purpose)"""
    id_suffix: str = ""


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


_DROP = object()


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def _value_at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw: Any, rnd: random.Random) -> Case:
    body, kind = draw(valid_command(rnd))
    op = pick(rnd, ["drop"] * 4 + ["retype"] * 4 + ["special"] * 4 + ["nan"] + ["unknown"] * 2
               + ["garbage"] * 3 + ["truncate"] * 3 + ["id"] * 2 + ["deep"] + ["oversize"])
    paths = [p for p in _paths(body) if not isinstance(_value_at(body, p), Ref)]
    path = paths[rnd.randrange(len(paths))]
    label = f"mutated {kind}: {op}"
    if op == "drop":
        return Case(f"{label} {path[-1]!r}", _set(body, path, _DROP))
    if op == "retype":
        old = type_of(_value_at(body, path))
        options = [v for v in TYPE_SAMPLES if type_of(v) != old]
        return Case(f"{label} {path[-1]!r}", _set(body, path, pick(rnd, options)))
    if op == "special":
        return Case(f"{label} {path[-1]!r}", _set(body, path, pick(rnd, SPECIALS)),
                    ascii_only=draw(st.booleans()))
    if op == "nan":
        return Case(f"{label} {path[-1]!r}", _set(body, path, pick(rnd, NAN_TOKENS)),
                    codes=frozenset({"invalid_json"}))
    if op == "deep":
        return Case(f"{label} {path[-1]!r}", _set(body, path, pick(rnd, DEEP)),
                    codes=frozenset({"invalid_json", "invalid_argument"}))
    if op == "unknown":
        dicts = [()] + [p for p in paths if isinstance(_value_at(body, p), dict)]
        where = dicts[rnd.randrange(len(dicts))]
        key = draw(st.one_of(st.sampled_from(FIELD_NAMES[10:]), any_text))
        target = _value_at(body, where)
        if key in target or key in ("id", "ts"):  # ts: of the envelope (signed commands)
            key = f"{key}_x"
        doc = _set(body, (*where, key), draw(st.one_of(json_value, junk)))
        # an unknown field in the command itself: invalid_argument (docs/protocol.md)
        top = where == () and body.get("cmd") in COMMANDS
        return Case(f"{label} field in {'/'.join(map(str, where)) or 'command'}", doc,
                    codes=frozenset({"invalid_argument"}) if top else None)
    if op in ("garbage", "truncate"):
        frac = draw(st.floats(0, 1, exclude_max=True))
        junk_bytes = draw(st.one_of(st.sampled_from(GARBAGE), st.binary(min_size=1, max_size=6)))
        return Case(f"{label}", body, bytes_op=(op, frac, junk_bytes))
    if op == "id":
        if chance(rnd, 25):
            return Case(f"{label} (no id)", body, id_value="none")
        return Case(f"{label} (bad id)", body, id_value=pick(rnd, BAD_IDS))
    pad = "x" * (MAX_BYTES + draw(st.integers(1, 2000)))
    return Case(f"{label}", {**body, "pad": pad}, codes=frozenset({"too_large"}))


@st.composite
def valid_case(draw: Any, rnd: random.Random) -> Case:
    body, kind = draw(valid_command(rnd))
    allowed = {"stop": {"unknown_job"}, "set": {"unknown_job", "invalid_argument"},
               "delete_instance": {"unknown_instance"}}.get(kind, set())
    if body["cmd"] in ("run", "call"):
        allowed = {"limit_exceeded"}  # admission, when many jobs wait
    if kind == "realtime":
        allowed.add("runtime_error")  # policy "fail": a tick late on a busy machine
    suffix = ""
    if chance(rnd, 10):
        suffix = "." + draw(st.text(ID_CHARS, min_size=1, max_size=100))
    twin = None
    if chance(rnd, 4):  # the same id again: duplicate_id
        twin = draw(valid_command(rnd))[0]
    return Case(f"valid {kind}", body, expect_ok=True, allowed=frozenset(allowed), twin=twin,
                id_suffix=suffix)


@st.composite
def special_case(draw: Any, rnd: random.Random) -> Case:
    """A valid command with an odd value (huge number, NaN, deep nesting, unicode) somewhere."""
    body, kind = draw(valid_command(rnd))
    paths = [p for p in _paths(body) if not isinstance(_value_at(body, p), Ref)]
    path = paths[rnd.randrange(len(paths))]
    value = draw(st.one_of(st.sampled_from(HUGE), odd_text, st.sampled_from(DEEP),
                           st.sampled_from(NAN_TOKENS)))
    codes = None
    if isinstance(value, Raw) and value in NAN_TOKENS:
        codes = frozenset({"invalid_json"})
    elif isinstance(value, Raw) and value in DEEP:
        codes = frozenset({"invalid_json", "invalid_argument"})
    return Case(f"special {kind}: {type_of(value)} at {path[-1]!r}", _set(body, path, value),
                ascii_only=draw(st.booleans()), codes=codes)


@st.composite
def huge_span_case(draw: Any, rnd: random.Random) -> Case:
    """A valid dynamic run whose time grid is far over the 10 000 000-row limit."""
    body = draw(dynamic_run(rnd))
    time_ = pick(rnd, [{"start": 0, "stop": 1e308, "step": 1},
                         {"start": 0, "stop": 1e12, "step": 0.001},
                         {"start": -1e308, "stop": 1e308, "step": 1},
                         {"start": 0, "stop": 1, "step": 5e-324},
                         {"start": 0, "stop": 10, "step": 1e-300},
                         {"start": 0, "stop": 10**400, "step": 1}])
    body["scenario"]["time"] = time_
    body["scenario"].pop("post", None)
    codes = {"limit_exceeded"}
    if isinstance(time_["stop"], int) and time_["stop"] > 1e308:
        codes.add("invalid_argument")  # 10**400 is no finite number
    return Case(f"dynamic run over the row limit: {time_}", body, codes=frozenset(codes))


def boundary_case(rnd: random.Random) -> Case:
    """A ping padded to exactly the size limit, or one byte over."""
    over = rnd.randrange(2)
    return Case(f"padded to the limit {'+ 1' if over else 'exactly'}", {"cmd": "ping"},
                bytes_op=("pad_to", float(MAX_BYTES + over), b""),
                codes=frozenset({"too_large" if over else "invalid_argument"}))


@st.composite
def a_case(draw: Any, slot: int) -> Case:
    # (salted by the slot in the example: hypothesis repeats seeds such as 0 often)
    rnd = random.Random(draw(st.integers(0, 2**64 - 1)) ^ slot * 0x9E3779B97F4A7C15)
    roll = rnd.randrange(100)
    if roll < 25:
        return draw(valid_case(rnd))
    if roll < 55:
        return draw(mutated(rnd))
    if roll < 70:
        return Case("random command", draw(random_command(rnd)), ascii_only=draw(st.booleans()))
    if roll < 76:
        body, kind = draw(valid_command(rnd))
        if chance(rnd, 20):
            return Case(f"edge id {kind}", body, id_value=pick(rnd, EDGE_IDS) + "@UNIQ@",
                        expect_ok=False)
        return Case(f"bad id {kind}", body, id_value=pick(rnd, BAD_IDS + ["none"] * 4))
    if roll < 83:
        return Case("raw payload", raw=draw(st.one_of(st.sampled_from(RAW_PAYLOADS),
                                                      st.binary(max_size=40))))
    if roll < 95:
        return draw(special_case(rnd))
    if roll < 98:
        return draw(huge_span_case(rnd))
    return boundary_case(rnd)


def edge_cases() -> list[Case]:
    """The kinds the issue names, each at least once, before hypothesis draws the rest."""
    ping = {"cmd": "ping"}
    run = pump_run("x")
    run.pop("id")
    dyn = {"cmd": "run", "scenario": {
        "mode": "dynamic", "elements": {"tank": {"model": "Tank", "instance": "T-1",
                                                 "initial": {"level": 2.0}}},
        "outputs": ["tank.level"], "time": {"start": 0, "stop": 10, "step": 1}}}
    cases = [Case("valid ping", ping, expect_ok=True),
             Case("valid run", run, expect_ok=True),
             Case("valid dynamic", dyn, expect_ok=True)]
    for value in [*HUGE, *NAN_TOKENS, *DEEP, *ODD_TEXT]:
        codes = (frozenset({"invalid_json"}) if value in NAN_TOKENS
                 else frozenset({"invalid_json", "invalid_argument"}) if value in DEEP
                 else None)
        cases.append(Case(f"edge: {type_of(value)} as a speed",
                          _set(run, ("scenario", "inputs", "pump.speed"), value), codes=codes))
        cases.append(Case(f"edge: {type_of(value)} as a field", {**ping, "x": value},
                          codes=codes or frozenset({"invalid_argument"}),
                          ascii_only=not isinstance(value, str)))
    for bad_id in BAD_IDS:
        cases.append(Case("edge: bad id", ping, id_value=bad_id))
    for raw in RAW_PAYLOADS:
        cases.append(Case("edge: raw payload", raw=raw))
    cases += [Case("edge: padded exactly to the limit", ping,
                   bytes_op=("pad_to", float(MAX_BYTES), b""),
                   codes=frozenset({"invalid_argument"})),
              Case("edge: padded one byte over the limit", ping,
                   bytes_op=("pad_to", float(MAX_BYTES + 1), b""),
                   codes=frozenset({"too_large"}))]
    for stop, step in [(1e308, 1), (1, 5e-324), (10**400, 1)]:
        cases.append(Case("edge: huge time span", _set(dyn, ("scenario", "time"), {
            "start": -1e308 if stop == 1e308 else 0, "stop": stop, "step": step}),
            codes=frozenset({"limit_exceeded", "invalid_argument"})))
    cases.append(Case("edge: instance id ending in a newline", {
        "cmd": "put_instance", "instance": {"id": "FZ-nl\n", "model": "Tank", "params": {
            "area": 1.0, "outlet_area": 0.01, "height": 3.0}}},
        codes=frozenset({"invalid_argument"})))
    cases.append(Case("edge: instance model not a string", {
        "cmd": "put_instance", "instance": {"id": "FZ-model", "model": [1], "params": {}}},
        codes=frozenset({"invalid_argument"})))
    cases.append(Case("edge: template arg 10**400", {
        "cmd": "run", "template": "tank_draining", "args": {"stop": 10**400}},
        codes=frozenset({"invalid_argument"})))
    for cmd in COMMANDS:
        cases.append(Case(f"edge: {cmd} without its fields", {"cmd": cmd}))
    return cases
