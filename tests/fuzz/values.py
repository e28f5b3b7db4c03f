"""The special values of the fuzz test, and JSON with tokens json.dumps cannot write.

Huge numbers, NaN/Infinity tokens, deep nesting, odd unicode, values of every type,
field names and ``cmd`` values near the real ones, ids that are not usable, garbage
bytes and raw payloads.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fuzz.protocol import COMMANDS, ID_CHARS


class Raw:
    """A JSON token written as it is: ``NaN``, a 400-digit integer, deep nesting…"""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"

    def __deepcopy__(self, memo: Any) -> Raw:
        return self


def dumps(doc: Any, *, ascii_only: bool = True) -> bytes:
    """``doc`` as JSON bytes; :class:`Raw` tokens go in verbatim. Without ``ascii_only``
    the text is raw UTF-8 (a lone surrogate then gives bytes that are not UTF-8)."""
    raws: list[str] = []

    def walk(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    text = json.dumps(walk(doc), ensure_ascii=ascii_only)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), raw, 1)
    return text.encode("utf-8", "surrogatepass")


def deep(n: int, open_: str = "[", close: str = "]") -> Raw:
    return Raw(open_ * n + close * n)


NAN_TOKENS = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("-NaN")]
HUGE = [1e308, -1e308, 10**400, -(10**400), Raw("1" + "0" * 400), Raw("1e999"), Raw("-1e999"),
        Raw("1E400"), 2**63, -(2**63) - 1, 2**1024, 1.7976931348623157e308]
ODD_TEXT = ["\u202eevil\u202c", "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd",
            "\U0001f600\U0001f680", "a\x00b", "\x00", "\udc80", "\ud800", "x\udfffy", "\ud83d",
            "\ufeff", "e\u0301", "\U0001d518\U0001d52b", "\uffff", "\U0010ffff", "\u2028",
            "a\nb", "'", '"', "\\", "%s%n", "${x}", " ", "", "pump.speed\x00",
            "CentrifugalPump\u200b", "\u0130", "\u00df" * 50]
DEEP = [deep(100), deep(500), deep(900), deep(999), deep(1000), deep(2000), deep(10_000),
        Raw('{"a":' * 3000 + "1" + "}" * 3000), Raw('[{"a":' * 600 + "1" + "}]" * 600)]
SPECIALS = [*HUGE, *ODD_TEXT, *DEEP, 0, -1, -0.0, 0.5, True, False, None, "", "x", [], {},
            [1, 2], {"a": 1}, "1e308", "NaN", [None], [[]], {"": None}]
"""Values put in place of others. No tiny positive numbers: a time constant of
5e-324 is a valid input that keeps a worker busy until TWIN_SOFT_TIME_LIMIT
(600 s: answered `timeout`, but the worker is gone for that long), which is not
what this test is after."""
TYPE_SAMPLES = [None, True, False, 0, -1, 1.5, "", "x", [], [1], {}, {"a": 1}]


def type_of(v: Any) -> str:
    if isinstance(v, Raw):
        return "raw"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


FIELD_NAMES = ["scenario", "template", "args", "function", "instance", "instance_id", "target",
               "inputs", "cmd", "id", "scenario ", "Scenario", "scenaro", "arg", "input",
               "targets", "functions", "instanceId", "pad", "\u0441md", "__proto__"]
CMD_VALUES = [*COMMANDS, *COMMANDS, "pnig", "RUN", "Ping", "run ", "", "\u0440ing", "stop\x00",
              "help", "shutdown", "exec", None, 1, True, [], {}, ["ping"], 1e308]


BAD_IDS = [None, 1, 0, -1, 1.5, 1e308, 10**400, True, False, [], ["a"], {}, {"id": "a"}, "",
           "a" * 129, "has space", "a/b", "a#", "a+", "a/+/#", "\u00e9t\u00e9", "\nabc",
           "abc\r", "a\x00b", "\udc80", "\U0001f600", "a\tb", "'a'", "id\u202e", "../x",
           "a,b", "{}", "a*b", NAN_TOKENS[0], "$SYS", "%", "a\n\n", "a\nb"]
"""Ids that are not usable. Not here: an id ending in one newline, which mutes the
controller (see test_an_id_ending_in_a_newline_is_refused_and_mutes_nothing)."""
EDGE_IDS = ["-", ".", "..", ":", "_", "a" * 128, ID_CHARS[:64] * 2, "0", "::::", "a.b:c-d_e"]
GARBAGE = [b"\x00", b"\xff", b"\xfe\xff", b'"', b"}", b"{", b",", b"\\", b"\xc3", b"\xed\xa0\x80",
           b"\xf4\x90\x80\x80", b"NaN", b"\n", b"]", b"[" * 50, b"\xc0\xaf", b"/*", b"'"]
RAW_PAYLOADS = [
    b"", b"null", b"0", b"-0", b"[]", b"{}", b'"ping"', b"true", b" ", b"\n", b"\x00" * 16,
    b"\xff\xfe", b"[" * 10_000, b"{" * 10_000, b'{"a":' * 5000, b"[" * 10_000 + b"]" * 10_000,
    b'{"id": "@ID@", "cmd": "ping",,}', b'{"id": "@ID@", "cmd": "ping"', b'{"id": "@ID@"}',
    b'{"id": "@ID@", "cmd": "ping", "x": NaN}', b'{"id": "@ID@", "cmd": "ping", "x": Infinity}',
    b'{"id": "@ID@", "cmd": "ping", "x": -Infinity}', b'{"id":"@ID@","cmd":"ping"}{"id":"x"}',
    b'{"id": "@ID@", "cmd": "ping"} trailing', b"\xef\xbb\xbf" + b'{"id": "@ID@", "cmd": "ping"}',
    '{"id": "@ID@", "cmd": "ping"}'.encode("utf-16"), b'{"id": \'@ID@\', "cmd": "ping"}',
    b'{id: "@ID@", cmd: "ping"}', b'{"id": "@ID@", "cmd": "ping", /* c */ "x": 1}',
    b'{"id": "@ID@", "cmd": "ping", "x": 0x10}', b'{"id": "@ID@", "cmd": "ping", "x": 01}',
    b'{"id": "@ID@", "cmd": "ping", "x": .5}', b'{"id": "@ID@", "cmd": "ping", "x": "\\ud800"}',
    b'{"id": "@ID@", "cmd": "ping", "x": "\\u00"}', b'{"id": "@ID@", "cmd": "ping", "x": "\x01"}',
    b'{"id": "@ID@", "cmd": "ping", "id": "@ID@"}', b'{"id": "@ID@", "cmd": "p\\u0069ng"}',
    b'{"\\u0069d": "@ID@", "cmd": "ping"}', b'{"id": "@ID@", "cmd": "ping", "x": 1e999}',
    b'{"id": "@ID@", "cmd": "ping", "x": ' + b"9" * 5000 + b"}",
    b'{"id": "@ID@", "cmd": "run", "scenario": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"id": "@ID@", "cmd": "ping", "x": "' + b"\xed\xb2\x80" + b'"}',
    b'{"id" : "@ID@" , "cmd" : "describe" , "nested" : {"id": "other"}}',
    b'\t{"id":"@ID@","cmd":"jobs"}\r\n', b'{"cmd": "ping", "id": "@ID@"}',
    b'{"cmd": "ping", "x": "' + b"y" * 5000 + b'", "id": "@ID@"}',
    b"ab" * 32 + b' {"id": "@ID@", "cmd": "ping"}', b"ab" * 31 + b' {"id": "@ID@", "cmd": "ping"}',
    b'{"id": "@ID@", "cmd": "ping", "ts": "2026-11-29T14:00:00Z"}',
    b'{"id": "@ID@", "cmd": "ping", "ts": [[[]]]}',
]
