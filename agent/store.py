"""The till's SQLite store: one file, WAL mode, schema by registered migrations.

Only this module opens the database. Every multi-step write goes through `db.atomic()`, so a
receipt, its journal entry and its outbox row commit together or not at all.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("tillpoint-agent")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        -- The journal: append-only, gapless seq within the epoch, each entry chained.
        CREATE TABLE journal (
            seq INTEGER PRIMARY KEY, epoch TEXT NOT NULL, hash TEXT NOT NULL,
            prev_hash TEXT NOT NULL, kind TEXT NOT NULL, receipt_id TEXT NOT NULL UNIQUE,
            customer_id TEXT, earned INTEGER NOT NULL, redeemed INTEGER NOT NULL,
            clawback INTEGER NOT NULL, refund INTEGER NOT NULL, fiscal_doc INTEGER NOT NULL,
            at TEXT NOT NULL, body BLOB NOT NULL
        );
        CREATE INDEX journal_customer ON journal(customer_id, seq);
        -- What the central has not acknowledged yet; rows go only once acknowledged.
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY);
        -- A checkout between "about to print" and "printed and journalled".
        CREATE TABLE pending (
            receipt_id TEXT PRIMARY KEY, kind TEXT NOT NULL, created_at TEXT NOT NULL,
            fiscal_before INTEGER NOT NULL, entry BLOB NOT NULL, fiscal BLOB NOT NULL
        );
        -- Sales this till made, for returns against them.
        CREATE TABLE receipts (
            receipt_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, customer_id TEXT,
            fiscal_doc INTEGER NOT NULL, at TEXT NOT NULL, ruleset_version INTEGER NOT NULL,
            lines BLOB NOT NULL, settlement BLOB NOT NULL,
            returned TEXT NOT NULL DEFAULT '{}'
        );
        -- What the central last told this till about customers.
        CREATE TABLE customers (
            id TEXT PRIMARY KEY, tier TEXT, segments TEXT NOT NULL DEFAULT '[]',
            available INTEGER NOT NULL, pending INTEGER NOT NULL, debt INTEGER NOT NULL,
            as_of_epoch TEXT, as_of_seq INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE cards (token TEXT PRIMARY KEY, customer_id TEXT NOT NULL);
        CREATE TABLE rulesets (
            version INTEGER PRIMARY KEY, activates_at TEXT NOT NULL, doc BLOB NOT NULL,
            received_at TEXT NOT NULL
        );
        """
    )
    # A new database is a new epoch: sequence numbers of an older database (lost, or
    # restored from a backup) can never be confused with this one's.
    db.execute("INSERT INTO meta VALUES ('epoch', ?)", [uuid.uuid4().hex])
    db.execute("INSERT INTO meta VALUES ('acked_seq', '0')")
    db.execute("INSERT INTO meta VALUES ('customer_cursor', '0')")


@migrations()
def m002_journal_keyed_by_epoch(db: sqlite_utils.Database) -> None:
    # A restored database starts a new epoch (agent.epochs), and the entries of the old one
    # stay: so the journal is keyed by (epoch, seq), in the order entries were written.
    db.executescript(
        """
        CREATE TABLE journal_by_epoch (
            id INTEGER PRIMARY KEY, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
            hash TEXT NOT NULL, prev_hash TEXT NOT NULL, kind TEXT NOT NULL,
            receipt_id TEXT NOT NULL, customer_id TEXT, earned INTEGER NOT NULL,
            redeemed INTEGER NOT NULL, clawback INTEGER NOT NULL, refund INTEGER NOT NULL,
            fiscal_doc INTEGER NOT NULL, at TEXT NOT NULL, body BLOB NOT NULL,
            UNIQUE (epoch, seq), UNIQUE (epoch, receipt_id)
        );
        INSERT INTO journal_by_epoch (epoch, seq, hash, prev_hash, kind, receipt_id,
            customer_id, earned, redeemed, clawback, refund, fiscal_doc, at, body)
          SELECT epoch, seq, hash, prev_hash, kind, receipt_id, customer_id, earned, redeemed,
                 clawback, refund, fiscal_doc, at, body FROM journal ORDER BY seq;
        DROP TABLE journal;
        ALTER TABLE journal_by_epoch RENAME TO journal;
        CREATE INDEX journal_customer ON journal(customer_id, epoch, seq);
        CREATE TABLE outbox_by_epoch (epoch TEXT NOT NULL, seq INTEGER NOT NULL,
                                      PRIMARY KEY (epoch, seq));
        INSERT INTO outbox_by_epoch SELECT (SELECT value FROM meta WHERE key = 'epoch'), seq
          FROM outbox;
        DROP TABLE outbox;
        ALTER TABLE outbox_by_epoch RENAME TO outbox;
        """
    )


@migrations()
def m003_customer_profile(db: sqlite_utils.Database) -> None:
    # What the rules engine needs of a customer beyond the balance (birthday, activated
    # offers, purchases, tier-window spend), as the central sent it.
    db.execute("ALTER TABLE customers ADD COLUMN profile TEXT NOT NULL DEFAULT '{}'")


@migrations()
def m004_campaign_allowances(db: sqlite_utils.Database) -> None:
    # Campaign budgets (agent.campaign_allowances): the caps the central sent with the last
    # delta, each customer's remaining per-customer allowances, and what this till granted
    # of budgeted campaigns, so it can subtract what the central has not counted yet.
    db.executescript(
        """
        ALTER TABLE customers ADD COLUMN allowances TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE customers ADD COLUMN allowances_seq INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE campaign_budgets (
            campaign_id TEXT PRIMARY KEY, till_remaining INTEGER, per_customer INTEGER,
            period TEXT NOT NULL
        );
        CREATE TABLE grants (
            epoch TEXT NOT NULL, seq INTEGER NOT NULL, campaign_id TEXT NOT NULL,
            customer_id TEXT, points INTEGER NOT NULL, at TEXT NOT NULL,
            PRIMARY KEY (epoch, seq, campaign_id)
        );
        CREATE INDEX grants_customer ON grants(customer_id, epoch, seq);
        """
    )


@migrations()
def m005_customer_lots(db: sqlite_utils.Database) -> None:
    # The lots behind a customer's balance as the central last sent them (JSON), so the
    # till sees points activate and expire on time while offline (agent.customers.view).
    db.execute("ALTER TABLE customers ADD COLUMN lots TEXT")


@migrations()
def m006_pos_idempotency_keys(db: sqlite_utils.Database) -> None:
    # The POS's idempotency keys (agent.pos_requests), written with the pending row and
    # settled with the journal entry or the drop: state pending | done | cancelled, and
    # `result` the answer a retry gets (the outcome, or how it was cancelled).
    db.executescript(
        """
        CREATE TABLE pos_requests (
            idem_key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, body_hash TEXT NOT NULL,
            receipt_id TEXT NOT NULL, state TEXT NOT NULL, result TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX pos_requests_receipt ON pos_requests(receipt_id);
        """
    )


@migrations()
def m007_sale_payments(db: sqlite_utils.Database) -> None:
    # How each sale was paid (protocol.payments), so its returns go back the same way.
    db.execute("ALTER TABLE receipts ADD COLUMN payments BLOB")


@migrations()
def m008_cards_by_customer(db: sqlite_utils.Database) -> None:
    # A customer delta replaces the customer's cards: without this index each change
    # scanned every card of a million members.
    db.execute("CREATE INDEX IF NOT EXISTS cards_customer ON cards(customer_id)")


@migrations()
def m009_campaign_leases(db: sqlite_utils.Database) -> None:
    # Budget allowances are leases (central.campaign_budgets): until when this till may
    # grant from its allowance of a campaign without a sync.
    db.execute("ALTER TABLE campaign_budgets ADD COLUMN lease_expires TEXT")


@migrations()
def m010_blocks(db: sqlite_utils.Database) -> None:
    # Customers and cards head office blocked, with the reason the cashier is shown
    # (central.blocks); NULL where not blocked.
    db.executescript("""
        ALTER TABLE customers ADD COLUMN blocked TEXT;
        ALTER TABLE cards ADD COLUMN blocked TEXT;
        """)


@migrations()
def m011_phones(db: sqlite_utils.Database) -> None:
    # Customers' phones as keyed tokens only (protocol.phones), for identification by a
    # phone number the cashier types; by customer, as a delta replaces a customer's phones.
    db.executescript("""
        CREATE TABLE phones (token TEXT PRIMARY KEY, customer_id TEXT NOT NULL);
        CREATE INDEX phones_customer ON phones(customer_id);
        """)


def open_store(path: Path | str) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path)
    db.enable_wal()
    db.execute("PRAGMA synchronous=FULL")  # a till's journal must survive a power cut
    migrations.apply(db)
    return db


@contextlib.contextmanager
def without_fsync(db: sqlite_utils.Database) -> Iterator[None]:
    """Commits without an fsync, for a copy of the central's data that is sent again if
    lost: an fsync on the event loop stalls the POS API for as long as the disk takes.
    Only around code that does not await: the journal's commits stay fully synchronous
    (and flush these with them)."""
    before = db.execute("PRAGMA synchronous").fetchone()[0]
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        db.execute(f"PRAGMA synchronous={int(before)}")


def path_of(db: sqlite_utils.Database) -> str:
    """The store's file ("" for an in-memory one), for a worker thread's own connection."""
    return db.execute("PRAGMA database_list").fetchone()[2] or ""


def checkpoint(path: str) -> None:
    """Copy the write-ahead log into the database file, on a connection of the calling
    (worker) thread's own. PASSIVE: it neither waits for the writer nor blocks it."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()


def get_meta(db: sqlite_utils.Database, key: str, default: str | None = None) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])
