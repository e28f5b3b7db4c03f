"""Signed commands (ingress/signing.py): HMAC-SHA256 of the command topic, the response
topic and the exact payload bytes, in the MQTT 5 user property ``signature`` or as
``[<key>:]<hex> <json>``, with a fresh ``ts``.

Unit tests of the module (with the test vector of docs/protocol.md), the settings,
the client's helper, and end to end against a real stack with a secret and named
keys: signed works (both forms), unsigned, badly signed, redirected, re-targeted and
stale commands are refused with ``not_permitted`` and cost nothing (no job, no claim
of the id; refusals of unauthentic bytes only on the ``errors`` topic), a replay is a
``duplicate_id``, and a named key is the orchestrator's identity: its jobs are
stopped only by it or an admin, instances changed only by an admin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
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
    Keys,
    check_ts,
    sign,
    sign_command,
    signed_payload,
    signing_string,
    split_signature,
    verify,
)
from tests.conftest import new_id, orchestrator_of, running_stack, stack_env
from tests.orchestrator import Orchestrator
from twinctl.stack import Stack

SECRET = b"test-secret-0123456789abcdef"
KEYS = Keys(SECRET)
TOPIC = "twin/plant-1/cmd"
PAYLOAD = b'{"id": "job-1", "cmd": "ping", "ts": 1700000000}'

# The test vector of docs/protocol.md, "Signed commands".
VECTOR_SECRET = b"twinctl-test-vector-secret"
VECTOR_PAYLOAD = b'{"id": "job-42", "cmd": "ping", "ts": "2026-11-29T14:00:00Z"}'
VECTOR = {None: "70bad4c909295c7ab94b3c262a5e76512807a024e9f3bb4131f0ea5c688a9a29",
          "orchestrator/replies":
              "f7f02d412c6bd554c9d096e0ee6720ad69ae3d7590494732b36f9c90746c4399"}


# ----- the module ---------------------------------------------------------------------

def test_the_signature_is_hmac_sha256_of_topic_response_topic_and_payload() -> None:
    signed = TOPIC.encode() + b"\n\n" + PAYLOAD
    assert signing_string(PAYLOAD, topic=TOPIC) == signed
    expected = hmac.new(SECRET, signed, hashlib.sha256).hexdigest()
    assert sign(SECRET, PAYLOAD, topic=TOPIC) == expected and len(expected) == 64
    assert verify(KEYS, PAYLOAD, expected, topic=TOPIC).body == PAYLOAD
    assert verify(KEYS, PAYLOAD, expected.upper(), topic=TOPIC).body == PAYLOAD
    # one byte more (a space the signer did not send) is another message
    with pytest.raises(SignatureRefused) as info:
        verify(KEYS, PAYLOAD + b" ", expected, topic=TOPIC)
    assert info.value.code == "not_permitted" and info.value.path == "signature"
    assert "does not match" in info.value.message


@pytest.mark.parametrize("response_topic", [None, "orchestrator/replies"])
def test_the_documented_test_vector(response_topic: str | None) -> None:
    assert sign(VECTOR_SECRET, VECTOR_PAYLOAD, topic=TOPIC,
                response_topic=response_topic) == VECTOR[response_topic]
    # the shell recipe of the docs gives the same digest
    text = f"{TOPIC}\n{response_topic or ''}\n".encode() + VECTOR_PAYLOAD
    out = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", VECTOR_SECRET.decode()],
                         input=text, capture_output=True, check=True).stdout.decode()
    assert out.strip().rsplit(" ", 1)[-1] == VECTOR[response_topic]


def test_a_signature_binds_the_topic_and_the_response_topic() -> None:
    """Replayed to another controller, or with another response topic, it is refused."""
    good = sign(SECRET, PAYLOAD, topic=TOPIC, response_topic="me/replies")
    assert verify(KEYS, PAYLOAD, good, topic=TOPIC, response_topic="me/replies").body
    for topic, response in (("twin/plant-2/cmd", "me/replies"), (TOPIC, "attacker/inbox"),
                            (TOPIC, None)):
        with pytest.raises(SignatureRefused, match="does not match"):
            verify(KEYS, PAYLOAD, good, topic=topic, response_topic=response)


def test_the_prefix_form_for_mqtt_311() -> None:
    signed = signed_payload(SECRET, PAYLOAD, topic=TOPIC)
    assert signed == sign(SECRET, PAYLOAD, topic=TOPIC).encode() + b" " + PAYLOAD
    assert split_signature(signed) == (sign(SECRET, PAYLOAD, topic=TOPIC), PAYLOAD)
    assert split_signature(PAYLOAD) == (None, PAYLOAD)
    assert verify(KEYS, signed, None, topic=TOPIC).body == PAYLOAD
    tampered = signed.replace(b"ping", b"pong")
    with pytest.raises(SignatureRefused, match="does not match"):
        verify(KEYS, tampered, None, topic=TOPIC)
    with pytest.raises(SignatureRefused, match="does not match"):
        verify(Keys(b"another-secret-0123456789"), signed, None, topic=TOPIC)


def test_named_keys_name_the_orchestrator() -> None:
    keys = Keys(named={"alice": b"alice-key-0123456789", "bob": b"bob-key-0123456789ab"})
    signed = signed_payload(b"alice-key-0123456789", PAYLOAD, topic=TOPIC, key="alice")
    assert signed.startswith(b"alice:")
    assert split_signature(signed)[1] == PAYLOAD
    got = verify(keys, signed, None, topic=TOPIC)
    assert (got.body, got.key) == (PAYLOAD, "alice")
    prop = "bob:" + sign(b"bob-key-0123456789ab", PAYLOAD, topic=TOPIC)
    assert verify(keys, PAYLOAD, prop, topic=TOPIC).key == "bob"
    # alice's signature presented as bob's, an unknown key, no name with named keys only
    forged = "bob:" + sign(b"alice-key-0123456789", PAYLOAD, topic=TOPIC)
    for prop, words in ((forged, "does not match"), ("eve:" + "0" * 64, "key 'eve'"),
                        (sign(b"alice-key-0123456789", PAYLOAD, topic=TOPIC), "names no key")):
        with pytest.raises(SignatureRefused, match=words):
            verify(keys, PAYLOAD, prop, topic=TOPIC)


@pytest.mark.parametrize(
    ("payload", "prop", "words"),
    [
        (PAYLOAD, None, "carries no signature"),
        (PAYLOAD, "abc", "64 hex digits"),
        (PAYLOAD, "z" * 64, "64 hex digits"),
        (PAYLOAD, "0" * 64, "does not match"),
        (signed_payload(SECRET, PAYLOAD, topic=TOPIC), sign(SECRET, PAYLOAD, topic=TOPIC),
         "signed twice"),
        (b"0" * 64 + b"{}", None, "carries no signature"),  # no space: not the prefix form
    ],
)
def test_unsigned_or_badly_signed_is_refused_with_a_message(
        payload: bytes, prop: str | None, words: str) -> None:
    with pytest.raises(SignatureRefused) as info:
        verify(KEYS, payload, prop, topic=TOPIC)
    exc = info.value
    assert (exc.code, exc.path, exc.verified) == ("not_permitted", "signature", False)
    assert words in exc.message
    if words == "carries no signature":  # says how to sign
        assert "'signature'" in exc.message and "<command JSON>" in exc.message


def test_without_keys_signatures_are_ignored_and_the_prefix_stripped() -> None:
    off = Keys()
    assert verify(off, PAYLOAD, None, topic=TOPIC).body == PAYLOAD
    assert verify(off, PAYLOAD, "whatever", topic=TOPIC).body == PAYLOAD
    assert verify(off, signed_payload(SECRET, PAYLOAD, topic=TOPIC), None,
                  topic=TOPIC).body == PAYLOAD
    assert verify(off, signed_payload(SECRET, PAYLOAD, topic=TOPIC, key="alice"), None,
                  topic=TOPIC).body == PAYLOAD


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
    out = sign_command(SECRET, {"id": "a", "cmd": "ping"}, topic=TOPIC, now=1_800_000_000.25)
    sig, body = split_signature(out)
    assert sig == sign(SECRET, body, topic=TOPIC)
    assert json.loads(body) == {"id": "a", "cmd": "ping", "ts": 1_800_000_000.25}
    keep = sign_command(SECRET, {"id": "a", "cmd": "ping", "ts": "2027-01-15T08:00:00Z"},
                        topic=TOPIC)
    assert json.loads(split_signature(keep)[1])["ts"] == "2027-01-15T08:00:00Z"


# ----- settings -----------------------------------------------------------------------

URLS = {"TWIN_MQTT_URL": "mqtt://10.0.0.5:1883", "TWIN_REDIS_URL": "redis://10.0.0.5/0"}


def test_the_secret_from_the_environment_or_a_file(tmp_path: Any) -> None:
    s = load_settings({**URLS, "TWIN_COMMAND_SECRET": "  s3cret-with-16-chars\n"})
    assert s.command_secret == b"s3cret-with-16-chars"
    assert "s3cret" not in repr(s)
    assert load_settings(s.to_env()) == s
    path = tmp_path / "secret"
    path.write_text("from-a-file-0123456789\n")
    f = load_settings({**URLS, "TWIN_COMMAND_SECRET_FILE": str(path)})
    assert f.command_secret == b"from-a-file-0123456789"
    assert load_settings(f.to_env()) == f
    assert "from-a-file" not in json.dumps(f.to_env())  # the path is passed on, not the secret
    assert load_settings({}).command_secret is None


def test_named_keys_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "keys"
    path.write_text("# orchestrators\nalice alice-key-0123456789\n\nops  ops-key-0123456789ab\n")
    s = load_settings({**URLS, "TWIN_COMMAND_KEYS_FILE": str(path),
                       "TWIN_ADMIN_CLIENTS": "ops"})
    assert s.command_keys == {"alice": b"alice-key-0123456789", "ops": b"ops-key-0123456789ab"}
    assert s.admin_clients == ("ops",) and "alice-key" not in repr(s)
    assert load_settings(s.to_env()) == s
    assert "alice-key" not in json.dumps(s.to_env())


@pytest.mark.parametrize(
    ("env", "keys", "words"),
    [
        ({"TWIN_COMMAND_SECRET": "short"}, None, "at least 16"),
        ({"TWIN_COMMAND_SECRET_FILE": "/nonexistent/secret"}, None, "cannot be read"),
        ({"TWIN_COMMAND_SECRET": "x" * 20, "TWIN_COMMAND_SECRET_FILE": "/x"}, None, "both set"),
        ({"TWIN_COMMAND_SECRET": "x" * 20, "TWIN_SIGNATURE_MAX_AGE": "600",
          "TWIN_DUPLICATE_TTL": "300"}, None, "TWIN_DUPLICATE_TTL"),
        ({"TWIN_SIGNATURE_MAX_AGE": "0"}, None, "between"),
        ({"TWIN_ADMIN_CLIENTS": "ops"}, None, "only named keys prove"),
        ({"TWIN_ADMIN_CLIENTS": "ops"}, "alice alice-key-0123456789\n", "has no key"),
        ({}, "alice short\n", "line 1: the secret of key 'alice'"),
        ({}, "al/ce alice-key-0123456789\n", "is not a key name"),
        ({}, "a a-key-0123456789ab\na b-key-0123456789ab\n", "given twice"),
        ({}, "# nothing\n", "has no keys"),
        ({"TWIN_SIGNATURE_MAX_AGE": "600", "TWIN_DUPLICATE_TTL": "300"},
         "a a-key-0123456789ab\n", "TWIN_DUPLICATE_TTL"),
    ],
)
def test_a_wrong_signing_setting_is_one_line(env: dict[str, str], keys: str | None, words: str,
                                             tmp_path: Any) -> None:
    if keys is not None:
        (tmp_path / "keys").write_text(keys)
        env = {**env, "TWIN_COMMAND_KEYS_FILE": str(tmp_path / "keys")}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert words in str(info.value) and "\n" not in str(info.value)


# ----- end to end ---------------------------------------------------------------------

pytest_e2e = pytest.mark.integration

NAMED = {"alice": b"alice-key-0123456789", "bob": b"bob-key-0123456789ab",
         "ops": b"ops-key-0123456789abc"}


@pytest.fixture(scope="module")
def signed_stack(redis_server: Any, mqtt_server: Any,
                 tmp_path_factory: Any) -> Iterator[Stack]:
    """A stack with the unnamed secret and three named keys, ``ops`` the admin."""
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text("".join(f"{k} {v.decode()}\n" for k, v in NAMED.items()))
    env = stack_env(redis_server, mqtt_server, TWIN_COMMAND_SECRET=SECRET.decode(),
                    TWIN_COMMAND_KEYS_FILE=str(keys), TWIN_ADMIN_CLIENTS="ops",
                    TWIN_SIGNATURE_MAX_AGE="60")
    with running_stack(env, tmp_path_factory.mktemp("signed-logs"), workers=1,
                       realtime=1) as stack:
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


def _cmd_topic(stack: Stack) -> str:
    return stack.settings.cmd_topic


RUN = {"cmd": "run", "scenario": {
    "elements": {"p": {"model": "CentrifugalPump", "instance": "P-101"}},
    "inputs": {"p.speed": 1450, "p.flow": 0.01}}}


@pytest_e2e
def test_signed_commands_work_in_both_forms(sorch: Orchestrator, signed_stack: Stack) -> None:
    topic = _cmd_topic(signed_stack)
    rid = new_id("sig5")
    payload = _body({"id": rid, **RUN})
    sorch.send(payload, properties=_props(sign(SECRET, payload, topic=topic)))
    replies = sorch.wait_final(rid, 30)
    assert [r["type"] for r in replies] == ["ack", "result"]
    rid = new_id("sig311")
    sorch.send(signed_payload(SECRET, _body({"id": rid, "cmd": "ping"}), topic=topic))
    assert [r["type"] for r in sorch.wait_final(rid)] == ["pong"]
    # with a response topic (bound by the signature), and a real MQTT 3.1.1 client
    rid = new_id("rt")
    mine = f"{signed_stack.settings.mqtt_prefix}/mine/{rid}"
    payload = _body({"id": rid, "cmd": "ping"})
    sorch.send(payload, properties=_props(sign(SECRET, payload, topic=topic,
                                               response_topic=mine), response_topic=mine))
    assert [r["type"] for r in sorch.wait_final(rid, topic=mine)] == ["pong"]
    s = signed_stack.settings
    old = Orchestrator(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id,
                       protocol=mqtt.MQTTv311)
    try:
        rid = new_id("v311")
        old.send(signed_payload(SECRET, _body({"id": rid, "cmd": "ping",
                                               "ts": "2000-01-01T00:00:00Z"}, ts=None),
                                topic=topic))
        (stale,) = old.wait_final(rid)
        assert (stale["code"], stale["path"]) == ("not_permitted", "ts")
        rid = new_id("v311")
        old.send(sign_command(SECRET, {"id": rid, "cmd": "describe"}, topic=topic))
        assert old.wait_final(rid)[0]["type"] == "description"
    finally:
        old.close()


@pytest_e2e
def test_unauthentic_and_stale_commands_are_refused_and_cost_nothing(
        sorch: Orchestrator, signed_stack: Stack) -> None:
    """Unauthentic bytes (unsigned, badly signed, signed for another controller or for
    another response topic) are refused on the errors topic only, with the id they
    claim: never on a request's reply topic (a victim's id would get an error in the
    middle of its job) nor on their response topic. A stale or ts-less command is
    authentic: its refusal goes where its replies would."""
    topic = _cmd_topic(signed_stack)
    elsewhere = f"{signed_stack.settings.mqtt_prefix}/elsewhere"
    other = topic.replace(signed_stack.settings.controller_id, "another-controller")
    cases = {
        "unsigned": lambda p, rt: None,
        "bad": lambda p, rt: "0" * 64,
        "other-secret": lambda p, rt: sign(b"not-the-secret-0123", p, topic=topic,
                                           response_topic=rt),
        "other-controller": lambda p, rt: sign(SECRET, p, topic=other, response_topic=rt),
        "redirected": lambda p, rt: sign(SECRET, p, topic=topic, response_topic="me/inbox"),
        "stale": lambda p, rt: sign(SECRET, p, topic=topic, response_topic=rt),
        "no-ts": lambda p, rt: sign(SECRET, p, topic=topic, response_topic=rt),
    }
    for name, make in cases.items():
        rid = new_id(name)
        where = f"{elsewhere}/{rid}"
        ts = time.time() - 120 if name == "stale" else None if name == "no-ts" else "now"
        payload = _body({"id": rid, **RUN}, ts=ts)
        mark = sorch.mark()
        sorch.send(payload, properties=_props(make(payload, where), response_topic=where))
        verified = name in ("stale", "no-ts")
        if verified:
            (reply,) = sorch.wait_final(rid, topic=where)
            assert reply["path"] == "ts", (name, reply)
        else:
            (reply,) = sorch.errors_topic(mark)
            assert reply["path"] == "signature" and reply["claimed_id"] == rid, (name, reply)
            time.sleep(0.3)
            assert not sorch.replies(rid) and not sorch.replies(rid, topic=where), name
        assert (reply["type"], reply["code"]) == ("error", "not_permitted"), (name, reply)
        assert reply["message"], name
        # nothing was queued, and the id was not claimed: signed, it runs
        good = _body({"id": rid, **RUN})
        sorch.send(good, properties=_props(sign(SECRET, good, topic=topic, response_topic=where),
                                           response_topic=where))
        replies = sorch.wait_final(rid, 30, topic=where, count=2 if verified else 1)
        expected = (["error"] if verified else []) + ["ack", "result"]
        assert [r["type"] for r in replies] == expected, (name, replies)
        assert [r["seq"] for r in replies] == list(range(len(expected)))


@pytest_e2e
def test_a_replayed_signed_command_is_a_duplicate(sorch: Orchestrator,
                                                  signed_stack: Stack) -> None:
    rid = new_id("replay")
    payload = _body({"id": rid, "cmd": "ping"})
    signature = sign(SECRET, payload, topic=_cmd_topic(signed_stack))
    sorch.send(payload, properties=_props(signature))
    sorch.wait_final(rid)
    sorch.send(payload, properties=_props(signature))  # captured and sent again
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
    assert "claimed_id" not in err


@pytest_e2e
def test_twinctl_send_signs_with_the_secret(signed_stack: Stack) -> None:
    from twinctl.client import send_command

    exchange = send_command(signed_stack.settings, {"cmd": "ping"}, timeout=20)
    assert exchange.final is not None and exchange.final["type"] == "pong", exchange.replies


def _as(orch: Orchestrator, stack: Stack, key: str, command: dict[str, Any]) -> str:
    """Send ``command`` signed with the named key ``key``; its request id."""
    rid = new_id(key)
    orch.send(signed_payload(NAMED[key], _body({"id": rid, **command}),
                             topic=_cmd_topic(stack), key=key))
    return rid


SLOW = {"cmd": "run", "scenario": {
    "mode": "realtime", "time": {"step": 0.05},
    "elements": {"lag": {"model": "FirstOrderLag", "params": {"gain": 2.0,
                                                              "time_constant": 1.0}}},
    "inputs": {"lag.u": 1.0}, "outputs": ["lag.y"], "realtime": {"publish_every": 20}}}


@pytest_e2e
def test_a_named_key_is_the_orchestrators_identity(sorch: Orchestrator,
                                                   signed_stack: Stack) -> None:
    """alice's job is stopped neither by bob nor by anyone claiming to be alice (the
    ``client`` property is not proof), but by alice, or by the admin ``ops``; only
    ``ops`` changes instances."""
    rid = _as(sorch, signed_stack, "alice", SLOW)
    deadline = time.monotonic() + 30
    while not sorch.replies(rid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorch.replies(rid)[0]["type"] == "ack", sorch.replies(rid)
    jobs = _as(sorch, signed_stack, "bob", {"cmd": "jobs"})
    (listing,) = sorch.wait_final(jobs)
    assert {j["id"]: j.get("client") for j in listing["jobs"]}[rid] == "alice"
    # bob, and the unnamed secret with client=alice, may not stop it
    refused = _as(sorch, signed_stack, "bob", {"cmd": "stop", "target": rid})
    (err,) = sorch.wait_final(refused)
    assert (err["code"], err["path"]) == ("not_permitted", "target"), err
    assert "'bob'" in err["message"] and "ops" in err["message"]
    forged = new_id("forged")
    payload = _body({"id": forged, "cmd": "set", "target": rid, "inputs": {"lag.u": 0}})
    props = _props(sign(SECRET, payload, topic=_cmd_topic(signed_stack)))
    props.UserProperty = [("signature", sign(SECRET, payload, topic=_cmd_topic(signed_stack))),
                          ("client", "alice")]
    sorch.send(payload, properties=props)
    (err,) = sorch.wait_final(forged)
    assert (err["code"], err["path"]) == ("not_permitted", "target"), err
    assert "'unverified:alice'" in err["message"], err
    # instances: only ops
    inst = {"cmd": "put_instance", "instance": {
        "id": "T-x", "model": "Tank", "params": {"area": 1.0, "outlet_area": 0.01,
                                                 "discharge_coefficient": 0.6, "height": 2.0}}}
    (err,) = sorch.wait_final(_as(sorch, signed_stack, "alice", inst))
    assert (err["code"], err["path"]) == ("not_permitted", "cmd"), err
    assert [r["type"] for r in sorch.wait_final(_as(sorch, signed_stack, "ops", inst),
                                                count=1)][-1] in ("result", "ack")
    # ops stops alice's job
    stop = _as(sorch, signed_stack, "ops", {"cmd": "stop", "target": rid})
    assert sorch.wait_final(stop)[-1]["status"] == "ok"
    final = sorch.wait_final(rid, 30)[-1]
    assert final["type"] == "result" and final["status"] == "stopped", final
