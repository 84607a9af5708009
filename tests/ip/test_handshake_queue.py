"""The handshake queue, sans-IO: which HS1s get their Diffie-Hellman next (virtual
turns of the event loop: one `turn()` each)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.handshakequeue import HandshakeQueue


def test_a_device_waits_one_round_not_behind_a_flooders_backlog():
    queue: HandshakeQueue[str] = HandshakeQueue(capacity=1000, budget=4)
    for n in range(300):  # one flooder's backlog...
        queue.push("10.0.0.66", f"forged{n}")
    for n in range(3):  # ... and three more flooding addresses
        queue.push(f"10.0.1.{n}", f"other{n}")
    queue.push("192.0.2.7", "device")
    served: list[str] = []
    while "device" not in served:
        served += queue.turn()
    # one of each other source holding work when it came, then the device's
    assert served.index("device") == 4
    assert served[:4] == ["forged0", "other0", "other1", "other2"]


def test_each_turn_serves_at_most_the_budget_in_round_robin_order():
    queue: HandshakeQueue[int] = HandshakeQueue(capacity=100, budget=3)
    for n in range(6):
        queue.push("a", n)
    queue.push("b", 10)
    queue.push("b", 11)
    queue.push("c", 20)
    assert queue.turn() == [0, 10, 20]
    assert queue.turn() == [1, 11, 2]  # c has nothing left: a and b alternate
    assert queue.turn() == [3, 4, 5]
    assert queue.turn() == [] and len(queue) == 0 and queue.served == 9


def test_a_full_queue_drops_the_oldest_of_the_source_holding_most():
    queue: HandshakeQueue[str] = HandshakeQueue(capacity=4, budget=1)
    for item in ("a1", "a2", "a3", "b1"):
        assert queue.push(item[0], item) == []
    assert queue.push("c", "c1") == ["a1"]  # a holds 3: its oldest goes, not b's or c's
    assert queue.push("d", "d1") == ["a2"]
    # every source holds one now: the one that came down to (or up to) it first
    assert queue.push("e", "e1") == ["b1"]
    assert queue.dropped == 3 and len(queue) == 4
    assert queue.holding("b") == 0 and queue.sources == 4


def test_the_newcomer_is_dropped_when_its_own_source_holds_most():
    queue: HandshakeQueue[str] = HandshakeQueue(capacity=2, budget=1)
    queue.push("a", "a1")
    queue.push("b", "b1")
    assert queue.push("b", "b2") == ["b1"]  # b holds 2: its oldest, not a's only one
    assert "a1" in queue and "b2" in queue


def test_a_cancelled_item_is_never_served_nor_counted_as_dropped():
    queue: HandshakeQueue[str] = HandshakeQueue(capacity=4, budget=4)
    queue.push("a", "gone")
    queue.push("a", "here")
    assert queue.cancel("gone") and not queue.cancel("gone")
    assert queue.turn() == ["here"] and queue.dropped == 0
    assert not queue.cancel("here")  # already served


def test_pushing_a_queued_item_again_changes_nothing():
    queue: HandshakeQueue[str] = HandshakeQueue(capacity=4, budget=4)
    queue.push("a", "x")
    assert queue.push("b", "x") == [] and queue.holding("b") == 0 and len(queue) == 1


def test_without_contention_an_hs1_is_served_at_once_within_the_turns_budget():
    queue: HandshakeQueue[str] = HandshakeQueue(capacity=8, budget=2)
    assert queue.admit("a", "a1") == (True, []) and queue.admit("b", "b1") == (True, [])
    assert queue.admit("c", "c1") == (False, [])  # the turn's budget is spent: it waits
    assert queue.admit("d", "d1") == (False, [])
    assert queue.pending and queue.served == 2
    assert queue.turn() == ["c1", "d1"]  # a new turn: the queued ones first
    assert queue.admit("e", "e1") == (False, [])  # ... and they spent its budget
    assert queue.turn() == ["e1"]
    assert queue.admit("f", "f1") == (True, [])  # one left in this turn: nothing waits
    assert queue.turn() == [] and not queue.pending
    assert queue.served == 6


def test_nobody_is_passed_over_by_an_hs1_served_at_once():
    queue: HandshakeQueue[str] = HandshakeQueue(capacity=8, budget=4)
    queue.push("a", "a1")  # queued: the next one waits behind it, budget or not
    assert queue.admit("b", "b1") == (False, [])
    assert queue.turn() == ["a1", "b1"]


def test_capacity_and_budget_are_at_least_one():
    with pytest.raises(ValueError):
        HandshakeQueue(capacity=0)
    with pytest.raises(ValueError):
        HandshakeQueue(budget=0)


_operation = st.one_of(
    st.tuples(st.just("push"), st.integers(0, 7)),  # a source pushes a new item
    st.tuples(st.just("admit"), st.integers(0, 7)),  # ... or asks to be served at once
    st.tuples(st.just("cancel"), st.integers(0, 200)),  # the n-th item pushed is cancelled
    st.tuples(st.just("turn"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    operations=st.lists(_operation, max_size=200),
    capacity=st.integers(1, 12),
    budget=st.integers(1, 5),
)
def test_every_item_is_served_dropped_or_cancelled_once_and_waits_at_most_a_round(
    operations, capacity, budget
):
    """Whatever happens: each item pushed ends exactly once (served, dropped or
    cancelled, never twice, never lost), the queue never holds more than `capacity`,
    a turn serves at most `budget`, and an item pushed by a source with nothing
    queued is served before any other source has two served (it waits at most one
    round: one item of each source that held work when it came)."""
    queue: HandshakeQueue[int] = HandshakeQueue(capacity=capacity, budget=budget)
    pushed: list[int] = []
    source_of: dict[int, str] = {}
    ended: dict[int, str] = {}
    # items pushed by a source with nothing queued -> the sources holding work then
    watched: dict[int, set[str]] = {}
    served_since: dict[int, dict[str, int]] = {}

    def end(item: int, how: str) -> None:
        assert item not in ended, f"{item} ended twice ({ended[item]}, {how})"
        ended[item] = how

    def serve(turn: list[int]) -> None:
        assert len(turn) <= budget
        assert spent <= budget, "more served in a turn than its budget"
        for item in turn:
            end(item, "served")
            for waiting, counts in served_since.items():
                if waiting in ended:
                    continue
                source = source_of[item]
                counts[source] = counts.get(source, 0) + 1
                assert source in watched[waiting] or source == source_of[waiting], (
                    f"{item} of a source that came later went ahead of {waiting}"
                )
                assert counts[source] <= 1, f"{source} served twice while {waiting} waited"

    spent = 0  # served since the last turn began
    for kind, value in operations:
        if kind in ("push", "admit"):
            item = len(pushed)
            source = f"s{value}"
            pushed.append(item)
            source_of[item] = source
            if queue.holding(source) == 0:
                watched[item] = {source_of[i] for i in pushed[:-1] if i in queue}
                served_since[item] = {}
            if kind == "push":
                dropped = queue.push(source, item)
            else:
                waiting = len(queue)
                now, dropped = queue.admit(source, item)
                if now:  # only when nobody waits, and within the turn's budget
                    assert waiting == 0 and spent < budget
                    spent += 1
                    serve([item])
                    continue
            for victim in dropped:
                end(victim, "dropped")
        elif kind == "cancel" and value < len(pushed):
            if queue.cancel(pushed[value]):
                end(pushed[value], "cancelled")
        else:
            turn = queue.turn()
            spent = len(turn)
            serve(turn)
        assert len(queue) <= capacity
        assert len(queue) == sum(1 for i in pushed if i not in ended)
    while queue:
        serve(queue.turn())
    assert sorted(ended) == pushed
    assert queue.dropped == sum(1 for how in ended.values() if how == "dropped")
    assert queue.served == sum(1 for how in ended.values() if how == "served")
