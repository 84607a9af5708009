"""The SQLite base of the spool and the store: errors classified by SQLite's result
code (never by the wording of the message), constraint violations typed apart."""

from __future__ import annotations

import sqlite3

import pytest

from callhome.client.spool import Spool, SpoolError
from callhome.database import ConstraintViolation, explain, primary_code


def coded(message: str, code: int, name: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    exc.sqlite_errorname = name  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("code", "name", "words"),
    [
        (sqlite3.SQLITE_BUSY, "SQLITE_BUSY", "locked by another process"),
        (sqlite3.SQLITE_READONLY, "SQLITE_READONLY", "read-only"),
        (sqlite3.SQLITE_FULL, "SQLITE_FULL", "the disk is full"),
        (sqlite3.SQLITE_IOERR | (3 << 8), "SQLITE_IOERR_WRITE", "disk I/O error"),
        (sqlite3.SQLITE_CORRUPT, "SQLITE_CORRUPT", "damaged"),
        (sqlite3.SQLITE_NOTADB, "SQLITE_NOTADB", "damaged"),
        (sqlite3.SQLITE_CANTOPEN, "SQLITE_CANTOPEN", "cannot open the spool"),
    ],
)
def test_errors_are_classified_by_code_not_by_text(code, name, words):
    # the message says something else entirely: only the code may decide
    assert words in explain(coded("full of locked read-only things", code, name), "the spool")
    assert primary_code(coded("x", code, name)) == code & 0xFF


def test_an_unknown_code_is_named_and_a_python_error_keeps_its_text():
    assert "SQLITE_SCHEMA" in explain(coded("odd", sqlite3.SQLITE_SCHEMA, "SQLITE_SCHEMA"), "x")
    assert explain(sqlite3.ProgrammingError("Cannot operate on a closed database."), "x") == (
        "Cannot operate on a closed database."
    )


def test_a_real_lock_is_reported_as_locked(tmp_path):
    path = tmp_path / "spool.db"
    Spool(path, create=True).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        spool = Spool(path)
        spool._db.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(SpoolError, match="locked by another process"):
            spool.next_call_counter()
        spool.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_constraint_violation_is_its_own_typed_error(tmp_path):
    spool = Spool(tmp_path / "spool.db", create=True)
    try:
        with pytest.raises(ConstraintViolation) as caught, spool._write() as db:
            db.execute("INSERT INTO state VALUES ('epoch', '1')")
        assert caught.value.code_name == "SQLITE_CONSTRAINT_PRIMARYKEY"
        assert not isinstance(caught.value, SpoolError)
        spool.next_call_counter()  # the failed transaction was rolled back
    finally:
        spool.close()
