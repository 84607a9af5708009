"""Exit codes of the `callhome` commands: one table, so scripts can rely on them."""

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
"""The spool (or the centre's store) cannot be used: locked, read-only, full, damaged."""

DIAL_OUTCOMES = {
    Outcome.CONNECTED: OK,
    Outcome.BUSY: BUSY,
    Outcome.NO_ANSWER: NO_ANSWER,
    Outcome.NO_DIALTONE: NO_DIALTONE,
    Outcome.NO_CARRIER: NO_CARRIER,
    Outcome.TIMEOUT: NO_CARRIER,
    Outcome.DELAYED: DIAL_REFUSED,
    Outcome.BLACKLISTED: DIAL_REFUSED,
    Outcome.ERROR: MODEM,
    Outcome.ABORTED: FAILURE,
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
    (STORAGE, "the spool cannot be used (locked, read-only, full, damaged)"),
)
