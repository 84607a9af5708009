"""Which store a centre uses (a SQLite file or a PostgreSQL DSN) and `callhome-receiver
store copy`, which moves a centre from one to the other without losing a row.

The store is, in this order: the `CALLHOME_STORE_DSN` environment variable (so that a
password need not be written in the config file), else `[centre] store` of the config,
a file name or a `postgresql://` DSN. A DSN is only ever shown without its password.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from callhome import exitcodes

from .config import ENV_DSN, CentreConfig, is_dsn
from .store import AlreadyExists, SQLiteStore, StoreUnavailable

if TYPE_CHECKING:
    from .store_pg import PostgresStore

# psycopg and the copier load only for a PostgreSQL store or `store copy`: every command
# opens its store through here, most of them a SQLite file


def store_location(config: CentreConfig) -> str | Path:
    """The centre's store: the environment's DSN, the config's DSN, or its file."""
    return os.environ.get(ENV_DSN) or config.store_dsn or config.store


def open_store(
    location: str | Path,
    *,
    create: bool = False,
    migrate: bool | None = None,
    timeout: float = 10.0,
    wait: float | None = None,
) -> SQLiteStore | PostgresStore:
    """Open the store at `location` (a path or a DSN); `timeout` is how long to wait
    for a locked file or a silent server; `wait`, once open, for a database connection
    (PostgreSQL only: see `PostgresStore`)."""
    if is_dsn(str(location)):
        from .store_pg import PostgresStore

        return PostgresStore(
            str(location), create=create, migrate=migrate, timeout=timeout, wait=wait
        )
    return SQLiteStore(location, create=create, busy_timeout=timeout, migrate=migrate)


def migrate_store(location: str | Path) -> str:
    """Run the migrations the store lacks; what happened, in one line."""
    from .store_copy import describe

    store = open_store(location, migrate=True, timeout=3.0)
    latest, before = store.latest_version(), store.migrated_from
    store.close()
    if before is None:
        return f"{describe(location)}: schema {latest}, up to date"
    return f"{describe(location)}: migrated from schema {before} to {latest}"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"callhome-receiver: {message}", err=True)
    sys.exit(code)


@click.group("store")
def store_group() -> None:
    """Move a centre's store between SQLite and PostgreSQL."""


@store_group.command("copy")
@click.argument("source")
@click.argument("destination")
def copy_command(source: str, destination: str) -> None:
    """Copy every row of the store SOURCE into DESTINATION, then check both sides table
    by table (rows and a digest of their contents).

    Each is a SQLite file or a postgresql:// DSN (give the password in PGPASSWORD or
    ~/.pgpass rather than on the command line). DESTINATION is created if it does not
    exist, else it must be an up-to-date, empty store. Stop the bank first; then point
    the centre's config (or CALLHOME_STORE_DSN) at DESTINATION."""
    from .store_copy import CopyError, copy_store, describe

    try:
        sums = copy_store(source, destination)
    except (StoreUnavailable, CopyError) as exc:
        _fail(str(exc), exitcodes.STORAGE)
    except AlreadyExists as exc:
        _fail(str(exc), exitcodes.USAGE)
    click.echo(f"copied {describe(source)} to {describe(destination)}")
    click.echo(f"{'table':<20} {'rows':>10}  digest (sha-256 sum, same on both sides)")
    for mine, _ in sums:
        click.echo(f"{mine.table:<20} {mine.rows:>10}  {mine.digest}")
