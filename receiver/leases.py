"""Leadership among the receivers sharing a store: which one runs the supervisor.

`lease_for(store, name)` gives the same small interface on either backend
(`acquire()` -> held now?, `held()`, `release()`):

- PostgreSQL: `store_pg.Lease`, a session advisory lock on a connection of its own; the
  server releases it when the holder's connection ends (process killed, network cut).
- SQLite: one file on one machine, so the receivers that can share it are processes of
  that machine: an exclusive `flock` on a file beside the store, which the kernel
  releases when the holding process dies, even by SIGKILL.

A receiver calls `acquire()` every few seconds; the one that gets True leads until
`held()` says False, and then stops leading at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

from .store import SQLiteStore, Store, StoreUnavailable
from .store_pg import Lease, PostgresStore


class LeaderLease(Protocol):
    def acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def release(self) -> None: ...


class FileLease:
    """The lease on one machine: an exclusive, non-blocking `flock` on `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: cannot open the lease: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(f"{self.path}: cannot take the lease: {exc.strerror}") from None
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def sole_receiver(store: Store) -> FileLease | None:
    """On a SQLite store, the lock that makes its receiver the only one on the file
    (held for the life of the process; None on PostgreSQL, which several receivers
    share). Raises `StoreUnavailable` if another receiver holds it: a SQLite store is
    one site's, and its outbox is not claimed row by row (docs/operations.md)."""
    if not isinstance(store, SQLiteStore):
        return None
    lock = FileLease(store.path.with_name(f"{store.path.name}.receiver"))
    if not lock.acquire():
        raise StoreUnavailable(
            f"{store.path}: another receiver is running on this store; several receivers "
            'need a PostgreSQL store (docs/operations.md, "Several sites on one database")'
        )
    return lock


def lease_for(store: Store, name: str, idle: float | None = None) -> LeaderLease:
    """The lease `name` (e.g. "supervisor") among the receivers sharing `store`; on
    PostgreSQL, lost by a holder that has not checked it for `idle` seconds."""
    if isinstance(store, PostgresStore):
        return Lease(store.dsn, name, timeout=store.timeout, idle=idle)
    if isinstance(store, SQLiteStore):
        return FileLease(store.path.with_name(f"{store.path.name}.lease-{name}"))
    raise TypeError(f"no lease for a {type(store).__name__}")
