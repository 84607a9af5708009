"""Which pre-authentication handshake work the TCP listener does next, sans-IO.

An HS1 costs the centre a Diffie-Hellman (two for a device's, and two more for its
answer) and costs a forger nothing: a flood that gets past the listener's limits still
brings a steady stream of HS1s. Processed as they arrive, they sit in the event loop
ahead of a device's own HS1 and of the records of calls already authenticated. So the
listener does not process an HS1 when its bytes arrive: it queues it here, by source
address, and every turn of the event loop serves at most `budget` of them; everything
else the loop has to do (authenticated records, acknowledgements, accepting) runs
between two turns. Served in round robin by source (deficit round robin with equal
costs: one HS1 is one unit of work), a source's queued HS1 waits at most one round —
one HS1 of each other source with work queued when it arrived — however many the
flooders hold. The queue is bounded: beyond `capacity`, the oldest item of the source
holding the most is dropped (its connection is reset and counted).

Items are opaque hashable keys (the listener's tickets); no clock, no I/O: the listener
calls `admit` when a connection has a whole HS1 (served at once while nothing waits and
the turn's budget lasts: no queueing cost when there is no contention, which is most of
the time), `turn` once per loop turn while work waits or the budget is spent, and
`cancel` when a connection ends while its item waits (nothing to answer: no DH).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)


@dataclass
class Holdings:
    """How many items (handshakes, queued HS1s) each source holds, indexed by count so
    that the source holding the most is found at once when a shared cap is reached:
    of several holding as many, the first to reach that count."""

    _by_count: dict[int, dict[str, None]] = field(default_factory=dict)
    """n -> the sources holding n items (n >= 1), in the order they reached n."""
    most: int = 0
    """The most items any source holds."""

    def move(self, source: str, held: int, step: int) -> None:
        """`source` goes from holding `held` items to `held + step`."""
        if held:
            sources = self._by_count[held]
            del sources[source]
            if not sources:
                del self._by_count[held]
        if held + step:
            self._by_count.setdefault(held + step, {})[source] = None
        self.most = max(self.most, held + step)
        while self.most and self.most not in self._by_count:
            self.most -= 1

    def greediest(self) -> str:
        """The source holding `most` (there must be one)."""
        return next(iter(self._by_count[self.most]))


@dataclass
class HandshakeQueue(Generic[Item]):
    capacity: int = 1024
    """Items queued in all, at most (memory and the longest wait are bounded by it)."""
    budget: int = 4
    """Items served per turn of the event loop."""
    dropped: int = 0
    """Items dropped to stay within `capacity` (returned by `push`)."""
    served: int = 0
    spent: int = 0
    """Items served since the last `turn` began (at once by `admit`, or by it)."""
    _queues: dict[str, dict[Item, None]] = field(default_factory=dict)
    """source -> its items, oldest first; the dict's order is the round's order: the
    source served next first, a source that has just been served moves to the end."""
    _source: dict[Item, str] = field(default_factory=dict)
    _holdings: Holdings = field(default_factory=Holdings)

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.budget < 1:
            raise ValueError("capacity and budget must be at least 1")

    def __len__(self) -> int:
        return len(self._source)

    def __contains__(self, item: object) -> bool:
        return item in self._source

    def holding(self, source: str) -> int:
        queue = self._queues.get(source)
        return 0 if queue is None else len(queue)

    @property
    def sources(self) -> int:
        """Sources with work queued."""
        return len(self._queues)

    def admit(self, source: str, item: Item) -> tuple[bool, list[Item]]:
        """`item` of `source` has its HS1: (True, []) serve it now, when nothing is
        queued and the turn's budget is not spent (nobody is passed over); otherwise
        it is queued: (False, the items dropped for it, as `push`)."""
        if not self._source and self.spent < self.budget:
            self.spent += 1
            self.served += 1
            return True, []
        return False, self.push(source, item)

    @property
    def pending(self) -> bool:
        """A `turn` is due: work is queued, or the budget of this turn is spent (the
        next turn gives it back)."""
        return bool(self._source) or self.spent > 0

    def push(self, source: str, item: Item) -> list[Item]:
        """Queue `item` of `source` (an item already queued stays where it is). Returns
        the items dropped to stay within `capacity`: the oldest of the source holding
        the most (which may be `source`'s own, even `item` if it is its only one and
        every source holds one)."""
        if item in self._source:
            return []
        queue = self._queues.get(source)
        if queue is None:
            queue = self._queues[source] = {}  # a new source joins the end of the round
        self._holdings.move(source, len(queue), +1)
        queue[item] = None
        self._source[item] = source
        dropped: list[Item] = []
        while len(self._source) > self.capacity:
            greediest = self._holdings.greediest()
            victim = next(iter(self._queues[greediest]))
            self._remove(victim)
            dropped.append(victim)
        self.dropped += len(dropped)
        return dropped

    def cancel(self, item: Item) -> bool:
        """Forget `item` (its connection ended: nothing to serve). False if it was not
        queued (already served or dropped)."""
        if item not in self._source:
            return False
        self._remove(item)
        return True

    def turn(self) -> list[Item]:
        """A new turn: the items to serve now, at most `budget`, one per source in the
        round's order, a source served moving to the end of the round; `admit` serves
        at once only what budget they leave."""
        served: list[Item] = []
        queues = self._queues
        while queues and len(served) < self.budget:
            source = next(iter(queues))
            item = next(iter(queues[source]))
            self._remove(item)
            if source in queues:  # more of its work: its next item waits a round
                queues[source] = queues.pop(source)
            served.append(item)
        self.served += len(served)
        self.spent = len(served)
        return served

    def _remove(self, item: Item) -> None:
        source = self._source.pop(item)
        queue = self._queues[source]
        self._holdings.move(source, len(queue), -1)
        del queue[item]
        if not queue:
            del self._queues[source]
