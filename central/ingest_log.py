"""The ingest sequence: the order in which followers of the journal see its entries.

Re-pricing, campaign budgets and whatever else follows the journal keep a cursor and read
what came after it. Rowid (or serial) order is not safe for that on PostgreSQL: ids are
handed out when rows are written, but transactions commit in another order, so a follower
that has read id 11 may never see an id 10 that commits a moment later.

So every ingest transaction numbers what it applied at its very end, as its last write
before COMMIT: one row per batch in `ingest_log`, numbered from the `ingest` counter. The
counter's row stays locked until that transaction ends, so the next number is taken only
after the previous one has committed (or rolled back, and is taken again): numbers become
visible in order and without gaps, and a follower that has seen N has seen everything
before it. The lock is held only from that update to the commit, so concurrent ingest
transactions (several processes) overlap in everything but their commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from central.db import Connection, Row

# A batch's entries in the ingest sequence: (till, epoch, first seq, last seq).
Range = tuple[str, str, int, int]


def record(conn: Connection, ranges: Sequence[Range]) -> int:
    """Number the batches this transaction applied; the last thing it does before COMMIT.
    Returns the last number taken (0 if there was nothing to number)."""
    if not ranges:
        return 0
    last = int(conn.execute(
        "UPDATE counters SET value = value + ? WHERE name = 'ingest' RETURNING value",
        (len(ranges),)).fetchone()[0])
    first = last - len(ranges) + 1
    conn.executemany(
        "INSERT INTO ingest_log (ingest_seq, till_id, epoch, first_seq, last_seq)"
        " VALUES (?, ?, ?, ?, ?)",
        [(first + i, *r) for i, r in enumerate(ranges)])
    return last


@dataclass(frozen=True)
class Page:
    """Journal entries after a cursor, in ingest order; `upto` is the cursor after them."""

    rows: list[Row]
    upto: int


def entries_after(conn: Connection, cursor: int, limit: int, columns: str,
                  join: str = "") -> Page:
    """The journal entries of the next batches after `cursor`: whole batches, about
    `limit` entries (more if one batch alone is bigger). `columns` are of `journal j`, or
    of what `join` adds to it."""
    batches = conn.execute(
        "SELECT ingest_seq, last_seq - first_seq + 1 AS n FROM ingest_log"
        " WHERE ingest_seq > ? ORDER BY ingest_seq LIMIT ?", (cursor, limit)).fetchall()
    if not batches:
        return Page([], cursor)
    upto, taken = cursor, 0
    for b in batches:
        if taken and taken + b["n"] > limit:
            break
        upto, taken = b["ingest_seq"], taken + b["n"]
    rows = conn.execute(
        f"SELECT {columns} FROM ingest_log l JOIN journal j ON j.till_id = l.till_id"
        f" AND j.epoch = l.epoch AND j.seq BETWEEN l.first_seq AND l.last_seq {join}"
        " WHERE l.ingest_seq > ? AND l.ingest_seq <= ? ORDER BY l.ingest_seq, j.seq",
        (cursor, upto)).fetchall()
    return Page(rows, upto)


def entries_behind(conn: Connection, cursor: int) -> int:
    """How many journal entries lie after `cursor`."""
    return int(conn.execute(
        "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM ingest_log"
        " WHERE ingest_seq > ?", (cursor,)).fetchone()[0])


def claim(conn: Connection, table: str, name: str, cursor: int, upto: int) -> bool:
    """Move a follower's cursor (a row of `table`) from `cursor` to `upto`, first thing in
    its transaction; False if another process moved it meanwhile (then roll back: that
    process has done this work). What makes a follower run once across processes."""
    return conn.execute(
        f"UPDATE {table} SET ingest_seq = ? WHERE name = ? AND ingest_seq = ?",
        (upto, name, cursor)).rowcount == 1
