"""Copy a store to another, row for row, between SQLite and PostgreSQL in either
direction, and prove it: after the copy every table is counted and digested on both
sides, and any difference is an error.

The copy reads the tables as the database describes them (not a list kept here), so a
table or column a later migration adds is copied with nothing to change; tables go in
the order of their foreign keys. Ids are kept (identity columns are BY DEFAULT on
PostgreSQL and advanced past the copied ids afterwards). The source is read in one
snapshot; the destination is written in one transaction, so a failed copy leaves it
empty and the copy can simply be run again.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from .config import is_dsn
from .store import SQLiteStore, StoreUnavailable
from .store_pg import PostgresStore, explain, redact

BATCH = 1000
_SKIPPED = ("callhome_schema",)
"""Bookkeeping each store writes for itself (the schema version)."""


@dataclass(frozen=True)
class TableSum:
    """What a table holds, independent of the backend: its row count and a digest of
    its rows (order-independent: the sum of the rows' SHA-256 modulo 2**256, each row
    encoded in canonical CBOR)."""

    table: str
    rows: int
    digest: str


def describe(location: str | Path) -> str:
    """A store as it may be shown: the path, or the DSN without its password."""
    text = str(location)
    return redact(text) if is_dsn(text) else text


class _Side:
    """Raw access to one store's tables, for the copy only."""

    quote = '"'

    def __init__(self, location: str) -> None:
        self.location = location
        self.where = describe(location)

    def tables(self) -> list[str]:
        """The store's tables, each after the tables its foreign keys reference."""
        names, references = self._tables()
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in ordered or name in visiting:
                return
            visiting.add(name)
            for target in sorted(references.get(name, ())):
                if target != name and target in names:
                    visit(target)
            ordered.append(name)

        for name in sorted(names):
            visit(name)
        return [name for name in ordered if name not in _SKIPPED]

    def _tables(self) -> tuple[set[str], dict[str, set[str]]]:
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        raise NotImplementedError

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def insert(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def has_rows(self, table: str) -> bool:
        raise NotImplementedError

    def after_copy(self, table: str) -> None:
        """Whatever the backend needs once a table's rows are in (identity counters)."""

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def select(self, table: str, columns: list[str]) -> str:
        names = ", ".join(f'"{name}"' for name in columns)
        return f'SELECT {names} FROM "{table}"'

    def summary(self, table: str, columns: list[str]) -> TableSum:
        total = count = 0
        for row in self.rows(table, columns):
            count += 1
            total += int.from_bytes(hashlib.sha256(cbor2.dumps(list(row))).digest())
        return TableSum(table, count, f"{total % 2**256:064x}")


class _SQLite(_Side):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        try:
            self.db = sqlite3.connect(location, isolation_level=None)
            self.db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{location}: {exc}") from None

    def _tables(self) -> tuple[set[str], dict[str, set[str]]]:
        names = {
            str(row[0])
            for row in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        return names, {
            name: {str(fk[2]) for fk in self.db.execute(f'PRAGMA foreign_key_list("{name}")')}
            for name in names
        }

    def columns(self, table: str) -> list[str]:
        return [str(col[1]) for col in self.db.execute(f'PRAGMA table_info("{table}")')]

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        cursor = self.db.execute(self.select(table, columns))
        while batch := cursor.fetchmany(BATCH):
            yield from batch

    def has_rows(self, table: str) -> bool:
        return self.db.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is not None

    def insert(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class _Postgres(_Side):
    def __init__(self, location: str) -> None:
        import psycopg

        super().__init__(location)
        try:
            self.db = psycopg.connect(location, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreUnavailable(explain(exc, location)) from None

    def _tables(self) -> tuple[set[str], dict[str, set[str]]]:
        names = {
            str(row[0])
            for row in self.db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                "current_schema() AND table_type = 'BASE TABLE'"
            )
        }
        references: dict[str, set[str]] = {}
        for source, target in self.db.execute(
            "SELECT s.relname, t.relname FROM pg_constraint c "
            "JOIN pg_class s ON s.oid = c.conrelid JOIN pg_class t ON t.oid = c.confrelid "
            "WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"
        ):
            references.setdefault(str(source), set()).add(str(target))
        return names, references

    def columns(self, table: str) -> list[str]:
        return [
            str(row[0])
            for row in self.db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = %s ORDER BY ordinal_position",
                (table,),
            )
        ]

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        with self.db.cursor(name=f"copy_{table}") as cursor:  # server-side: bounded memory
            cursor.execute(self.select(table, columns).encode())
            while batch := cursor.fetchmany(BATCH):
                yield from batch

    def has_rows(self, table: str) -> bool:
        query = f'SELECT 1 FROM "{table}" LIMIT 1'.encode()
        return self.db.execute(query).fetchone() is not None

    def insert(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join(["%s"] * len(columns))
        with self.db.cursor() as cursor:
            cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})'.encode(), rows)

    def after_copy(self, table: str) -> None:
        for (column,) in self.db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = %s AND is_identity = 'YES'",
            (table,),
        ).fetchall():
            # the next id handed out follows the copied ones
            self.db.execute(
                f'SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max("{column}"), 0) '
                f'+ 1, false) FROM "{table}"'.encode(),
                (f'"{table}"', column),
            )

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        with self.db.transaction():
            self.db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield

    def close(self) -> None:
        self.db.close()


def _side(location: str) -> _Side:
    return _Postgres(location) if is_dsn(location) else _SQLite(location)


def _open(location: str, *, create: bool) -> None:
    """Open (or create) the store the normal way: schema checks, version, creation."""
    if is_dsn(location):
        PostgresStore(location, create=create).close()
    else:
        SQLiteStore(location, create=create).close()


def _exists(location: str) -> bool:
    if not is_dsn(location):
        return Path(location).exists()
    import psycopg

    from .store_pg import schema_version

    try:
        with psycopg.connect(location, autocommit=True, connect_timeout=10) as db:
            return schema_version(db) > 0
    except psycopg.Error as exc:
        raise StoreUnavailable(explain(exc, location)) from None


class CopyError(Exception):
    """The copy was refused or does not match its source (the message says which)."""


def copy_store(source: str, destination: str) -> list[tuple[TableSum, TableSum]]:
    """Copy every row of `source` into `destination` (created if missing, else it must
    be an up-to-date, empty store), then sum both sides table by table. Returns the
    (source, destination) sums; raises CopyError when they differ."""
    if describe(source) == describe(destination):
        raise CopyError("source and destination are the same store")
    _open(source, create=False)  # refuses a missing, older or newer store
    _open(destination, create=not _exists(destination))
    src, dst = _side(source), _side(destination)
    try:
        tables = src.tables()
        missing = sorted(set(tables) - set(dst.tables()))
        if missing:
            raise CopyError(f"{dst.where}: has no table {missing[0]} (schema differs)")
        with src.snapshot(), dst.snapshot():
            for table in tables:
                if dst.has_rows(table):
                    raise CopyError(f"{dst.where}: not empty (table {table} has rows)")
            for table in tables:
                columns = src.columns(table)
                if set(columns) - set(dst.columns(table)):
                    raise CopyError(f"{dst.where}: table {table} lacks columns of the source")
                for batch in _batches(src.rows(table, columns)):
                    dst.insert(table, columns, batch)
                dst.after_copy(table)
        with src.snapshot(), dst.snapshot():
            sums = [
                (src.summary(table, src.columns(table)), dst.summary(table, src.columns(table)))
                for table in tables
            ]
    finally:
        src.close()
        dst.close()
    for mine, theirs in sums:
        if mine != theirs:
            raise CopyError(
                f"table {mine.table}: the copy differs from its source ({theirs.rows} rows "
                f"against {mine.rows}, digest {theirs.digest[:12]} against {mine.digest[:12]})"
            )
    return sums


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(tuple(row))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
