"""The central's SQLite database: connection settings, transactions and schema migrations.

Every module that touches the database takes a connection from here; the schema lives in
one list of migrations, applied in order and recorded, so an old database upgrades itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS: list[str] = [
    # 1: the walking skeleton's schema
    """
    CREATE TABLE tills (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, store TEXT NOT NULL,
        public_key TEXT NOT NULL UNIQUE, status TEXT NOT NULL DEFAULT 'active',
        enrolled_at TEXT NOT NULL, last_sync_at TEXT,
        current_epoch TEXT, acked_seq INTEGER NOT NULL DEFAULT 0, last_hash TEXT
    );
    CREATE TABLE till_epochs (
        till_id TEXT NOT NULL REFERENCES tills(id), epoch TEXT NOT NULL,
        acked_seq INTEGER NOT NULL, last_hash TEXT NOT NULL, started_at TEXT NOT NULL,
        PRIMARY KEY (till_id, epoch)
    );
    CREATE TABLE enrolment_tokens (
        token_hash TEXT PRIMARY KEY, store TEXT NOT NULL, created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL, used_at TEXT, till_id TEXT
    );
    CREATE TABLE journal (
        till_id TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
        hash TEXT NOT NULL, prev_hash TEXT NOT NULL, kind TEXT NOT NULL,
        receipt_id TEXT NOT NULL, customer_id TEXT, body BLOB NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (till_id, epoch, seq)
    );
    CREATE TABLE customers (
        id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', phone TEXT UNIQUE,
        tier TEXT, segments TEXT NOT NULL DEFAULT '[]',
        debt INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
        change_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX customers_change ON customers(change_seq);
    CREATE TABLE cards (
        token TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
        last4 TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE INDEX cards_customer ON cards(customer_id);
    CREATE TABLE lots (
        id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
        till_id TEXT, receipt_id TEXT, points INTEGER NOT NULL,
        remaining INTEGER NOT NULL, activates_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'expired'))
    );
    CREATE INDEX lots_customer ON lots(customer_id, status, expires_at);
    CREATE INDEX lots_receipt ON lots(till_id, receipt_id);
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
        points INTEGER NOT NULL, at TEXT NOT NULL, till_id TEXT, seq INTEGER,
        receipt_id TEXT, actor TEXT, reason TEXT
    );
    CREATE INDEX ledger_customer ON ledger(customer_id, id);
    CREATE INDEX ledger_receipt ON ledger(till_id, receipt_id);
    CREATE TABLE redemption_lots (
        ledger_id INTEGER NOT NULL REFERENCES ledger(id), lot_id INTEGER NOT NULL,
        points INTEGER NOT NULL
    );
    CREATE INDEX redemption_lots_ledger ON redemption_lots(ledger_id);
    CREATE TABLE receipts (
        till_id TEXT NOT NULL, receipt_id TEXT NOT NULL, kind TEXT NOT NULL,
        customer_id TEXT, store TEXT NOT NULL, total INTEGER NOT NULL,
        earned INTEGER NOT NULL, redeemed INTEGER NOT NULL, clawback INTEGER NOT NULL,
        refund INTEGER NOT NULL, original_receipt_id TEXT, at TEXT NOT NULL,
        ruleset_version INTEGER NOT NULL,
        PRIMARY KEY (till_id, receipt_id)
    );
    CREATE TABLE rulesets (
        version INTEGER PRIMARY KEY, doc TEXT NOT NULL, published_at TEXT NOT NULL,
        activates_at TEXT NOT NULL, actor TEXT NOT NULL
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL,
        severity TEXT NOT NULL, till_id TEXT, customer_id TEXT, message TEXT NOT NULL
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO counters VALUES ('customer_change', 0);
    """,
    # 2: offline caps per programme, and the central's re-pricing check of each sale
    """
    CREATE TABLE offline_caps (
        id INTEGER PRIMARY KEY CHECK (id = 1), redeem_per_receipt INTEGER,
        redeem_per_card_day INTEGER, till_outstanding INTEGER, max_offline_s INTEGER,
        updated_at TEXT NOT NULL, actor TEXT NOT NULL
    );
    CREATE TABLE repricing (
        name TEXT PRIMARY KEY, last_rowid INTEGER NOT NULL, checked INTEGER NOT NULL,
        mismatches INTEGER NOT NULL
    );
    INSERT INTO repricing VALUES ('journal', 0, 0, 0);
    """,
    # 3: what the rules engine knows of a customer beyond the balance: birthday, personal
    # offers they activated, purchases, and spend in the current tier window
    """
    ALTER TABLE customers ADD COLUMN birthday TEXT;
    ALTER TABLE customers ADD COLUMN offers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE customers ADD COLUMN purchases INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE customers ADD COLUMN window_start TEXT;
    ALTER TABLE customers ADD COLUMN window_spend INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: a rule set's tiers section on its own, so deltas and ingest read it without parsing
    # a document of thousands of campaigns
    """
    ALTER TABLE rulesets ADD COLUMN tiers TEXT;
    UPDATE rulesets SET tiers = json_extract(doc, '$.tiers');
    """,
    # 5: campaign budgets (central.campaign_budgets). Each rule set's budgets on their own,
    # written at publish (back-filled here), so deltas never parse 10,000 campaigns; what
    # each budgeted campaign granted, in total and per customer per period; and how far
    # the accounting has followed the journal, overall and per till epoch.
    """
    CREATE TABLE campaign_budgets (
        ruleset_version INTEGER NOT NULL, campaign_id TEXT NOT NULL, total INTEGER,
        per_customer INTEGER, period TEXT NOT NULL,
        PRIMARY KEY (ruleset_version, campaign_id)
    );
    INSERT INTO campaign_budgets
      SELECT r.version, json_extract(c.value, '$.id'), json_extract(c.value, '$.budget.total'),
             json_extract(c.value, '$.budget.per_customer'),
             COALESCE(json_extract(c.value, '$.budget.period'), 'campaign')
      FROM rulesets r, json_each(r.doc, '$.campaigns') c
      WHERE json_extract(c.value, '$.budget') IS NOT NULL;
    CREATE TABLE campaign_usage (campaign_id TEXT PRIMARY KEY, used INTEGER NOT NULL);
    CREATE TABLE campaign_customer_usage (
        customer_id TEXT NOT NULL, campaign_id TEXT NOT NULL, period_key TEXT NOT NULL,
        used INTEGER NOT NULL, PRIMARY KEY (customer_id, campaign_id, period_key)
    );
    CREATE TABLE budget_accounting (name TEXT PRIMARY KEY, last_rowid INTEGER NOT NULL);
    INSERT INTO budget_accounting VALUES ('journal', 0);
    CREATE TABLE budget_accounted (
        till_id TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (till_id, epoch)
    );
    """,
    # 6: ledger rows by receipt are looked up for one thing: a return's refund finds the
    # receipt's redemption. Indexing redeem rows only spares ingest an index entry for
    # every other row (most of them earnings).
    """
    DROP INDEX ledger_receipt;
    CREATE INDEX ledger_redeem_receipt ON ledger(till_id, receipt_id) WHERE kind = 'redeem';
    """,
    # 7: offers a purchase granted for the next one (cross-offers), with their expiry; used
    # once, unlike the personal offers head office activates
    """
    ALTER TABLE customers ADD COLUMN granted_offers TEXT NOT NULL DEFAULT '{}';
    """,
    # 8: the maturing job finds lots the clock has made due (central.ledger.due_customers);
    # partial, so ingest pays for an index entry only while a lot can still change by time
    """
    CREATE INDEX lots_activation_due ON lots(activates_at) WHERE status = 'pending';
    CREATE INDEX lots_expiry_due ON lots(expires_at) WHERE status = 'active';
    """,
    # 9: card tokens carry the version of the card key that made them; a card whose key has
    # retired keeps its customer and last four digits until it is linked again
    """
    ALTER TABLE cards ADD COLUMN key_version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE cards ADD COLUMN retired_at TEXT
    """,
    # 10: returns anywhere in the chain. A sale's lots and redemption are found by its
    # receipt id alone (a return may be taken at another till); the central's copy of a
    # sale by its receipt id; what of each sale has been returned; leases on returning it.
    """
    DROP INDEX lots_receipt;
    CREATE INDEX lots_receipt ON lots(receipt_id);
    DROP INDEX ledger_redeem_receipt;
    CREATE INDEX ledger_redeem_receipt ON ledger(receipt_id) WHERE kind = 'redeem';
    CREATE INDEX journal_sale ON journal(receipt_id) WHERE kind = 'sale';
    CREATE TABLE sale_returns (receipt_id TEXT PRIMARY KEY, returned TEXT NOT NULL);
    CREATE TABLE return_leases (
        id TEXT PRIMARY KEY, receipt_id TEXT NOT NULL, till_id TEXT NOT NULL,
        lines TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'confirmed', 'released'))
    );
    CREATE INDEX return_leases_receipt ON return_leases(receipt_id, status);
    """,
    # 11: alerts that count repeats (failed authentications: one per source and period),
    # with the source address, and head office's acknowledgement
    """
    ALTER TABLE alerts ADD COLUMN source TEXT;
    ALTER TABLE alerts ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE alerts ADD COLUMN last_at TEXT;
    ALTER TABLE alerts ADD COLUMN acked_at TEXT;
    ALTER TABLE alerts ADD COLUMN acked_by TEXT;
    UPDATE alerts SET last_at = at;
    CREATE INDEX alerts_source ON alerts(source, kind, id) WHERE source IS NOT NULL;
    """,
    # 12: a till's word checked before it is credited (central.credits, central.quarantine,
    # central.deliveries): lots on hold until re-priced or while their till is quarantined;
    # the sale time the central accepted; what each till was sent.
    """
    ALTER TABLE lots ADD COLUMN hold TEXT;
    CREATE INDEX lots_held ON lots(till_id, hold) WHERE hold IS NOT NULL;
    ALTER TABLE journal ADD COLUMN sold_at TEXT;
    ALTER TABLE tills ADD COLUMN last_sold_at TEXT;
    ALTER TABLE tills ADD COLUMN quarantined_at TEXT;
    ALTER TABLE tills ADD COLUMN quarantine_reason TEXT;
    CREATE TABLE till_rulesets (
        till_id TEXT NOT NULL, version INTEGER NOT NULL, delivered_at TEXT NOT NULL,
        PRIMARY KEY (till_id, version)
    );
    CREATE TABLE till_views (
        id INTEGER PRIMARY KEY, till_id TEXT NOT NULL, customer_id TEXT NOT NULL,
        delivered_at TEXT NOT NULL, view TEXT NOT NULL
    );
    CREATE INDEX till_views_customer ON till_views(till_id, customer_id, id);
    """,
]


def connect(path: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt; a till keeps
    # its journal and resends from whatever acknowledgement the central still holds.
    conn.execute("PRAGMA synchronous=NORMAL")
    # Ingest dirties thousands of index pages a second. A 64 MB page cache keeps them
    # resident, and checkpointing every 16,000 pages (64 MB of WAL) instead of every 1,000
    # writes each hot page back once per checkpoint rather than once per batch.
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA wal_autocheckpoint=16000")
    conn.execute("PRAGMA foreign_keys=ON")
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with transaction(conn):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE so two writers never both read-then-write the same balance."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def next_counter(conn: sqlite3.Connection, name: str) -> int:
    conn.execute("UPDATE counters SET value = value + 1 WHERE name = ?", (name,))
    return conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]
