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
    assert admission.admit("c", 0.0) == "handshakes"  # three open in all
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
    }


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
        st.tuples(st.sampled_from("abc"), st.sampled_from(["admit", "auth", "close"])),
        max_size=200,
    )
)
def test_counts_never_go_negative_or_past_the_caps(steps):
    limits = IpLimits(max_connections=5, max_handshakes=4, max_handshakes_per_source=2, burst=3)
    admission = Admission(limits)
    open_: dict[str, list[bool]] = {"a": [], "b": [], "c": []}  # handshaking per connection
    now = 0.0
    for source, step in steps:
        now += 0.1
        if step == "admit":
            if admission.admit(source, now) is None:
                open_[source].append(True)
        elif step == "auth" and True in open_[source]:
            open_[source][open_[source].index(True)] = False
            admission.authenticated(source)
        elif step == "close" and open_[source]:
            admission.closed(source, handshaking=open_[source].pop())
        connections = sum(len(v) for v in open_.values())
        handshakes = sum(v.count(True) for v in open_.values())
        assert admission.connections == connections <= limits.max_connections
        assert admission.handshakes == handshakes <= limits.max_handshakes
        assert all(v.count(True) <= 2 for v in open_.values())


def test_sources():
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::9")
    assert source_of("2001:db8:1:2:aaaa::1") != source_of("2001:db8:1:3::1")
    assert source_of("fe80::1%eth0") == "fe80::/64"
