"""Whatever a DTE types, in whatever pieces and at whatever times, the modem never raises.

Every state change now goes through `states.TRANSITIONS`, which raises on a pair it does
not know: random command scripts against every profile, both ends of a call, check that
no reachable sequence hits one.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modem_drivers.virtual import PROFILES, PhoneNetwork

TOKENS = [
    b"AT",
    b"ATD222",
    b"ATD333",
    b"ATDT127.0.0.1:6400",
    b"ATD",
    b"ATD222;",
    b"ATA",
    b"ATO",
    b"ATH",
    b"ATH0",
    b"ATH1",
    b"ATZ",
    b"AT&F",
    b"ATS0=1",
    b"ATS0=0",
    b"AT+VCID=1",
    b"AT+GCAP",
    b"AT+DR=1",
    b"ATV0",
    b"ATE1",
    b"A/",
    b"+++",
    b"\r",
    b"data",
    b"\x00\xff",
    b"<cut>",
    b"<reset>",
    b"<unplug>",
    b"<plug>",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    caller_profile=st.sampled_from(sorted(PROFILES)),
    callee_profile=st.sampled_from(sorted(PROFILES)),
    steps=st.lists(
        st.tuples(
            st.booleans(),  # which modem types
            st.sampled_from(TOKENS),
            st.sampled_from([0.0, 0.05, 0.5, 1.5, 5.0, 45.0]),
            st.booleans(),  # DTR
        ),
        max_size=25,
    ),
)
def test_no_script_breaks_the_state_table(caller_profile, callee_profile, steps):
    network = PhoneNetwork()
    a = network.add_modem("a", caller_profile, number="111")
    b = network.add_modem("b", callee_profile, number="127.0.0.1:6400")
    network.add_hunt_group("222", ["b"])
    network.add_modem("busy", "generic", number="333").set_dtr(True)
    for modem in (a, b):
        modem.set_dtr(True)
    for to_b, token, wait, dtr in steps:
        modem = b if to_b else a
        modem.set_dtr(dtr)
        if token == b"<cut>":
            network.cut(modem.name)
        elif token == b"<reset>":
            modem.power_cycle()
        elif token == b"<unplug>":
            network.unplug(modem.name)
        elif token == b"<plug>":
            network.plug(modem.name)
        else:
            modem.receive(token + (b"\r" if token.startswith(b"AT") else b""))
        network.run_for(wait)
        modem.take_output()
    network.run_for(120)
