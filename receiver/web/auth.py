"""Passwords, roles, session and CSRF tokens, and the login rate limiter.

The limiter is sans-IO: it is told the time of each attempt."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("viewer", "operator", "admin")
"""Each role may do what the ones before it may."""

_hasher = PasswordHasher()
MIN_PASSWORD = 10


class BadPassword(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadPassword(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


_DUMMY: str | None = None
"""A hash to verify against for unknown accounts (made on first use: it costs)."""


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if `password` matches. An unknown account (`None`) costs the same time, so
    response times do not tell which names exist."""
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = _hasher.hash("not a real password, for timing only")
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def may(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a session cookie: a stolen copy of the store cannot be
    replayed as a cookie."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class LoginLimiter:
    """At most `attempts` failed logins per key (an address, an account name) within
    `window` seconds; a success clears the key. Sans-IO: times are given."""

    attempts: int = 5
    window: float = 300.0
    max_keys: int = 10000
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def allowed(self, key: str, now: float) -> bool:
        return len(self._recent(key, now)) < self.attempts

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 if it may now)."""
        times = self._recent(key, now)
        if len(times) < self.attempts:
            return 0.0
        # measured from the window's edge, as `_recent` compares: `t + window - now`
        # rounds to 0 for a t far smaller than the window (still blocked, yet "retry
        # now"), while t > edge gives t - edge > 0 in floating point
        return times[len(times) - self.attempts] - (now - self.window)

    def failed(self, key: str, now: float) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            # bounded memory under a spray of addresses: forget the stalest key
            stalest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[stalest]
        self._recent(key, now)
        self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
