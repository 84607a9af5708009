from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.sun.links import InvalidLink, ack_url, make_token, verify_token

SECRET = b"a-secret-of-enough-length"


@given(st.integers(0, 2**53), st.sampled_from(["ack", "resolve"]), st.floats(0, 4e9))
def test_a_token_verifies_until_it_expires(incident: int, action: str, now: float) -> None:
    token = make_token(SECRET, incident, action, now + 60)
    claim = verify_token(SECRET, token, now, action)
    assert (claim.incident_id, claim.action) == (incident, action)
    with pytest.raises(InvalidLink, match="expired"):
        verify_token(SECRET, token, now + 61)
    with pytest.raises(InvalidLink, match="bad signature"):
        verify_token(b"another-secret-of-length", token, now)


def test_tampering_and_wrong_action_are_refused() -> None:
    token = make_token(SECRET, 7, "ack", 1000)
    body, signature = token.split(".")
    other = make_token(SECRET, 8, "ack", 1000).split(".")[0]
    for forged in (f"{other}.{signature}", body, f"{body}.", f"{body}.!!", "", "."):
        with pytest.raises(InvalidLink):
            verify_token(SECRET, forged, 0)
    with pytest.raises(InvalidLink, match="for ack, not resolve"):
        verify_token(SECRET, token, 0, "resolve")
    # one flipped character anywhere is refused
    for index in range(len(token)):
        flipped = token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]
        with pytest.raises(InvalidLink):
            verify_token(SECRET, flipped, 0)


def test_ack_url_fills_the_template() -> None:
    url = ack_url("https://c.example/ack?t={token}", SECRET, 42, 100.0, 3600.0)
    token = url.split("t=", 1)[1]
    assert verify_token(SECRET, token, 200.0, "ack").incident_id == 42
