"""Signed acknowledge links: a token that says "incident N, this action, until T",
signed with the centre's link secret (HMAC-SHA256), so that the console (a later issue)
can act on a click without a login, and nobody can forge or stretch one. Sans-IO: the
time is a parameter.

Token: base64url(JSON {"i": id, "a": action, "e": expiry}) "." base64url(HMAC).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from dataclasses import dataclass

ACTIONS = ("ack", "resolve")


class InvalidLink(Exception):
    """The token is malformed, forged, for another action, or expired."""


@dataclass(frozen=True)
class LinkClaim:
    incident_id: int
    action: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise InvalidLink("malformed token")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(
        hmac.new(secret, b"callhome-link\0" + body.encode("ascii"), hashlib.sha256).digest()
    )


def make_token(secret: bytes, incident_id: int, action: str, expires: float) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    claim = json.dumps(
        {"i": incident_id, "a": action, "e": math.ceil(expires)}, separators=(",", ":")
    )
    body = _b64(claim.encode())
    return f"{body}.{_sign(secret, body)}"


def verify_token(secret: bytes, token: str, now: float, action: str | None = None) -> LinkClaim:
    """The claim of a genuine, unexpired token (for `action`, when given), else
    InvalidLink."""
    body, dot, signature = token.partition(".")
    if not dot:
        raise InvalidLink("malformed token")
    _unb64(signature)
    if not hmac.compare_digest(_sign(secret, body), signature):
        raise InvalidLink("bad signature")
    try:
        claim = json.loads(_unb64(body))
        result = LinkClaim(int(claim["i"]), str(claim["a"]), float(claim["e"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidLink("malformed token") from exc
    if action is not None and result.action != action:
        raise InvalidLink(f"this link is for {result.action}, not {action}")
    if now >= result.expires:
        raise InvalidLink("this link has expired")
    return result


def ack_url(template: str, secret: bytes, incident_id: int, now: float, ttl: float) -> str:
    return template.replace("{token}", make_token(secret, incident_id, "ack", now + ttl))
