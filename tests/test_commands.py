"""The ingress's checks of a command envelope, without any broker (plain objects)."""

from __future__ import annotations

import json

import pytest

from ingress.commands import Command, check_fields, parse_command, sniff_id
from ingress.errors import CommandError

MAX = 1 << 20


def err(payload: bytes | str, max_bytes: int = MAX) -> CommandError:
    raw = payload.encode() if isinstance(payload, str) else payload
    with pytest.raises(CommandError) as info:
        parse_command(raw, max_bytes=max_bytes)
    return info.value


def fields_err(command: dict) -> tuple[str, str | None, str]:
    parsed = parse_command(json.dumps(command).encode(), max_bytes=MAX)
    with pytest.raises(Exception) as info:
        check_fields(parsed)
    e = info.value
    return e.code, e.path, e.message  # type: ignore[attr-defined]


def test_a_good_command_parses() -> None:
    cmd = parse_command(b'{"id": "job-42", "cmd": "ping"}', max_bytes=MAX)
    assert cmd == Command(id="job-42", cmd="ping", body={})
    check_fields(cmd)


def test_too_large_names_the_limit_and_keeps_a_readable_id() -> None:
    e = err('{"id": "big-1", "cmd": "ping", "pad": "' + "x" * 200 + '"}', max_bytes=100)
    assert e.code == "too_large" and e.request_id == "big-1"
    assert "100" in e.message


@pytest.mark.parametrize("payload", [b"\xff", b"{", b'{"a": NaN}', b'{"a": -Infinity}',
                                     b"[" * 50_000])
def test_invalid_json(payload: bytes) -> None:
    assert err(payload).code == "invalid_json"


@pytest.mark.parametrize(
    ("payload", "path", "has_id"),
    [
        ('"ping"', None, False),
        ('{"cmd": "ping"}', "id", False),
        ('{"id": "", "cmd": "ping"}', "id", False),
        ('{"id": "a b", "cmd": "ping"}', "id", False),
        ('{"id": 7, "cmd": "ping"}', "id", False),
        ('{"id": "' + "a" * 129 + '", "cmd": "ping"}', "id", False),
        ('{"id": "ok", "cmd": "pnig"}', "cmd", True),
        ('{"id": "ok", "cmd": 3}', "cmd", True),
        ('{"id": "ok"}', "cmd", True),
    ],
)
def test_invalid_command(payload: str, path: str | None, has_id: bool) -> None:
    e = err(payload)
    assert e.code == "invalid_command"
    assert e.path == path
    assert (e.request_id == "ok") is has_id


def test_unknown_cmd_suggests_the_closest() -> None:
    assert "did you mean 'ping'" in err('{"id": "x", "cmd": "pnig"}').message


def test_stop_set_and_jobs_fields() -> None:
    assert fields_err({"id": "x", "cmd": "stop"})[:2] == ("missing_argument", "target")
    assert fields_err({"id": "x", "cmd": "stop", "target": "a b"})[:2] == (
        "invalid_argument", "target")
    assert fields_err({"id": "x", "cmd": "set", "target": "j"})[:2] == (
        "missing_argument", "inputs")
    assert fields_err({"id": "x", "cmd": "set", "target": "j", "inputs": {}})[:2] == (
        "invalid_argument", "inputs")
    assert fields_err({"id": "x", "cmd": "set", "target": "j", "inputs": [1]})[:2] == (
        "invalid_argument", "inputs")
    assert fields_err({"id": "x", "cmd": "jobs", "all": True})[:2] == (
        "invalid_argument", "all")
    parsed = parse_command(b'{"id": "x", "cmd": "set", "target": "j", "inputs": {"a.b": 1}}',
                           max_bytes=MAX)
    check_fields(parsed)
    assert parsed.body == {"target": "j", "inputs": {"a.b": 1}}


def test_run_fields() -> None:
    assert fields_err({"id": "x", "cmd": "run"})[:2] == ("invalid_command", "scenario")
    assert fields_err({"id": "x", "cmd": "run", "scenario": {}, "template": "t"})[:2] == (
        "invalid_command", "scenario")
    code, path, message = fields_err({"id": "x", "cmd": "run", "scenrio": {}})
    assert (code, path) == ("invalid_argument", "scenrio")
    assert "did you mean 'scenario'" in message
    assert fields_err({"id": "x", "cmd": "run", "scenario": []})[:2] == (
        "invalid_argument", "scenario")
    assert fields_err({"id": "x", "cmd": "ping", "extra": 1})[:2] == ("invalid_argument", "extra")


def test_sniff_id_only_reads_a_well_formed_id() -> None:
    assert sniff_id(b'{"cmd":"x","id" : "abc-1"') == "abc-1"
    assert sniff_id(b'{"id": "has space"}') is None


@pytest.mark.parametrize("payload", [
    '{"id": "abc\\n", "cmd": "ping"}',  # `$` would match before a final newline
    '{"id": "x", "cmd": "ping\\n"}',
])
def test_a_trailing_newline_is_not_part_of_a_valid_id_or_cmd(payload: str) -> None:
    assert err(payload).code == "invalid_command"


def test_integers_beyond_a_double_and_lone_surrogates_are_invalid_json() -> None:
    e = err('{"id": "x", "cmd": "ping", "a": 1' + "0" * 400 + "}")
    assert e.code == "invalid_json" and "401 digits" in e.message and e.request_id == "x"
    e = err('{"id": "x", "cmd": "ping", "\\udc80": 1}')
    assert e.code == "invalid_json" and "surrogate" in e.message and e.request_id == "x"
    ok = parse_command(b'{"id": "x", "cmd": "ping", "a": 1' + b"0" * 300 + b"}",
                       max_bytes=MAX)
    assert ok.body["a"] == 10 ** 300
    paired = parse_command(b'{"id": "x", "cmd": "ping", "s": "\\ud83d\\ude00"}',
                           max_bytes=MAX)
    assert paired.body["s"] == "\U0001F600"


def test_ttl_is_read_from_the_envelope_and_a_late_command_expires() -> None:
    """A command that waited in the controller's inbox past its `ttl` must not act."""
    from ingress.commands import parse_command
    from ingress.handler import check_expired
    from modellib.errors import Expired

    command = parse_command(b'{"id": "a", "cmd": "stop", "target": "x", "ttl": 2.5}',
                            max_bytes=1000)
    assert command.ttl == 2.5 and "ttl" not in command.body
    command.received = 1000.0
    check_expired(command, now=1002.0)  # within its ttl
    with pytest.raises(Expired) as info:
        check_expired(command, now=1003.0)
    assert info.value.path == "ttl" and "waited 3.0 s" in info.value.message
    assert parse_command(b'{"id": "b", "cmd": "ping"}', max_bytes=1000).ttl is None


def test_the_fast_json_reading_is_the_standard_librarys_or_steps_aside() -> None:
    """orjson reads a command only where it reads it as ``json.loads`` does: floats of
    every kind alike; integers beyond 64 bits stay Python ints (the standard way);
    deep nesting is refused as before."""
    import random
    import struct
    from typing import Any

    from ingress.commands import _UNREAD, _read_fast
    from ingress.errors import InvalidJson

    rng = random.Random(7)
    values: list[Any] = []
    for _ in range(2000):
        x = struct.unpack("d", rng.randbytes(8))[0]
        if x == x and abs(x) != float("inf"):
            values += [x, x * 1e-300, rng.random(), rng.randint(-10**17, 10**17)]
    payload = json.dumps({"id": "f", "cmd": "ping", "v": values}).encode()
    fast = _read_fast(payload)
    assert fast is not _UNREAD and fast == json.loads(payload)
    assert [type(v) for v in fast["v"]] == [type(v) for v in values]
    big = b'{"id": "b", "cmd": "ping", "n": 123456789012345678901234567890}'
    assert _read_fast(big) is _UNREAD
    assert parse_command(big, max_bytes=10_000).body["n"] == 123456789012345678901234567890
    deep = b'{"id": "d", "cmd": "ping", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert _read_fast(deep) is _UNREAD
    with pytest.raises(InvalidJson, match="nested too deeply"):
        parse_command(deep, max_bytes=100_000)
    for bad in (b'{"id": "n", "cmd": "ping", "x": NaN}', b'{"id": "s", "x": "\\ud800"}',
                b'\xff{"id": "u"}'):
        assert _read_fast(bad) is _UNREAD  # the standard way says what is wrong
