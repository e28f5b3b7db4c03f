"""The ingress's inbox (ingress/inbox.py): per-orchestrator FIFOs served by deficit
round robin over bytes, refusals first, bounded per orchestrator and in all."""

from __future__ import annotations

import threading

from ingress.inbox import CLIENT_QOS0, OVERHEAD, Inbox, Item
from ingress.routing import claimed_client
from ingress.signing import signed_payload


def item(client: str, size: int, tag: str = "") -> Item:
    return Item(conn=None, msg=tag, client=client, size=size)


def drain(inbox: Inbox) -> list[str]:
    out = []
    while len(inbox):
        got = inbox.get()
        assert got is not None
        out.append(str(got.msg))
        inbox.done(got)
    return out


def test_one_orchestrators_commands_keep_their_order() -> None:
    inbox = Inbox()
    for i in range(5):
        assert inbox.put(item("a", 100 * (5 - i), f"a{i}"), qos=1) == "queued"
    assert drain(inbox) == [f"a{i}" for i in range(5)]
    assert inbox.waiting_bytes == 0


def test_small_commands_are_not_kept_behind_big_ones() -> None:
    """Ten 0.7 MB runs of A queued before B's pings: B's pings come out first, A's
    big commands get their turns by bytes."""
    inbox = Inbox(quantum=64 << 10)
    for i in range(10):
        inbox.put(item("A", 700_000, f"A{i}"), qos=1)
    for i in range(3):
        inbox.put(item("B", 40, f"B{i}"), qos=1)
    order = drain(inbox)
    assert order.index("B2") < order.index("A1"), order
    assert [o for o in order if o.startswith("A")] == [f"A{i}" for i in range(10)]


def test_equal_orchestrators_share_by_bytes() -> None:
    inbox = Inbox(quantum=1000)
    for i in range(20):
        inbox.put(item("big", 2000 - OVERHEAD, f"big{i}"), qos=1)
        inbox.put(item("small", 1000 - OVERHEAD, f"small{i}"), qos=1)
    first = drain(inbox)[:30]
    # two small ones for each big one: the same bytes
    assert abs(sum(o.startswith("small") for o in first) - 20) <= 2, first


def test_beyond_the_bounds_qos1_is_refused_first_and_qos0_dropped() -> None:
    inbox = Inbox(client_commands=3, client_bytes=10_000, total_bytes=100_000)
    for i in range(3):
        assert inbox.put(item("a", 10, f"a{i}"), qos=1) == "queued"
    assert inbox.put(item("a", 10, "a3"), qos=1) == "refused"
    assert inbox.put(item("a", 10, "a4"), qos=0) == "dropped"
    assert inbox.put(item("b", 9_000, "b0"), qos=1) == "queued"
    assert inbox.put(item("b", 2_000, "b1"), qos=1) == "refused"  # over b's bytes
    got = inbox.get()
    assert got is not None and got.msg == "a3" and got.refused and "3 commands" in got.refused
    got = inbox.get()
    assert got is not None and got.msg == "b1" and "MiB" in str(got.refused)
    inbox.done(got)  # (a refusal holds nothing)
    assert (inbox.refusals, inbox.dropped) == (2, 1)
    assert sorted(drain(inbox)) == ["a0", "a1", "a2", "b0"]


def test_few_qos0_commands_of_one_orchestrator_wait() -> None:
    inbox = Inbox()
    kept = [inbox.put(item("a", 10, f"q{i}"), qos=0) for i in range(CLIENT_QOS0 + 5)]
    assert kept.count("queued") == CLIENT_QOS0 and kept.count("dropped") == 5
    assert inbox.put(item("a", 10, "q1"), qos=1) == "queued"  # QoS 1 is not capped so
    assert inbox.put(item("b", 10, "b"), qos=0) == "queued"  # nor another's QoS 0
    drain(inbox)
    assert inbox.put(item("a", 10, "again"), qos=0) == "queued"


def test_qos0_commands_of_one_orchestrator_are_rate_limited() -> None:
    inbox = Inbox(qos0_rate=10.0, qos0_burst=5)
    taken = []
    for i in range(8):
        got = inbox.put(item("a", 10, f"q{i}"), qos=0)
        taken.append(got)
        if got == "queued":
            drain(inbox)  # (handled at once: only the rate holds them back)
    assert taken.count("queued") == 5, taken  # the burst, then nothing within ~1 ms
    assert inbox.put(item("b", 10, "b"), qos=0) == "queued"  # another's bucket is full
    assert inbox.put(item("a", 10, "q1"), qos=1) == "queued"  # QoS 1 has no rate


def test_over_the_total_only_those_above_their_share_are_refused() -> None:
    inbox = Inbox(client_bytes=60_000, total_bytes=100_000)
    assert inbox.put(item("hog", 55_000), qos=1) == "queued"
    assert inbox.put(item("hog2", 45_000), qos=1) == "queued"
    assert inbox.put(item("hog", 1_000), qos=1) == "refused"  # above 100k/2
    assert inbox.put(item("newcomer", 1_000), qos=1) == "queued"  # within 100k/3


def test_one_orchestrator_at_a_time_and_a_lane_for_small_commands() -> None:
    """While A's big command is handled, A's next waits (order), B's small one is
    taken by the small lane, and the small lane never takes a big one."""
    inbox = Inbox()
    inbox.put(item("A", 500_000, "A-big"), qos=1)
    inbox.put(item("A", 10, "A-small"), qos=1)
    inbox.put(item("B", 600_000, "B-big"), qos=1)
    inbox.put(item("B", 10, "B-small"), qos=1)
    first = inbox.get()
    assert first is not None and first.msg in ("A-big", "B-big")
    other = "B" if first.client == "A" else "A"
    # the small lane: the busy orchestrator's small command must wait; the other's
    # head is big, so nothing is ready for the small lane
    got: list[Item | None] = []
    t = threading.Thread(target=lambda: got.append(inbox.get(largest=1000)))
    t.start()
    t.join(0.2)
    assert t.is_alive() and not got
    second = inbox.get()  # the any-lane takes the other's big one
    assert second is not None and second.msg == f"{other}-big"
    inbox.done(first)  # the first orchestrator's small one is now ready
    t.join(5)
    assert got and got[0] is not None and got[0].msg == f"{first.client}-small"
    inbox.done(second)
    inbox.done(got[0])
    assert drain(inbox) == [f"{other}-small"]


def test_get_blocks_until_put_or_close() -> None:
    inbox = Inbox()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(inbox.get()))
    t.start()
    inbox.put(item("a", 1, "x"), qos=1)
    t.join(5)
    assert got and got[0] is not None
    t = threading.Thread(target=lambda: got.append(inbox.get()))
    t.start()
    inbox.close()
    t.join(5)
    assert got[-1] is None


class _Msg:
    def __init__(self, payload: bytes, props: object = None) -> None:
        self.payload = payload
        self.properties = props


def test_the_claimed_orchestrator_is_read_without_parsing() -> None:
    signed = signed_payload(b"k" * 20, b'{"id": "a", "cmd": "ping"}', topic="t", key="alice")
    assert claimed_client(_Msg(signed)) == "alice"  # type: ignore[arg-type]
    assert claimed_client(_Msg(b'{"id": "a", "cmd": "ping"}')) == "anonymous"  # type: ignore[arg-type]
    unnamed = signed_payload(b"k" * 20, b'{"id": "a"}', topic="t")
    assert claimed_client(_Msg(unnamed)) == "anonymous"  # type: ignore[arg-type]
