"""Passwords, tokens and the login rate limiter (sans-IO: times are given)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from hypothesis import example, given
from hypothesis import strategies as st

from receiver.web import auth
from receiver.web.auth import LoginLimiter


def test_real_hashes_are_argon2id_at_the_library_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_hasher", PasswordHasher())  # conftest makes them cheap
    hashed = auth.hash_password("a long enough password")
    defaults = PasswordHasher()
    assert hashed.startswith("$argon2id$")
    assert f"m={defaults.memory_cost},t={defaults.time_cost}" in hashed
    assert auth.verify_password(hashed, "a long enough password")
    # (a wrong password is refused in test_app, with cheap hashes: each real one costs)


def test_short_passwords_and_unknown_accounts() -> None:
    with pytest.raises(auth.BadPassword):
        auth.hash_password("short")
    assert not auth.verify_password(None, "not for timing only")
    assert not auth.verify_password("not a hash", "whatever")


def test_roles_are_ordered() -> None:
    assert auth.may("admin", "operator") and auth.may("operator", "operator")
    assert not auth.may("viewer", "operator") and not auth.may("root", "viewer")


def test_session_tokens_are_stored_hashed() -> None:
    token = auth.new_token()
    assert len(token) >= 43 and auth.token_hash(token) != token
    assert auth.same_token(token, token) and not auth.same_token(None, token)


def test_the_limiter_blocks_after_n_failures_and_forgets_after_the_window() -> None:
    limiter = LoginLimiter(attempts=3, window=60.0)
    for at in (0.0, 10.0, 20.0):
        assert limiter.allowed("a", at)
        limiter.failed("a", at)
    assert not limiter.allowed("a", 21.0)
    assert limiter.retry_after("a", 21.0) == pytest.approx(39.0)
    assert limiter.allowed("b", 21.0)  # keys are independent
    assert limiter.allowed("a", 60.0)  # the first failure left the window
    limiter.failed("a", 60.0)
    assert not limiter.allowed("a", 61.0)
    limiter.succeeded("a")
    assert limiter.allowed("a", 61.0)


@given(
    st.lists(st.floats(min_value=0.0, max_value=1000.0), max_size=30),
    st.floats(min_value=0.0, max_value=1100.0),
)
@example(times=[1.4837515464526037e-25, 1.0, 1.0, 100.0], now=100.0)  # found by a stress run
def test_allowed_iff_fewer_than_n_failures_in_the_window(times: list[float], now: float) -> None:
    limiter = LoginLimiter(attempts=4, window=100.0)
    times = sorted(times)
    for at in times:
        limiter.failed("k", at)
    now = max([now, *times])
    recent = [t for t in times if t > now - 100.0]
    assert limiter.allowed("k", now) == (len(recent) < 4)
    assert (limiter.retry_after("k", now) > 0) == (len(recent) >= 4)


def test_memory_is_bounded_under_a_spray_of_keys() -> None:
    limiter = LoginLimiter(attempts=2, window=60.0, max_keys=100)
    for number in range(1000):
        limiter.failed(f"address:{number}", float(number) / 100)
    assert len(limiter._failures) <= 100
