"""The phases of a call-home session: every allowed change in one table.

    client:  HANDSHAKE --accepting HS2--> ESTABLISHED --all answered + centre FIN--> CLOSED
    centre:  HANDSHAKE --HS1 read--> AWAITING_DECISION --accept()--> ACCEPTED
                 --first authenticated record (liveness)--> ESTABLISHED --FIN + linger--> CLOSED
             AWAITING_DECISION --refuse() / unknown version--> CLOSED
    both:    any phase but CLOSED and FAILED --error, deadline, abort()--> FAILED

`advance()` is the only way a session changes phase; anything the table does not list
is a bug in the session (not bad input: input never reaches this far unchecked) and
raises `PhaseError`.
"""

from __future__ import annotations

import enum


class Role(enum.Enum):
    CLIENT = "client"
    CENTRE = "centre"


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    AWAITING_DECISION = "awaiting decision"
    ACCEPTED = "accepted"
    """Centre: HS2 sent, the keys are in place; the caller has not yet proved it is live."""
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"


P = Phase

TRANSITIONS: dict[Role, dict[Phase, frozenset[Phase]]] = {
    Role.CLIENT: {
        P.HANDSHAKE: frozenset({P.ESTABLISHED, P.FAILED}),
        P.ESTABLISHED: frozenset({P.CLOSED, P.FAILED}),
    },
    Role.CENTRE: {
        P.HANDSHAKE: frozenset({P.AWAITING_DECISION, P.FAILED}),
        P.AWAITING_DECISION: frozenset({P.ACCEPTED, P.CLOSED, P.FAILED}),
        P.ACCEPTED: frozenset({P.ESTABLISHED, P.FAILED}),
        P.ESTABLISHED: frozenset({P.CLOSED, P.FAILED}),
    },
}

FINAL = frozenset({P.CLOSED, P.FAILED})
KEYED = frozenset({P.ACCEPTED, P.ESTABLISHED})
"""Phases with transport keys: DATA and ACK frames are read."""


class PhaseError(RuntimeError):
    """A session tried a phase change the table does not allow (a bug)."""


def advance(role: Role, current: Phase, target: Phase) -> Phase:
    """The new phase, if the table allows `current` -> `target` for `role`."""
    if target not in TRANSITIONS[role].get(current, frozenset()):
        raise PhaseError(f"{role.value}: {current.value} -> {target.value} is not allowed")
    return target
