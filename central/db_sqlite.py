"""SQLite behind the seam (central.dbapi): the default, for one store and the demo.

One connection per process, used from the event loop; SQLite has one writer at a time
anyway, and BEGIN IMMEDIATE makes a transaction take that lock before it reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from central.dbapi import (
    Connection,
    DatabaseError,
    Dialect,
    IntegrityError,
    Unavailable,
    json_path,
)


class SQLiteDialect(Dialect):
    name = "sqlite"

    def json_text(self, column: str, *path: str) -> str:
        return f"json_extract({column}, '$.{'.'.join(json_path(path))}')"

    def greatest(self, a: str, b: str) -> str:
        return f"MAX({a}, {b})"

    def least(self, a: str, b: str) -> str:
        return f"MIN({a}, {b})"

    def schema_version(self, conn: Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, conn: Connection, version: int, at: str) -> None:
        conn.execute(f"PRAGMA user_version={int(version)}")

    # One process writes at a time already (BEGIN IMMEDIATE): named locks have nothing to add.
    def lock(self, conn: Connection, name: str) -> None:
        pass

    def try_lock(self, conn: Connection, name: str) -> bool:
        return True

    def lock_migrations(self, conn: Connection) -> None:
        pass  # the migration's BEGIN IMMEDIATE is the lock


DIALECT = SQLiteDialect()


# Primary result codes that say "not now" rather than "never": another process holds the
# file (BUSY, LOCKED), the disk is full or failing (FULL, IOERR), the file cannot be opened
# or its lock protocol failed (CANTOPEN, PROTOCOL), memory ran out (NOMEM). The statement's
# transaction is rolled back (SQLite does it itself on FULL and IOERR); freeing the disk or
# the lock lets the same request succeed, so callers answer 503 and tills resend.
_NOT_NOW = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM,
            sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
            sqlite3.SQLITE_PROTOCOL}


def _neutral(e: sqlite3.Error) -> DatabaseError:
    if isinstance(e, sqlite3.IntegrityError):
        return IntegrityError(str(e))
    code = getattr(e, "sqlite_errorcode", None)
    if (code is not None and code & 0xFF in _NOT_NOW) or "locked" in str(e):
        return Unavailable(str(e))
    return DatabaseError(str(e))


class SQLiteConnection(Connection):
    dialect = DIALECT
    _BEGIN_WRITE = "BEGIN IMMEDIATE"
    _BEGIN_SNAPSHOT = "BEGIN"

    def __init__(self, path: Path | str) -> None:
        self.path = path
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt; a till
        # keeps its journal and resends from whatever acknowledgement the central still holds.
        conn.execute("PRAGMA synchronous=NORMAL")
        # Ingest dirties thousands of index pages a second. A 64 MB page cache keeps them
        # resident, and checkpointing every 16,000 pages (64 MB of WAL) instead of every
        # 1,000 writes each hot page back once per checkpoint rather than once per batch.
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA wal_autocheckpoint=16000")
        conn.execute("PRAGMA foreign_keys=ON")
        self._raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._raw.execute(sql, params)
        except sqlite3.Error as e:
            raise _neutral(e) from e

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        try:
            return self._raw.executemany(sql, seq)
        except sqlite3.Error as e:
            raise _neutral(e) from e

    @property
    def in_transaction(self) -> bool:
        return self._raw.in_transaction

    def close(self) -> None:
        self._raw.close()
