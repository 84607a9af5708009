"""The states of a virtual modem and every allowed change between them, in one table.

`VirtualModem` never assigns its state directly: it reports an `Event` and `next_state`
looks the pair up in `TRANSITIONS` (the shape of h11's `_state.py` and of
`modem_drivers/hayes/state.py`). A pair that is not in the table is a bug in the
interpreter and raises `ModemStateError`, so a new behaviour cannot add a state change
without saying so here.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    COMMAND = "command"
    OFF_HOOK = "off-hook"  # after `ATD...;` or `ATH1`: off hook, still in command mode
    DIALING = "dialing"
    ANSWERING = "answering"
    ONLINE = "online"
    ONLINE_COMMAND = "online-command"
    STRANDED = "stranded"
    """Off hook after a failed dial, in no mode at all (profiles with
    `swallow_after_failed_dial`): the next command line is swallowed and answered OK."""


class Event(enum.Enum):
    STAY_OFF_HOOK = "ATD...; or ATH1"
    DIAL = "dial"
    ANSWER = "answer"
    LINK_UP = "link up before the far end answered"  # profiles with `connect_on_link`
    CONNECTED = "carrier up"
    ESCAPED = "guard-time escape or &D1 DTR drop"
    RESUMED = "ATO"
    STRANDED = "failed dial leaves the modem off hook"
    ON_HOOK = "hang-up, call failure, carrier loss, reset"


class ModemStateError(RuntimeError):
    """The interpreter tried a state change that `TRANSITIONS` does not allow."""


S = State
E = Event

TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.COMMAND, E.STAY_OFF_HOOK): S.OFF_HOOK,
    (S.OFF_HOOK, E.STAY_OFF_HOOK): S.OFF_HOOK,
    (S.COMMAND, E.DIAL): S.DIALING,
    (S.OFF_HOOK, E.DIAL): S.DIALING,
    (S.COMMAND, E.ANSWER): S.ANSWERING,
    (S.OFF_HOOK, E.ANSWER): S.ANSWERING,
    (S.DIALING, E.LINK_UP): S.ONLINE,
    (S.DIALING, E.CONNECTED): S.ONLINE,
    (S.ANSWERING, E.CONNECTED): S.ONLINE,
    (S.ONLINE, E.ESCAPED): S.ONLINE_COMMAND,
    (S.ONLINE_COMMAND, E.RESUMED): S.ONLINE,
    # A failed dial first goes on hook (and reports), then strands; a bare `ATD` strands
    # an idle modem or one that `ATH1` took off hook.
    (S.COMMAND, E.STRANDED): S.STRANDED,
    (S.OFF_HOOK, E.STRANDED): S.STRANDED,
}
for _state in State:
    TRANSITIONS[(_state, E.ON_HOOK)] = S.COMMAND


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ModemStateError(f"{event.name} is not allowed in state {state.name}") from None
