"""Exit codes of the `callhome` and `callhome-receiver` commands: one table for both,
so scripts (and systemd units) can rely on them; a code means the same at either end."""

from __future__ import annotations

from modem_drivers.hayes import Outcome

OK = 0
FAILURE = 1
"""Something unexpected; the message says what."""
USAGE = 2
"""Bad arguments, a missing or corrupt config or key file."""
MODEM = 3
"""The port cannot be opened, the modem does not answer or rejects its set-up."""
BUSY = 4
NO_ANSWER = 5
NO_DIALTONE = 6
NO_CARRIER = 7
"""No connection came up (or the dial timed out), or it was lost mid-call."""
DIAL_REFUSED = 8
"""The modem refused to dial: DELAYED or BLACKLISTED (ETSI redial rules)."""
REFUSED = 9
"""The centre refused the call: unknown or revoked device, stale call counter."""
PROTOCOL = 10
"""The call connected but the call-home protocol failed (handshake, line errors)."""
STORAGE = 11
"""The spool (client) or the store (centre) cannot be used: locked, read-only, full,
damaged, readable by others, or of an older schema that needs `migrate`."""

CALL_RESULTS = {
    "ok": OK,
    "busy": BUSY,
    "no answer": NO_ANSWER,
    "no dial tone": NO_DIALTONE,
    "no carrier": NO_CARRIER,
    "dropped": NO_CARRIER,
    "dial refused": DIAL_REFUSED,
    "refused": REFUSED,
    "protocol": PROTOCOL,
    "modem": MODEM,
    "aborted": FAILURE,
}
"""What a call (or one dial of it) came to, as `line-test` and `send` report it."""

DIAL_RESULTS = {
    Outcome.CONNECTED: "ok",
    Outcome.BUSY: "busy",
    Outcome.NO_ANSWER: "no answer",
    Outcome.NO_DIALTONE: "no dial tone",
    Outcome.NO_CARRIER: "no carrier",
    Outcome.TIMEOUT: "no carrier",
    Outcome.DELAYED: "dial refused",
    Outcome.BLACKLISTED: "dial refused",
    Outcome.ERROR: "modem",
    Outcome.ABORTED: "aborted",
}

TABLE = (
    (OK, "success"),
    (FAILURE, "unexpected failure"),
    (USAGE, "usage, configuration or key file error"),
    (MODEM, "modem or port failure"),
    (BUSY, "busy"),
    (NO_ANSWER, "no answer"),
    (NO_DIALTONE, "no dial tone"),
    (NO_CARRIER, "no carrier: no connection, or it was lost mid-call"),
    (DIAL_REFUSED, "the modem refused to dial (DELAYED / BLACKLISTED)"),
    (REFUSED, "refused by the centre"),
    (PROTOCOL, "protocol failure after connecting"),
    (STORAGE, "the spool or the store cannot be used (locked, read-only, full, damaged)"),
)
"""Every code with its meaning, as `callhome --help` lists them."""

RECEIVER_CODES = (OK, FAILURE, USAGE, STORAGE)
"""The codes `callhome-receiver` uses (the same meaning as in `TABLE`)."""


def meanings(codes: tuple[int, ...] | None = None) -> list[tuple[int, str]]:
    """(code, meaning) rows of `TABLE`, all of them or only `codes`."""
    return [(code, meaning) for code, meaning in TABLE if codes is None or code in codes]


def for_result(result: str) -> int:
    return CALL_RESULTS.get(result, FAILURE)


def for_dial(outcome: Outcome) -> int:
    return for_result(DIAL_RESULTS[outcome])
