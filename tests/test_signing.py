"""Signed commands (ingress/signing.py): HMAC-SHA256 of the exact payload bytes, in the
MQTT 5 user property ``signature`` or as ``<hex> <json>``, with a fresh ``ts``.

Unit tests of the module, the settings, the client's helper, and end to end against a
real stack with ``TWIN_COMMAND_SECRET`` set: signed works (both forms), unsigned, badly
signed and stale commands are refused with ``not_permitted`` and cost nothing (no job,
no claim of the id), and a replay is a ``duplicate_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.settings import SettingsError, load_settings
from ingress.errors import SignatureRefused
from ingress.signing import (
    check_ts,
    sign,
    sign_command,
    signed_payload,
    split_signature,
    verify,
)
from tests.conftest import new_id, orchestrator_of, running_stack, stack_env
from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

SECRET = b"test-secret-0123456789abcdef"
PAYLOAD = b'{"id": "job-1", "cmd": "ping", "ts": 1700000000}'


# ----- the module ---------------------------------------------------------------------

def test_the_signature_is_hmac_sha256_hex_of_the_exact_bytes() -> None:
    expected = hmac.new(SECRET, PAYLOAD, hashlib.sha256).hexdigest()
    assert sign(SECRET, PAYLOAD) == expected and len(expected) == 64
    assert verify(SECRET, PAYLOAD, expected) == PAYLOAD
    assert verify(SECRET, PAYLOAD, expected.upper()) == PAYLOAD  # hex in either case
    # one byte more (a space the signer did not send) is another message
    with pytest.raises(SignatureRefused) as info:
        verify(SECRET, PAYLOAD + b" ", expected)
    assert info.value.code == "not_permitted" and info.value.path == "signature"
    assert "does not match" in info.value.message


def test_the_prefix_form_for_mqtt_311() -> None:
    signed = signed_payload(SECRET, PAYLOAD)
    assert signed == sign(SECRET, PAYLOAD).encode() + b" " + PAYLOAD
    assert split_signature(signed) == (sign(SECRET, PAYLOAD), PAYLOAD)
    assert split_signature(PAYLOAD) == (None, PAYLOAD)
    assert verify(SECRET, signed, None) == PAYLOAD
    tampered = signed.replace(b"ping", b"pong")
    with pytest.raises(SignatureRefused, match="does not match"):
        verify(SECRET, tampered, None)
    with pytest.raises(SignatureRefused, match="does not match"):
        verify(b"another-secret-0123456789", signed, None)


@pytest.mark.parametrize(
    ("payload", "prop", "words"),
    [
        (PAYLOAD, None, "carries no signature"),
        (PAYLOAD, "abc", "64 hex digits"),
        (PAYLOAD, "z" * 64, "64 hex digits"),
        (PAYLOAD, "0" * 64, "does not match"),
        (signed_payload(SECRET, PAYLOAD), sign(SECRET, PAYLOAD), "signed twice"),
        (b"0" * 64 + b"{}", None, "carries no signature"),  # no space: not the prefix form
    ],
)
def test_unsigned_or_badly_signed_is_refused_with_a_message(
        payload: bytes, prop: str | None, words: str) -> None:
    with pytest.raises(SignatureRefused) as info:
        verify(SECRET, payload, prop)
    exc = info.value
    assert (exc.code, exc.path, exc.verified) == ("not_permitted", "signature", False)
    assert words in exc.message
    if words == "carries no signature":  # says how to sign
        assert "'signature'" in exc.message and "<64 hex digits> <command JSON>" in exc.message


def test_without_a_secret_signatures_are_ignored_and_the_prefix_stripped() -> None:
    assert verify(None, PAYLOAD, None) == PAYLOAD
    assert verify(None, PAYLOAD, "whatever") == PAYLOAD
    assert verify(None, signed_payload(SECRET, PAYLOAD), None) == PAYLOAD


def test_ts_within_the_window() -> None:
    now = 1_800_000_000.0
    assert check_ts(now - 10, max_age=300, now=now) == now - 10
    assert check_ts(int(now) + 5, max_age=300, now=now) == now + 5  # a clock a bit ahead
    assert check_ts("2027-01-15T08:00:00Z", max_age=300, now=now) == now
    assert check_ts("2027-01-15T09:00:00+01:00", max_age=300, now=now) == now
    assert check_ts("2027-01-15T08:00:29.5Z", max_age=300, now=now) == now + 29.5
    assert check_ts(now - 299.5, max_age=300, now=now) == now - 299.5


def test_a_ts_ahead_of_the_clock_by_more_than_the_skew_is_refused() -> None:
    """A command dated in the future would stay fresh longer than the window, and so
    outlive the duplicate guard's memory of its id (replayed, it would run twice)."""
    now = 1_800_000_000.0
    for ahead in (31, 299.5):
        with pytest.raises(SignatureRefused) as info:
            check_ts(now + ahead, max_age=300, now=now)
        assert "in the future" in info.value.message and "30 s ahead" in info.value.message


@pytest.mark.parametrize(
    ("ts", "words"),
    [
        (None, "needs 'ts'"),
        ("yesterday", "ISO 8601"),
        ("2027-01-15T08:00:00", "ISO 8601"),  # no time zone: ambiguous
        (True, "ISO 8601"),
        ([1], "ISO 8601"),
        (1_800_000_000 - 301, "301 s old"),
        ("2027-01-15T07:50:00Z", "600 s old"),
        (1_800_000_000 + 3600, "3600 s in the future"),
    ],
)
def test_a_missing_unreadable_or_stale_ts_is_refused(ts: Any, words: str) -> None:
    with pytest.raises(SignatureRefused) as info:
        check_ts(ts, max_age=300, now=1_800_000_000.0, request_id="job-1")
    exc = info.value
    assert (exc.code, exc.path, exc.request_id, exc.verified) == (
        "not_permitted", "ts", "job-1", True)
    assert words in exc.message
    if "old" in words:
        assert "TWIN_SIGNATURE_MAX_AGE" in exc.message and "new id" in exc.message


def test_sign_command_adds_ts_and_signs_the_json_it_sends() -> None:
    out = sign_command(SECRET, {"id": "a", "cmd": "ping"}, now=1_800_000_000.25)
    sig, body = split_signature(out)
    assert sig == sign(SECRET, body)
    assert json.loads(body) == {"id": "a", "cmd": "ping", "ts": 1_800_000_000.25}
    keep = sign_command(SECRET, {"id": "a", "cmd": "ping", "ts": "2027-01-15T08:00:00Z"})
    assert json.loads(split_signature(keep)[1])["ts"] == "2027-01-15T08:00:00Z"


# ----- settings -----------------------------------------------------------------------

def test_the_secret_from_the_environment_or_a_file(tmp_path: Any) -> None:
    urls = {"TWIN_MQTT_URL": "mqtt://10.0.0.5:1883", "TWIN_REDIS_URL": "redis://10.0.0.5/0"}
    s = load_settings({**urls, "TWIN_COMMAND_SECRET": "  s3cret-with-16-chars\n"})
    assert s.command_secret == b"s3cret-with-16-chars"
    assert "s3cret" not in repr(s)
    assert load_settings(s.to_env()) == s
    path = tmp_path / "secret"
    path.write_text("from-a-file-0123456789\n")
    f = load_settings({**urls, "TWIN_COMMAND_SECRET_FILE": str(path)})
    assert f.command_secret == b"from-a-file-0123456789"
    assert load_settings(f.to_env()) == f
    assert "from-a-file" not in json.dumps(f.to_env())  # the path is passed on, not the secret
    assert load_settings({}).command_secret is None


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TWIN_COMMAND_SECRET": "short"}, "at least 16"),
        ({"TWIN_COMMAND_SECRET_FILE": "/nonexistent/secret"}, "cannot be read"),
        ({"TWIN_COMMAND_SECRET": "x" * 20, "TWIN_COMMAND_SECRET_FILE": "/x"}, "both set"),
        ({"TWIN_COMMAND_SECRET": "x" * 20, "TWIN_SIGNATURE_MAX_AGE": "600",
          "TWIN_DUPLICATE_TTL": "300"}, "TWIN_DUPLICATE_TTL"),
        ({"TWIN_SIGNATURE_MAX_AGE": "0"}, "between"),
    ],
)
def test_a_wrong_signing_setting_is_one_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert words in str(info.value) and "\n" not in str(info.value)


# ----- end to end ---------------------------------------------------------------------

pytest_e2e = pytest.mark.integration


@pytest.fixture(scope="module")
def signed_stack(redis_server: Any, mqtt_server: Any,
                 tmp_path_factory: Any) -> Iterator[Stack]:
    env = stack_env(redis_server, mqtt_server, TWIN_COMMAND_SECRET=SECRET.decode(),
                    TWIN_SIGNATURE_MAX_AGE="60")
    with running_stack(env, tmp_path_factory.mktemp("signed-logs"), workers=1) as stack:
        yield stack


@pytest.fixture()
def sorch(signed_stack: Stack) -> Iterator[Orchestrator]:
    with orchestrator_of(signed_stack) as o:
        yield o


def _props(signature: str | None = None, response_topic: str | None = None) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    if signature is not None:
        props.UserProperty = ("signature", signature)
    if response_topic is not None:
        props.ResponseTopic = response_topic
        props.CorrelationData = b"c"
    return props


def _body(command: dict[str, Any], ts: Any = "now") -> bytes:
    body = dict(command)
    if ts is not None:
        body["ts"] = time.time() if ts == "now" else ts
    return json.dumps(body).encode()


RUN = {"cmd": "run", "scenario": {
    "elements": {"p": {"model": "CentrifugalPump", "instance": "P-101"}},
    "inputs": {"p.speed": 1450, "p.flow": 0.01}}}


@pytest_e2e
def test_signed_commands_work_in_both_forms(sorch: Orchestrator, signed_stack: Stack) -> None:
    rid = new_id("sig5")
    payload = _body({"id": rid, **RUN})
    sorch.send(payload, properties=_props(sign(SECRET, payload)))
    replies = sorch.wait_final(rid, 30)
    assert [r["type"] for r in replies] == ["ack", "result"]
    rid = new_id("sig311")
    sorch.send(signed_payload(SECRET, _body({"id": rid, "cmd": "ping"})))
    assert [r["type"] for r in sorch.wait_final(rid)] == ["pong"]
    # the retained status and a real MQTT 3.1.1 client
    s = signed_stack.settings
    old = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id,
                       protocol=mqtt.MQTTv311)
    try:
        rid = new_id("v311")
        old.send(signed_payload(SECRET, _body({"id": rid, "cmd": "ping",
                                               "ts": "2000-01-01T00:00:00Z"}, ts=None)))
        (stale,) = old.wait_final(rid)
        assert (stale["code"], stale["path"]) == ("not_permitted", "ts")
        rid = new_id("v311")
        old.send(sign_command(SECRET, {"id": rid, "cmd": "describe"}))
        assert old.wait_final(rid)[0]["type"] == "description"
    finally:
        old.close()


@pytest_e2e
def test_unsigned_badly_signed_and_stale_commands_are_refused_and_cost_nothing(
        sorch: Orchestrator, signed_stack: Stack) -> None:
    cases = {
        "unsigned": lambda rid: (_body({"id": rid, **RUN}), None),
        "bad": lambda rid: (_body({"id": rid, **RUN}), "0" * 64),
        "other-secret": lambda rid: (_body({"id": rid, **RUN}),
                                     sign(b"not-the-secret-0123", _body({"id": rid, **RUN}))),
        "stale": lambda rid: (p := _body({"id": rid, **RUN}, ts=time.time() - 120),
                              sign(SECRET, p)),
        "no-ts": lambda rid: (p := _body({"id": rid, **RUN}, ts=None), sign(SECRET, p)),
    }
    for name, make in cases.items():
        rid = new_id(name)
        payload, signature = make(rid)
        # a response topic on an unverified command is not used: the refusal goes to
        # the controller's own reply topic of the id
        elsewhere = f"{signed_stack.settings.mqtt_prefix}/elsewhere/{rid}"
        sorch.send(payload, properties=_props(signature, response_topic=elsewhere))
        verified = name in ("stale", "no-ts")
        topic = elsewhere if verified else None
        (reply,) = sorch.wait_final(rid, topic=topic)
        assert (reply["type"], reply["code"]) == ("error", "not_permitted"), (name, reply)
        assert reply["path"] == ("ts" if verified else "signature"), (name, reply)
        assert reply["message"], name
        if not verified:
            assert not sorch.replies(rid, topic=elsewhere), name
        # nothing was queued, and the id was not claimed: signed, it runs
        good = _body({"id": rid, **RUN})
        sorch.send(good, properties=_props(sign(SECRET, good), response_topic=topic))
        replies = sorch.wait_final(rid, 30, topic=topic, count=2)
        assert [r["type"] for r in replies] == ["error", "ack", "result"], (name, replies)
        assert [r["seq"] for r in replies] == [0, 1, 2]


@pytest_e2e
def test_a_replayed_signed_command_is_a_duplicate(sorch: Orchestrator) -> None:
    rid = new_id("replay")
    payload = _body({"id": rid, "cmd": "ping"})
    sorch.send(payload, properties=_props(sign(SECRET, payload)))
    sorch.wait_final(rid)
    sorch.send(payload, properties=_props(sign(SECRET, payload)))  # captured and sent again
    replies = sorch.wait_final(rid, count=2)
    assert [r["type"] for r in replies] == ["pong", "error"]
    assert replies[1]["code"] == "duplicate_id"


@pytest_e2e
def test_an_unsigned_command_without_an_id_is_refused_on_the_errors_topic(
        sorch: Orchestrator) -> None:
    mark = sorch.mark()
    sorch.send(b'{"cmd": "ping"}')
    (err,) = sorch.errors_topic(mark)
    assert (err["code"], err["path"]) == ("not_permitted", "signature")


@pytest_e2e
def test_twinctl_send_signs_with_the_secret(signed_stack: Stack) -> None:
    from twinctl.client import send_command

    exchange = send_command(signed_stack.settings, {"cmd": "ping"}, timeout=20)
    assert exchange.final is not None and exchange.final["type"] == "pong", exchange.replies
