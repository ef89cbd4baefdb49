"""The central's database: which one, its schema migrations, and the transaction helpers.

Modules talk to the database through `Connection` (central.dbapi): portable SQL with `?`
placeholders, dialect fragments where SQLite and PostgreSQL differ. SQLite (a file) is the
default; PostgreSQL (a `postgresql://` URL) serves a chain. The schema is one list of
forward-only migrations, applied in order at start and recorded, one process at a time,
so an old database upgrades itself and two processes starting at once migrate it once.
Plain-string steps are written for SQLite and translated for PostgreSQL (INTEGER becomes
BIGINT: points and kopecks outgrow 32 bits; BLOB becomes BYTEA; an INTEGER PRIMARY KEY an
identity column); a step whose SQL differs otherwise gives both (`PerDialect`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from central.clock import iso, utcnow
from central.dbapi import (
    Connection,
    Cursor,
    DatabaseError,
    IntegrityError,
    PerDialect,
    Row,
    Unavailable,
)

__all__ = [
    "MIGRATIONS",
    "Connection",
    "Cursor",
    "DatabaseError",
    "IntegrityError",
    "PerDialect",
    "Row",
    "Unavailable",
    "WithData",
    "connect",
    "is_url",
    "migrate",
    "next_counter",
    "redacted",
    "transaction",
]

@dataclass(frozen=True)
class WithData:
    """A migration step whose schema change is followed by data that only Python can work
    out (phone numbers in E.164), in the same transaction."""

    schema: str | PerDialect
    data: Callable[[Connection], None]


def _customer_search_backfill(conn: Connection) -> None:
    # Imported here: central.customer_search itself works through this module.
    from central import customer_search

    customer_search.backfill(conn, utcnow())


def _backfill_deliveries(now: str) -> str:
    """Migration 20's SQL, with `now` the database's expression for the time (as iso())."""
    legacy = "EXISTS (SELECT 1 FROM tills WHERE deliveries_recorded_from IS NOT NULL)"
    return f"""
    ALTER TABLE tills ADD COLUMN deliveries_recorded_from TEXT;
    UPDATE tills SET deliveries_recorded_from = {now}
      WHERE status = 'active' AND enrolled_at < COALESCE(
        (SELECT MIN(d.delivered_at) FROM (SELECT delivered_at FROM till_rulesets
                                          UNION ALL SELECT delivered_at FROM till_views) d),
        '9');
    INSERT INTO till_rulesets (till_id, version, delivered_at)
      SELECT t.id, r.version, t.deliveries_recorded_from FROM tills t, rulesets r
      WHERE t.deliveries_recorded_from IS NOT NULL
        AND r.version = (SELECT MAX(version) FROM rulesets)
      ON CONFLICT DO NOTHING;
    UPDATE customers SET change_seq = change_seq + 1
      + (SELECT value FROM counters WHERE name = 'customer_change') WHERE {legacy};
    UPDATE counters SET value = 2 * value + 1 WHERE name = 'customer_change' AND {legacy};
    """


MIGRATIONS: list[str | PerDialect | WithData] = [
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
    PerDialect(
        sqlite="""
    ALTER TABLE rulesets ADD COLUMN tiers TEXT;
    UPDATE rulesets SET tiers = json_extract(doc, '$.tiers');
    """,
        postgresql="""
    ALTER TABLE rulesets ADD COLUMN tiers TEXT;
    UPDATE rulesets SET tiers = NULLIF((doc::jsonb -> 'tiers')::text, 'null');
    """),
    # 5: campaign budgets (central.campaign_budgets). Each rule set's budgets on their own,
    # written at publish (back-filled here), so deltas never parse 10,000 campaigns; what
    # each budgeted campaign granted, in total and per customer per period; and how far
    # the accounting has followed the journal, overall and per till epoch.
    PerDialect(
        sqlite="""
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
        postgresql="""
    CREATE TABLE campaign_budgets (
        ruleset_version INTEGER NOT NULL, campaign_id TEXT NOT NULL, total INTEGER,
        per_customer INTEGER, period TEXT NOT NULL,
        PRIMARY KEY (ruleset_version, campaign_id)
    );
    INSERT INTO campaign_budgets
      SELECT r.version, c.value ->> 'id', (c.value #>> '{budget,total}')::bigint,
             (c.value #>> '{budget,per_customer}')::bigint,
             COALESCE(c.value #>> '{budget,period}', 'campaign')
      FROM rulesets r, jsonb_array_elements(r.doc::jsonb -> 'campaigns') c
      WHERE jsonb_typeof(c.value -> 'budget') IS DISTINCT FROM 'null'
        AND c.value -> 'budget' IS NOT NULL;
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
    """),
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
    # 13: the ingest sequence (central.ingest_log): followers of the journal (re-pricing,
    # budgets) read entries in the order their transactions committed, numbered at commit,
    # instead of rowid order, which concurrent writers on PostgreSQL do not commit in.
    # Entries already in SQLite keep their rowid as their number, and the followers' cursors
    # their values.
    PerDialect(
        sqlite="""
    CREATE TABLE ingest_log (
        ingest_seq INTEGER PRIMARY KEY, till_id TEXT NOT NULL, epoch TEXT NOT NULL,
        first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL
    );
    INSERT INTO ingest_log (ingest_seq, till_id, epoch, first_seq, last_seq)
      SELECT rowid, till_id, epoch, seq, seq FROM journal WHERE rowid > (
        SELECT MIN(v) FROM (SELECT last_rowid AS v FROM repricing
                            UNION ALL SELECT last_rowid FROM budget_accounting));
    INSERT INTO counters VALUES ('ingest', (SELECT COALESCE(MAX(rowid), 0) FROM journal));
    ALTER TABLE repricing RENAME COLUMN last_rowid TO ingest_seq;
    ALTER TABLE budget_accounting RENAME COLUMN last_rowid TO ingest_seq;
    """,
        postgresql="""
    CREATE TABLE ingest_log (
        ingest_seq INTEGER PRIMARY KEY, till_id TEXT NOT NULL, epoch TEXT NOT NULL,
        first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL
    );
    INSERT INTO counters VALUES ('ingest', 0);
    ALTER TABLE repricing RENAME COLUMN last_rowid TO ingest_seq;
    ALTER TABLE budget_accounting RENAME COLUMN last_rowid TO ingest_seq;
    """),
    # 14: the customer's presence at a till (central.presence): SMS codes sent and checked
    # (their hash only), and the app-code steps journalled proofs have used, once each
    """
    CREATE TABLE presence_challenges (
        id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, till_id TEXT NOT NULL,
        code_hash TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('open', 'verified', 'used', 'void')),
        receipt_id TEXT
    );
    CREATE INDEX presence_challenges_customer ON presence_challenges(customer_id, created_at);
    CREATE TABLE presence_steps (
        customer_id TEXT NOT NULL, step INTEGER NOT NULL, till_id TEXT NOT NULL,
        receipt_id TEXT NOT NULL, PRIMARY KEY (customer_id, step)
    );
    """,
    # 15: personal data (152-FZ, central.personal_data): consents with time and source,
    # and when a customer's personal data was erased
    """
    CREATE TABLE customer_consents (
        id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
        kind TEXT NOT NULL CHECK (kind IN ('processing', 'advertising')),
        granted INTEGER NOT NULL, at TEXT NOT NULL, source TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE INDEX customer_consents_customer ON customer_consents(customer_id, id);
    ALTER TABLE customers ADD COLUMN erased_at TEXT;
    CREATE INDEX till_views_erasure ON till_views(customer_id);
    """,
    # 16: campaign budgets as leases (central.campaign_budgets): what each till granted of each
    # budgeted campaign, and the allowance each till holds, until when.
    """
    CREATE TABLE campaign_till_usage (
        till_id TEXT NOT NULL, campaign_id TEXT NOT NULL, used INTEGER NOT NULL,
        PRIMARY KEY (till_id, campaign_id)
    );
    CREATE TABLE campaign_leases (
        till_id TEXT NOT NULL, campaign_id TEXT NOT NULL, till_limit INTEGER NOT NULL,
        used_at_issue INTEGER NOT NULL, expires_at TEXT NOT NULL,
        PRIMARY KEY (till_id, campaign_id)
    );
    CREATE INDEX campaign_leases_campaign ON campaign_leases(campaign_id, expires_at);
    """,
    # 17: staff accounts of the head-office API (central.staff): a role each, their token's
    # keyed hash, expiry and revocation. The data directory's admin token becomes the
    # account `admin-token` (its token stays in the file), so it keeps working until revoked.
    PerDialect(
        sqlite="""
    CREATE TABLE staff (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN
            ('admin', 'marketing', 'analyst', 'support', 'security', 'auditor')),
        token_hash TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        expires_at TEXT, revoked_at TEXT, revoked_by TEXT
    );
    INSERT INTO staff (id, name, role, created_at, created_by) VALUES
        ('admin-token', 'the admin token of the data directory', 'admin',
         strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), 'migration');
    """,
        postgresql="""
    CREATE TABLE staff (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN
            ('admin', 'marketing', 'analyst', 'support', 'security', 'auditor')),
        token_hash TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        expires_at TEXT, revoked_at TEXT, revoked_by TEXT
    );
    INSERT INTO staff (id, name, role, created_at, created_by) VALUES
        ('admin-token', 'the admin token of the data directory', 'admin',
         to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'), 'migration');
    """),
    # 18: the audit log (central.audit): who changed or read what, when, before and after;
    # hash-chained like the journal. The database refuses to change or delete a record
    # (SQLite: triggers that abort; PostgreSQL: rules that make UPDATE and DELETE do
    # nothing); the chain shows whatever is done around that.
    PerDialect(
        sqlite="""
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        subject TEXT NOT NULL, before TEXT, after TEXT, prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_actor ON audit(actor, seq);
    CREATE INDEX audit_action ON audit(action, seq);
    CREATE INDEX audit_subject ON audit(subject, seq);
    CREATE INDEX audit_at ON audit(at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
        postgresql="""
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        subject TEXT NOT NULL, before TEXT, after TEXT, prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_actor ON audit(actor, seq);
    CREATE INDEX audit_action ON audit(action, seq);
    CREATE INDEX audit_subject ON audit(subject, seq);
    CREATE INDEX audit_at ON audit(at);
    CREATE RULE audit_no_update AS ON UPDATE TO audit DO INSTEAD NOTHING;
    CREATE RULE audit_no_delete AS ON DELETE TO audit DO INSTEAD NOTHING;
    """),
    # 19: manual adjustments above the programme's threshold wait for a second person
    # (central.approvals): the threshold, and the adjustments waiting or decided
    """
    CREATE TABLE adjustment_policy (
        id INTEGER PRIMARY KEY CHECK (id = 1), approval_above INTEGER,
        updated_at TEXT NOT NULL, actor TEXT NOT NULL
    );
    CREATE TABLE adjustment_approvals (
        id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
        points INTEGER NOT NULL, reason TEXT NOT NULL, requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
        decided_by TEXT, decided_at TEXT, note TEXT
    );
    CREATE INDEX adjustment_approvals_status ON adjustment_approvals(status, id);
    """,
    # 20: tills that synced before migration 12 recorded deliveries (central.deliveries)
    # hold a rule set and views of customers the central has no record of sending: such a
    # till was quarantined on its next member sale. They are marked with the time recording
    # began for them; each is recorded as holding the newest rule set (a till asking with
    # `have=N` for the newest N gets 304 and nothing else); and every customer is marked
    # changed once, so every till receives, and the central records, a view of each.
    PerDialect(sqlite=_backfill_deliveries(
        "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"),
        postgresql=_backfill_deliveries(
            """to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')""")),
    # 21: what returns gave back and took back of each sale (central.returns.backed), so a
    # return is bounded by the central's record of its sale, not the till's word; returns
    # already ingested were applied as claimed, and are counted so.
    """
    ALTER TABLE sale_returns ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sale_returns ADD COLUMN clawed_back INTEGER NOT NULL DEFAULT 0;
    INSERT INTO sale_returns (receipt_id, returned)
      SELECT DISTINCT original_receipt_id, '{}' FROM receipts
      WHERE kind = 'return' AND original_receipt_id IS NOT NULL
      ON CONFLICT DO NOTHING;
    UPDATE sale_returns SET
      refunded = (SELECT COALESCE(SUM(refund), 0) FROM receipts
                  WHERE kind = 'return' AND original_receipt_id = sale_returns.receipt_id),
      clawed_back = (SELECT COALESCE(SUM(clawback), 0) FROM receipts
                     WHERE kind = 'return' AND original_receipt_id = sale_returns.receipt_id);
    """,
    # 22: the figures KPIs are read from, kept up by a follower of the journal
    # (central.kpi_counts); days are the store's calendar days, YYYY-MM-DD
    """
    CREATE TABLE kpi_accounting (name TEXT PRIMARY KEY, ingest_seq INTEGER NOT NULL);
    INSERT INTO kpi_accounting VALUES ('journal', 0);
    CREATE TABLE kpi_days (
        day TEXT NOT NULL, store TEXT NOT NULL, member INTEGER NOT NULL, tier TEXT NOT NULL,
        sales INTEGER NOT NULL, revenue INTEGER NOT NULL, returns INTEGER NOT NULL,
        returned INTEGER NOT NULL, earned INTEGER NOT NULL, redeemed INTEGER NOT NULL,
        clawback INTEGER NOT NULL, refund INTEGER NOT NULL,
        PRIMARY KEY (day, store, member, tier)
    );
    CREATE TABLE kpi_segment_days (
        day TEXT NOT NULL, store TEXT NOT NULL, segment TEXT NOT NULL,
        sales INTEGER NOT NULL, revenue INTEGER NOT NULL, returns INTEGER NOT NULL,
        returned INTEGER NOT NULL, earned INTEGER NOT NULL, redeemed INTEGER NOT NULL,
        clawback INTEGER NOT NULL, refund INTEGER NOT NULL,
        PRIMARY KEY (day, store, segment)
    );
    CREATE TABLE kpi_member_days (
        day TEXT NOT NULL, store TEXT NOT NULL, customer_id TEXT NOT NULL,
        sales INTEGER NOT NULL, revenue INTEGER NOT NULL,
        PRIMARY KEY (day, store, customer_id)
    );
    CREATE TABLE kpi_members (
        customer_id TEXT PRIMARY KEY, first_day TEXT, last_day TEXT, revenue INTEGER NOT NULL
    );
    CREATE INDEX kpi_members_first ON kpi_members(first_day, revenue);
    CREATE INDEX kpi_member_days_store ON kpi_member_days(store, day, customer_id);
    CREATE TABLE kpi_points (
        at TEXT PRIMARY KEY, outstanding INTEGER NOT NULL, expired INTEGER NOT NULL,
        redeemed INTEGER NOT NULL
    );
    CREATE INDEX ledger_kind_at ON ledger(kind, at, points);
    """,
    # 23: the key that enrolment found sound (central.tills), so that checking it is not
    # repeated by every process for every till's first batch after it starts
    """
    ALTER TABLE tills ADD COLUMN sound_key TEXT;
    """,
    # 24: PostgreSQL's rules (migration 18) do not see TRUNCATE, which emptied the audit log
    # in one statement; a statement trigger refuses it. (SQLite has no TRUNCATE: its
    # DELETE without WHERE fires the row trigger.) The body is quoted, not $$-delimited, so
    # that the migration's statement splitter sees its semicolon inside a string.
    PerDialect(sqlite="", postgresql="""
    CREATE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql
        AS 'BEGIN RAISE EXCEPTION ''the audit log is append-only''; END';
    CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
    """),
    # 25: personal values in journal entries of earlier tills, sealed under a key per
    # customer that erasure destroys (central.journal_personal): the keys, and the till's
    # signed bytes of each entry whose stored body is redacted (NULL: nothing was kept,
    # the customer had been erased when the entry came)
    """
    CREATE TABLE customer_keys (
        customer_id TEXT PRIMARY KEY, key TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE TABLE journal_sealed (
        till_id TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
        customer_id TEXT NOT NULL, sealed BLOB,
        PRIMARY KEY (till_id, epoch, seq)
    );
    CREATE INDEX journal_sealed_customer ON journal_sealed(customer_id);
    """,
    # 26: campaigns one at a time (central.campaigns): each a row with its rule, schedule,
    # status and version; the stores, regions and channels it names, and the newest rule
    # set's regions of stores, for listing by place; and what each campaign gave on sales,
    # kept up by a follower of the journal (central.campaign_figures)
    """
    CREATE TABLE campaigns (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, search TEXT NOT NULL, kind TEXT NOT NULL,
        status TEXT NOT NULL, starts_at TEXT, ends_at TEXT, starts_utc TEXT, ends_utc TEXT,
        rule TEXT NOT NULL,
        all_stores INTEGER NOT NULL, all_channels INTEGER NOT NULL,
        version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL, published_in INTEGER
    );
    CREATE INDEX campaigns_status ON campaigns(status, starts_utc, id);
    CREATE INDEX campaigns_kind ON campaigns(kind, id);
    CREATE TABLE campaign_places (
        kind TEXT NOT NULL, value TEXT NOT NULL, campaign_id TEXT NOT NULL,
        PRIMARY KEY (kind, value, campaign_id)
    );
    CREATE INDEX campaign_places_campaign ON campaign_places(campaign_id);
    CREATE TABLE campaign_store_regions (store TEXT PRIMARY KEY, region TEXT NOT NULL);
    CREATE TABLE campaign_figures (
        campaign_id TEXT PRIMARY KEY, receipts INTEGER NOT NULL, points INTEGER NOT NULL,
        discount INTEGER NOT NULL
    );
    CREATE TABLE campaign_figures_accounting (name TEXT PRIMARY KEY, ingest_seq INTEGER NOT NULL);
    INSERT INTO campaign_figures_accounting VALUES ('journal', 0);
    """,
    # 27: fraud rules (central.fraud_rules, central.fraud_watch): the programme's rules, the
    # follower's cursor and its small tables of counts, the hits with their review, and
    # the lots each hit holds (central.fraud_holds)
    """
    CREATE TABLE fraud_rules (
        id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL, updated_at TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE TABLE fraud_accounting (name TEXT PRIMARY KEY, ingest_seq INTEGER NOT NULL);
    INSERT INTO fraud_accounting VALUES ('journal', 0);
    CREATE TABLE fraud_card_visits (
        customer_id TEXT NOT NULL, at TEXT NOT NULL, store TEXT NOT NULL,
        receipt_id TEXT NOT NULL, PRIMARY KEY (customer_id, at, receipt_id)
    );
    CREATE TABLE fraud_cashier_days (
        day TEXT NOT NULL, store TEXT NOT NULL, cashier TEXT NOT NULL,
        receipts INTEGER NOT NULL, returns INTEGER NOT NULL, typed INTEGER NOT NULL,
        PRIMARY KEY (store, day, cashier)
    );
    CREATE TABLE fraud_cashier_redeemers (
        store TEXT NOT NULL, day TEXT NOT NULL, cashier TEXT NOT NULL,
        customer_id TEXT NOT NULL, PRIMARY KEY (store, day, cashier, customer_id)
    );
    CREATE TABLE fraud_till_mismatches (
        till_id TEXT NOT NULL, at TEXT NOT NULL, receipt_id TEXT NOT NULL,
        PRIMARY KEY (till_id, at, receipt_id)
    );
    CREATE TABLE fraud_hits (
        id INTEGER PRIMARY KEY, at TEXT NOT NULL, rule TEXT NOT NULL, dedup TEXT NOT NULL,
        subject TEXT NOT NULL, customer_id TEXT, till_id TEXT, alert_id INTEGER,
        message TEXT NOT NULL, evidence TEXT NOT NULL,
        held_points INTEGER NOT NULL DEFAULT 0, hold_status TEXT, hold_by TEXT, hold_at TEXT,
        verdict TEXT, reviewed_by TEXT, reviewed_at TEXT, note TEXT,
        UNIQUE (rule, dedup)
    );
    CREATE TABLE fraud_hold_lots (
        hit_id INTEGER NOT NULL, lot_id INTEGER NOT NULL, status TEXT NOT NULL,
        points INTEGER NOT NULL, PRIMARY KEY (hit_id, lot_id)
    );
    """,
    # 28: messages that reach customers (central.messages): the outbox, one row per stable
    # key; where and how each customer is reached; templates per kind and language; quiet
    # hours; the triggers' cursors (from now on: no messages about the past)
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY, msg_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
        customer_id TEXT NOT NULL, purpose TEXT NOT NULL
            CHECK (purpose IN ('service', 'advertising')),
        channel TEXT NOT NULL, store TEXT, params TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'skipped',
                                               'failed')),
        created_at TEXT NOT NULL, due_at TEXT NOT NULL, claim TEXT, lease_until TEXT,
        attempts INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
        reclaimed INTEGER NOT NULL DEFAULT 0, uncertain INTEGER NOT NULL DEFAULT 0,
        sent_at TEXT, provider_id TEXT, note TEXT
    );
    CREATE INDEX messages_due ON messages(status, due_at);
    CREATE INDEX messages_customer ON messages(customer_id, id);
    CREATE INDEX messages_kind ON messages(kind, id);
    CREATE TABLE message_contacts (
        customer_id TEXT PRIMARY KEY REFERENCES customers(id), email TEXT, push_token TEXT,
        language TEXT, home_store TEXT, service_opt_out INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL, source TEXT NOT NULL, actor TEXT NOT NULL
    );
    CREATE TABLE message_seen (
        customer_id TEXT PRIMARY KEY, tier TEXT, offers TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE message_templates (
        kind TEXT NOT NULL, language TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
        updated_at TEXT NOT NULL, actor TEXT NOT NULL, PRIMARY KEY (kind, language)
    );
    CREATE TABLE message_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1), quiet_from TEXT NOT NULL,
        quiet_to TEXT NOT NULL, expiring_days INTEGER NOT NULL, idle_days INTEGER NOT NULL,
        updated_at TEXT NOT NULL, actor TEXT NOT NULL
    );
    CREATE TABLE message_receipt_lines (
        msg_key TEXT PRIMARY KEY, customer_id TEXT NOT NULL, text TEXT NOT NULL,
        queued_at TEXT NOT NULL, printed_at TEXT, till_id TEXT, receipt_id TEXT
    );
    CREATE INDEX message_receipt_lines_customer ON message_receipt_lines(customer_id)
        WHERE printed_at IS NULL;
    CREATE TABLE message_cursors (name TEXT PRIMARY KEY, position TEXT NOT NULL);
    INSERT INTO message_cursors SELECT 'returns', CAST(value AS TEXT) FROM counters
        WHERE name = 'ingest';
    INSERT INTO message_cursors SELECT 'customers', CAST(value AS TEXT) FROM counters
        WHERE name = 'customer_change';
    INSERT INTO message_cursors VALUES ('activations', '');
    INSERT INTO message_cursors VALUES ('expiring', '');
    INSERT INTO message_cursors VALUES ('days', '');
    """,
    # 29: customers found by name, card and phone (central.customer_search), and blocked
    # (central.blocks). The name as searches compare it, indexed (in PostgreSQL in code point
    # order, so a prefix is a range of it as in SQLite); cards by their last four digits;
    # phones in E.164, with those that could not be (a number two customers had typed two
    # ways, or no valid number) kept as typed and marked for review; a block's reason on a
    # customer or a card, and when; a card's kind (loyalty, bank, virtual, or par: a bank
    # card known by its payment account reference; NULL for cards linked before kinds).
    WithData(PerDialect(
        sqlite="""
    ALTER TABLE customers ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
    ALTER TABLE customers ADD COLUMN phone_review TEXT;
    ALTER TABLE customers ADD COLUMN blocked TEXT;
    ALTER TABLE customers ADD COLUMN blocked_at TEXT;
    ALTER TABLE cards ADD COLUMN blocked TEXT;
    ALTER TABLE cards ADD COLUMN blocked_at TEXT;
    ALTER TABLE cards ADD COLUMN kind TEXT;
    CREATE INDEX customers_name_key ON customers(name_key, id);
    CREATE INDEX cards_last4 ON cards(last4, customer_id);
    """,
        postgresql="""
    ALTER TABLE customers ADD COLUMN name_key TEXT COLLATE "C" NOT NULL DEFAULT '';
    ALTER TABLE customers ADD COLUMN phone_review TEXT;
    ALTER TABLE customers ADD COLUMN blocked TEXT;
    ALTER TABLE customers ADD COLUMN blocked_at TEXT;
    ALTER TABLE cards ADD COLUMN blocked TEXT;
    ALTER TABLE cards ADD COLUMN blocked_at TEXT;
    ALTER TABLE cards ADD COLUMN kind TEXT;
    CREATE INDEX customers_name_key ON customers(name_key, id);
    CREATE INDEX cards_last4 ON cards(last4, customer_id);
    """), data=_customer_search_backfill),
    # 30: sales channels (central.channels): a credential per web shop or app, each with the
    # virtual till its orders are journalled under; each confirm and return kept by the
    # channel's own key (order id, return id) for idempotent repeats (central.channel_orders)
    """
    CREATE TABLE channels (
        id TEXT PRIMARY KEY, name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('web', 'app')), store TEXT NOT NULL,
        till_id TEXT NOT NULL UNIQUE REFERENCES tills(id), token_hash TEXT NOT NULL,
        created_at TEXT NOT NULL, created_by TEXT NOT NULL, revoked_at TEXT
    );
    CREATE TABLE channel_requests (
        channel_id TEXT NOT NULL REFERENCES channels(id), request_key TEXT NOT NULL,
        order_id TEXT NOT NULL, body_hash TEXT NOT NULL, receipt_id TEXT NOT NULL,
        answer TEXT NOT NULL, at TEXT NOT NULL,
        PRIMARY KEY (channel_id, request_key)
    );
    CREATE INDEX channel_requests_order ON channel_requests(channel_id, order_id);
    """,
    # 31: the customer's own account (central.account_sign_in): one-time sign-in codes and
    # sessions, each kept only as a hash; a code names the contact it went to by a keyed hash
    # and says what it proves (signing in, or a new e-mail address being the customer's)
    """
    CREATE TABLE account_codes (
        id TEXT PRIMARY KEY, contact_hash TEXT NOT NULL, customer_id TEXT,
        code_hash TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL
            CHECK (status IN ('open', 'used', 'void')),
        purpose TEXT NOT NULL CHECK (purpose IN ('sign-in', 'email'))
    );
    CREATE INDEX account_codes_contact ON account_codes(contact_hash, created_at);
    CREATE TABLE account_sessions (
        token_hash TEXT PRIMARY KEY, customer_id TEXT NOT NULL, created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL, ended_at TEXT
    );
    CREATE INDEX account_sessions_customer ON account_sessions(customer_id);
    """,
]


def is_url(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def connect(target: Path | str) -> Connection:
    """A connection to the SQLite file at `target`, or to the PostgreSQL database its URL
    names, with the schema brought up to date."""
    conn: Connection
    if is_url(target):
        from central.db_postgres import PostgresConnection

        conn = PostgresConnection(str(target))
    else:
        from central.db_sqlite import SQLiteConnection

        conn = SQLiteConnection(target)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: Connection, upto: int | None = None) -> int:
    """Apply the migrations this database lacks, each in its own transaction under the
    migration lock, reading the version under that lock: a second process that started at
    the same time finds the work done. Returns how many this call applied.

    `upto`: stop at that version (tests build a database as an older central left it)."""
    last = len(MIGRATIONS) if upto is None else min(upto, len(MIGRATIONS))
    applied = 0
    while True:
        with conn.transaction():
            conn.dialect.lock_migrations(conn)
            version = conn.dialect.schema_version(conn)
            if version >= last:
                return applied
            step = MIGRATIONS[version]
            schema = step.schema if isinstance(step, WithData) else step
            for statement in statements(conn.dialect.script(schema)):
                conn.execute(statement)
            if isinstance(step, WithData):
                step.data(conn)
            conn.dialect.set_schema_version(conn, version + 1, iso(utcnow()))
        applied += 1


def statements(script: str) -> Iterator[str]:
    """The statements of a migration step, split at the semicolons that end them: not at
    those inside a trigger's BEGIN ... END (sqlite3's own tokenizer tells)."""
    pending = ""
    for piece in script.split(";"):
        pending = f"{pending};{piece}" if pending else piece
        if sqlite3.complete_statement(pending + ";"):
            if pending.strip():
                yield pending
            pending = ""
    if pending.strip():
        yield pending


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """A writing transaction (Connection.transaction): all of it or nothing.

    Inside a transaction already, a savepoint of it: the outer transaction commits it or
    not. A head-office change runs its domain code inside the transaction that also
    appends its audit record (central.audit), so neither commits without the other."""
    if conn.in_transaction:
        with conn.savepoint("nested"):
            yield conn
        return
    with conn.transaction():
        yield conn


def next_counter(conn: Connection, name: str) -> int:
    return int(conn.execute("UPDATE counters SET value = value + 1 WHERE name = ?"
                            " RETURNING value", (name,)).fetchone()[0])
