"""The seam between the central's modules and its database driver.

Modules write portable SQL with `?` placeholders and call `execute`, `executemany`,
`transaction()`, `snapshot()` and `savepoint()` on a `Connection`; rows are read by name or
position. Where SQLite and PostgreSQL really differ, a module asks the connection's
`Dialect` for the fragment instead of writing either. Driver errors arrive as the neutral
exceptions below, so no module imports a driver.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

S = TypeVar("S")


class DatabaseError(Exception):
    """Anything the database refused or failed to do."""


class IntegrityError(DatabaseError):
    """A constraint refused the write: a duplicate key, a missing reference, a CHECK."""


class Unavailable(DatabaseError):
    """The database cannot do it now, and later it may: unreachable, shutting down, failing
    over, read-only, full, locked, an I/O error. The transaction it ended left nothing
    behind; the web layer answers 503 with Retry-After and the caller tries again."""


class Row(Protocol):
    """A result row: by column name (`row["id"]`), by position (`row[0]`), `dict(row)`."""

    def __getitem__(self, key: int | str) -> Any: ...
    def keys(self) -> list[str]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


@dataclass(frozen=True)
class PerDialect:
    """A migration step whose SQL differs between the databases: each written natively."""

    sqlite: str
    postgresql: str


class Dialect(ABC):
    """The SQL fragments that differ, and how each database keeps its schema version."""

    name: str

    @abstractmethod
    def json_text(self, column: str, *path: str) -> str:
        """An expression: the text (or number) at `path` of the JSON document in `column`."""

    @abstractmethod
    def greatest(self, a: str, b: str) -> str:
        """An expression: the larger of two values."""

    @abstractmethod
    def least(self, a: str, b: str) -> str:
        """An expression: the smaller of two values."""

    def script(self, step: str | PerDialect) -> str:
        """A migration step's SQL for this database."""
        if isinstance(step, PerDialect):
            return getattr(step, self.name)
        return self.translate_ddl(step)

    def translate_ddl(self, script: str) -> str:
        return script

    @abstractmethod
    def schema_version(self, conn: Connection) -> int:
        """The number of migrations applied; inside the migration lock's transaction."""

    @abstractmethod
    def set_schema_version(self, conn: Connection, version: int, at: str) -> None: ...

    # Appended to a SELECT: lock the rows it returns until the transaction ends (none on
    # SQLite, whose transactions hold the database's one write lock).
    for_update: str = ""

    @abstractmethod
    def lock(self, conn: Connection, name: str) -> None:
        """Wait for the lock called `name`, held until the transaction ends: one process at
        a time does what it guards. Inside a transaction."""

    @abstractmethod
    def try_lock(self, conn: Connection, name: str) -> bool:
        """Take the lock called `name` if nobody holds it; False if somebody does."""

    @abstractmethod
    def lock_migrations(self, conn: Connection) -> None:
        """Take the lock that lets one process at a time migrate; inside a transaction."""


class Connection(ABC):
    """What modules use. Outside a transaction every statement commits on its own."""

    dialect: Dialect

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    @abstractmethod
    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor: ...

    @property
    @abstractmethod
    def in_transaction(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    def pool_stats(self) -> dict[str, int]:
        """The connection pool's figures for monitoring (psycopg_pool's names); none where
        there is no pool (SQLite: one connection per process)."""
        return {}

    # What opens a writing transaction and a consistent read, in this database's words.
    _BEGIN_WRITE = "BEGIN"
    _BEGIN_SNAPSHOT = "BEGIN"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A writing transaction: committed at the end, rolled back on any exception.

        On SQLite it takes the write lock at once (BEGIN IMMEDIATE), so two writers never
        both read-then-write the same balance."""
        self.execute(self._BEGIN_WRITE)
        work = _open_commit_work(self)
        try:
            yield self
            for state, do in work.values():
                do(self, state)
        except BaseException:
            self._rollback()
            raise
        finally:
            _close_commit_work(self)
        try:
            self.execute("COMMIT")
        except BaseException:
            self._rollback()  # a COMMIT that failed may leave the transaction open
            raise

    def _rollback(self) -> None:
        # The database may have ended the transaction itself (SQLite does on a full disk):
        # a ROLLBACK then would hide the error that ended it.
        if self.in_transaction:
            self.execute("ROLLBACK")

    def at_commit(self, name: str, state: Callable[[], S],
                  work: Callable[[Connection, S], None]) -> S | None:
        """Work to do as the open transaction's last writes, just before its COMMIT:
        `work(conn, s)` runs once, with the state `s` that `state()` made at the first
        call by this `name` and that every caller added to. None outside a transaction.

        For marks taken from a counter that must become visible in the order of commits:
        its row is then locked only from the end of the transaction to the COMMIT, so
        concurrent transactions overlap in everything but their commits. What a savepoint
        that rolled back added stays in the state: such work must tolerate a little more
        than was kept."""
        pending = _commit_work(self)
        if pending is None:
            return None
        if name not in pending:
            pending[name] = (state(), work)
        return pending[name][0]

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Several reads that see one state of the database (and write nothing)."""
        self.execute(self._BEGIN_SNAPSHOT)
        try:
            yield self
        finally:
            if self.in_transaction:  # not after a connection lost meanwhile
                self.execute("COMMIT")

    @contextmanager
    def savepoint(self, name: str = "sp") -> Iterator[Connection]:
        """Part of a transaction that an exception undoes alone (then re-raised).

        Code that goes on after a failed part must let `Unavailable` through: the database
        could not do that part, not judge it, and may have ended the whole transaction."""
        self.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            # The database may have ended the whole transaction (SQLite does on a full disk
            # or an I/O error; a lost connection does on PostgreSQL): then there is nothing
            # to roll back to, and the error (Unavailable) must end the transaction's work.
            if self.in_transaction:
                self.execute(f"ROLLBACK TO {name}")
                self.execute(f"RELEASE {name}")
            raise
        self.execute(f"RELEASE {name}")


# The open transactions' work at commit: per thread (a PostgreSQL connection's transactions
# are per thread), per connection.
_COMMIT_WORK = threading.local()


def _commit_work(conn: Connection) -> dict[str, tuple[Any, Callable]] | None:
    return getattr(_COMMIT_WORK, "by_conn", {}).get(id(conn))


def _open_commit_work(conn: Connection) -> dict[str, tuple[Any, Callable]]:
    if not hasattr(_COMMIT_WORK, "by_conn"):
        _COMMIT_WORK.by_conn = {}
    work: dict[str, tuple[Any, Callable]] = {}
    _COMMIT_WORK.by_conn[id(conn)] = work
    return work


def _close_commit_work(conn: Connection) -> None:
    _COMMIT_WORK.by_conn.pop(id(conn), None)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def json_path(path: Sequence[str]) -> list[str]:
    """The keys of a JSON path, checked to be plain names: they are written into SQL."""
    for key in path:
        if not _IDENT.match(key):
            raise ValueError(f"not a plain JSON key: {key!r}")
    return list(path)
