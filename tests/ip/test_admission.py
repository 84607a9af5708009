"""The listener's limits before authentication, sans-IO, in virtual time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from receiver.ip import Admission, IpLimits, source_of


def test_the_bucket_allows_a_burst_then_the_rate():
    admission = Admission(IpLimits(rate=2.0, burst=5, max_handshakes_per_source=1000))
    results = [admission.admit("10.0.0.1", 0.0) for _ in range(7)]
    assert results == [None] * 5 + ["rate", "rate"]
    assert admission.admit("10.0.0.1", 0.4) == "rate"  # 0.8 of a token
    assert admission.admit("10.0.0.1", 0.5) is None  # a whole token again
    assert admission.admit("10.0.0.2", 0.5) is None  # another source has its own bucket
    assert admission.refused["rate"] == 3


def test_handshakes_per_source_and_in_all_and_connections():
    limits = IpLimits(max_handshakes_per_source=2, max_handshakes=3, max_connections=4, burst=99)
    admission = Admission(limits)
    assert admission.admit("a", 0.0) is None and admission.admit("a", 0.0) is None
    assert admission.admit("a", 0.0) == "source handshakes"
    assert admission.admit("b", 0.0) is None
    assert admission.admit("b", 0.0) == "handshakes"  # three open in all, b holds 1 < a's 2
    admission.authenticated("a")  # one of a's proved itself: its slot is free
    assert admission.admit("c", 0.0) is None
    assert admission.admit("d", 0.0) == "connections"  # four connections in all
    admission.closed("c", handshaking=True, reason="deadline")
    assert admission.admit("d", 0.0) is None
    assert admission.refused == {
        "connections": 1,
        "handshakes": 1,
        "source handshakes": 1,
        "rate": 0,
        "deadline": 1,
        "undecryptable": 0,
        "handshake": 0,
        "proxy header": 0,
        "evicted": 0,
        "queue": 0,
    }


def test_at_the_cap_a_newcomer_takes_the_oldest_handshake_of_the_source_holding_most():
    limits = IpLimits(max_handshakes=6, max_handshakes_per_source=8, burst=99, evict_after=60.0)
    admission = Admission(limits)
    tickets = {}
    for source in "aabbbc":  # b holds the most
        assert admission.admit(source, 0.0) is None
        tickets.setdefault(source, []).append(admission.ticket)
    # eligible from the moment admitted: no time has passed, nothing was served yet
    assert admission.admit("device", 0.0) is None
    assert admission.dropped == [tickets["b"][0]]  # b's oldest, not the oldest of all (a's)
    assert admission.holding("b") == 2 and admission.handshakes == 6
    admission.dropped.clear()
    # the shell closes the dropped one: no double release
    admission.closed("b", handshaking=True, ticket=tickets["b"][0])
    assert admission.handshakes == 6 and admission.holding("b") == 2
    assert admission.admit("e", 0.0) is None  # a and b hold 2: the first to reach 2 gives
    assert admission.dropped == [tickets["a"][0]]
    admission.dropped.clear()
    # now every source holds 1 (a, b, c, device, e) but b, holding 2
    assert admission.admit("f", 0.0) is None and admission.dropped == [tickets["b"][1]]
    admission.dropped.clear()
    # all hold 1: nobody holds two more than a newcomer; a device's one handshake stays
    assert admission.admit("g", 0.0) == "handshakes"
    assert admission.admit("a", 0.0) == "handshakes"  # a holds 1 itself
    assert admission.refused["evicted"] == 3 and admission.refused["handshakes"] == 2
    # the oldest handshake of all still goes once it is evict_after old
    assert admission.admit("g", 60.0) is None and admission.dropped == [tickets["a"][1]]


def test_a_flood_from_many_addresses_leaves_room_for_devices():
    """50 flooding sources at their per-source cap, 256 slots: a device always gets in,
    and a flooder cannot push out a device's handshake."""
    limits = IpLimits(max_handshakes=256, max_handshakes_per_source=8, rate=1e9, burst=10**9)
    admission = Admission(limits)
    devices = [f"127.0.1.{i}" for i in range(1, 65)]
    refused_devices = 0
    device_tickets = set()
    for round_ in range(20):
        for flooder in range(50):
            admission.admit(f"127.0.2.{flooder}", 0.0)
        calling = devices[round_ % 8 :: 8]
        for device in calling:
            if admission.admit(device, 0.0) is None:
                device_tickets.add((device, admission.ticket))
            else:
                refused_devices += 1
        assert not {t for _, t in device_tickets} & set(admission.dropped)
        admission.dropped.clear()
        assert admission.handshakes <= 256
        if round_ % 2:  # the calls of the last two rounds complete their handshakes
            for device, ticket in device_tickets:
                admission.authenticated(device, ticket)
            device_tickets.clear()
    assert refused_devices == 0


def test_the_shares_follow_max_min_fairness():
    limits = IpLimits(max_handshakes=12, max_handshakes_per_source=12, burst=99, evict_after=60)
    admission = Admission(limits)
    for _ in range(12):
        assert admission.admit("greedy", 0.0) is None
    for newcomer in ["x", "y", "z"] * 3:
        assert admission.admit(newcomer, 0.0) is None
    assert [admission.holding(s) for s in ("greedy", "x", "y", "z")] == [3, 3, 3, 3]
    assert admission.admit("x", 0.0) == "handshakes"  # x holds 3: no one holds 5


def test_memory_is_bounded_and_open_handshakes_are_never_forgotten():
    admission = Admission(IpLimits(sources=16, burst=1, rate=1.0, max_handshakes_per_source=1))
    assert admission.admit("held", 0.0) is None
    for index in range(1000):
        admission.admit(f"10.0.{index // 256}.{index % 256}", float(index))
        admission.closed(f"10.0.{index // 256}.{index % 256}", handshaking=True)
    assert admission.sources_tracked <= 16
    # still known to hold its one handshake, not forgotten into a fresh bucket
    assert admission.admit("held", 2000.0) == "source handshakes"


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from(["admit", "auth", "close"])),
        max_size=200,
    )
)
def test_counts_never_go_negative_or_past_the_caps(steps):
    limits = IpLimits(
        max_connections=6, max_handshakes=4, max_handshakes_per_source=3, burst=3, evict_after=0.5
    )
    admission = Admission(limits)
    # per source, its connections: ticket and whether still handshaking
    open_: dict[str, dict[int, bool]] = {s: {} for s in "abcd"}
    now = 0.0
    for source, step in steps:
        now += 0.1
        if step == "admit":
            if admission.admit(source, now) is None:
                open_[source][admission.ticket] = True
            for ticket in admission.dropped:  # as the shell does: no longer a handshake
                (owner,) = [s for s in open_ if ticket in open_[s]]
                assert open_[owner][ticket]
                open_[owner][ticket] = False
            admission.dropped.clear()
        elif step == "auth" and True in open_[source].values():
            ticket = next(t for t, h in open_[source].items() if h)
            open_[source][ticket] = False
            admission.authenticated(source, ticket)
        elif step == "close" and open_[source]:
            ticket = next(iter(open_[source]))
            admission.closed(source, handshaking=open_[source].pop(ticket), ticket=ticket)
        connections = sum(len(v) for v in open_.values())
        handshakes = sum(list(v.values()).count(True) for v in open_.values())
        assert admission.connections == connections <= limits.max_connections
        assert admission.handshakes == handshakes <= limits.max_handshakes
        for s, v in open_.items():
            assert admission.holding(s) == list(v.values()).count(True) <= 3
        most = max(admission.holding(s) for s in open_)
        assert admission._holdings.most == most


def test_sources():
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::9")
    assert source_of("2001:db8:1:2:aaaa::1") != source_of("2001:db8:1:3::1")
    assert source_of("fe80::1%eth0") == "fe80::/64"


def test_a_slow_device_is_not_aged_out_by_a_flooder_that_holds_one_itself():
    limits = IpLimits(max_handshakes=3, max_handshakes_per_source=8, burst=99, evict_after=1.0)
    admission = Admission(limits)
    assert admission.admit("device", 0.0) is None  # its handshake is slow (a loaded centre)
    device = admission.ticket
    assert admission.admit("f1", 0.5) is None and admission.admit("f2", 0.5) is None
    assert admission.admit("f1", 2.0) == "handshakes"  # f1 holds as many as the device
    assert admission.admit("other", 2.0) is None  # holds none: the oldest of all goes
    assert admission.dropped == [device]
