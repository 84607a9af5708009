"""The console's own connection to the store, with its own thread: a long page never
queues behind (or in front of) a commit the bank is waiting for."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from ..store import AsyncStore

T = TypeVar("T")
P = ParamSpec("P")


class ConsoleStore(AsyncStore):
    async def read(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._call(function, *args, **kwargs)
