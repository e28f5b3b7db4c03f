"""Property-based fuzzing of the whole controller over MQTT (hypothesis).

More than 10 000 generated and mutated commands go through the real ingress of a
stack of this module's own (real Mosquitto and Redis from the session fixtures,
real ingress and worker processes, ``TWIN_MAX_COMMAND_BYTES`` = 64 KiB so that
oversize commands are cheap), and every one must be answered as PROTOCOL.md
says: a command with a usable id on ``{prefix}/{cid}/reply/{id}``, with a final
``error`` (a code of the protocol's list and a message) or a correct final reply
(``result``, ``pong``, ``description``); one without a usable id with an error on
``{prefix}/{cid}/errors``. Every message must be strict JSON. The ingress must
stay alive with a flat memory, the workers alive, and a valid run must still work
afterwards.

The inputs: wrong types for every field, huge numbers (1e308, 10**400 as a JSON
integer), NaN/Infinity tokens, deep nesting, unicode (lone surrogates, RTL,
emoji, NUL), oversize payloads, missing and unknown fields, every command,
random scenarios (elements, models, ports, connections, inputs, time, solver,
realtime, post), and mutations of valid commands (a key dropped, a type
changed, a special value put in, garbage bytes inserted, the bytes truncated).

How: a fixed batch of hand-picked edge cases first (the warm-up before the
memory is read), then hypothesis draws the rest, deterministically
(``derandomize``), a few commands per example; they are sent in batches of
:data:`tests.fuzz.harness.BATCH` and the answers of a batch are awaited together, up to a ``ping``
sent last (the ingress handles commands in order and sends its replies in order:
after that ``pong`` only jobs on workers can still answer). Each message gets an
id of its own (so ``duplicate_id`` does not blur the count), except the pairs
that test duplicates on purpose. Runs are kept small so that the test takes well
under a minute: a dynamic run has few rows or is far over the row limit, a
real-time run is short and is sent a ``stop`` at the end of its batch. An
``internal_error`` counts as a finding too: it is a crash, caught.

Problems are collected rather than raised at the first one (hypothesis neither
shrinks nor replays: the commands go to real processes): at the end the test
fails with each kind of finding, how often it happened and the shortest command
that triggered it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import BATCH_TIMEOUT, Collector, Fuzzer, rss_kb
from tests.fuzz.harness import fuzz_stack as fuzz_stack
from tests.fuzz.harness import own_stack as own_stack
from tests.fuzz.report import by_kind, ingress_exceptions, report, summarize
from tests.fuzz.strategies import Case, a_case, edge_cases
from tests.test_e2e import pump_run
from twinctl.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

MESSAGES = 10_000
"""At least this many generated messages (the extra ``stop`` commands not counted)."""
PER_EXAMPLE = 25
MAX_RSS_GROWTH_KB = 30 * 1024


@pytest.mark.timeout(600)
def test_fuzzed_commands_are_all_answered_and_the_controller_survives(
    fuzz_stack: Stack, tmp_path: Path,
) -> None:
    s = fuzz_stack.settings
    col = Collector(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
    fuzzer = Fuzzer(fuzz_stack, col)
    ingress = fuzz_stack.procs["ingress"]
    started = time.monotonic()
    try:
        fuzzer.add(edge_cases())
        fuzzer.flush()
        rss_warm = rss_kb(ingress.pid)

        @settings(max_examples=math.ceil(MESSAGES / PER_EXAMPLE), derandomize=True,
                  database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @given(st.tuples(*[a_case(slot) for slot in range(PER_EXAMPLE)]))
        def fuzz(cases: tuple[Case, ...]) -> None:
            fuzzer.add(list(cases))

        fuzz()
        fuzzer.flush()
        fuzzer.drain(30)  # the last answers (slow runs; real-time runs not stopped yet)
        fuzz_seconds = time.monotonic() - started
        alive = ingress.poll() is None
        rss_end = rss_kb(ingress.pid) if alive else -1
        fuzzer.check()
        # afterwards a valid command still works, and everything is alive
        rid = fuzzer.new_id(".after")
        col.publish([json.dumps(pump_run(rid)).encode()])
        col.wait(lambda: col.finals[rid] >= 1, 30)
        after = col.by_id.get(rid, [])
    finally:
        col.close()
    summary = summarize(fuzzer, fuzz_seconds, rss_warm, rss_end)
    print(summary)
    print("by kind:", dict(by_kind(fuzzer).most_common(12)))
    for batch, late in fuzzer.slow:
        print(f"batch {batch} not answered within {BATCH_TIMEOUT:.0f} s; waiting for: {late}")
    text = report(fuzzer.findings) + ingress_exceptions(fuzz_stack.log_dir)
    (tmp_path / "fuzz-report.txt").write_text(summary + "\n" + text + "\n")
    print(f"report: {tmp_path / 'fuzz-report.txt'}")
    problems = [text] if fuzzer.findings else []
    if fuzzer.aborted:
        problems.append(fuzzer.aborted)
    if not alive:
        problems.append(f"the ingress died (exit code {ingress.returncode})")
    if fuzz_stack.failed():
        problems.append(f"{fuzz_stack.failed()} stopped")
    if fuzzer.generated < MESSAGES:
        problems.append(f"only {fuzzer.generated} messages generated, not {MESSAGES}")
    if alive and rss_end - rss_warm >= MAX_RSS_GROWTH_KB:
        problems.append(f"the ingress grew by more than {MAX_RSS_GROWTH_KB // 1024} MiB")
    after = sorted(after, key=lambda r: r.get("seq", -1))
    if [r.get("type") for r in after] != ["ack", "result"] or after[-1].get("status") != "ok":
        problems.append(f"a valid run afterwards was not answered with a result: {after}")
    if problems:
        pytest.fail(summary + "\n" + "\n".join(problems), pytrace=False)


def test_an_id_ending_in_a_newline_is_refused_and_mutes_nothing(own_stack: Stack) -> None:
    """Found by the fuzzing above. "abc\\n" is no id of PROTOCOL.md (1-128 characters of
    ``[A-Za-z0-9._:-]``), so its error belongs on the errors topic. Should the
    controller take it (a ``$`` in a regular expression matches before a final
    newline), its reply topic ``.../reply/abc\\n`` has a control character, which
    Mosquitto answers by closing the connection; the reply is sent again on every
    reconnection, and every reply stored after it waits for ever."""
    s = own_stack.settings
    col = Collector(s.mqtt.host, s.mqtt.port, s.mqtt_prefix, s.controller_id)
    try:
        col.publish([b'{"id": "abc\\n", "cmd": "ping"}', b'{"id": "after-nl", "cmd": "ping"}'])
        col.wait(lambda: col.finals["after-nl"] >= 1 and bool(col.errors), 15)
        errors, after = list(col.errors), list(col.by_id.get("after-nl", []))
        stray = {k: v for k, v in col.by_id.items() if k != "after-nl"}
    finally:
        col.close()
    assert [r["type"] for r in after] == ["pong"], (
        "the controller answers nothing after a command with the id 'abc\\n'")
    assert [e["code"] for e in errors] == ["invalid_command"], errors
    assert not stray, stray
