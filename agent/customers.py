"""The till's view of customers: the central's last word plus this till's own unsynced entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import sqlite_utils

from agent import campaign_allowances
from agent.journal import epoch
from protocol.wire import unpack


@dataclass(frozen=True)
class CustomerView:
    id: str
    tier: str | None
    segments: frozenset[str]
    available: int  # spendable now, as far as this till can know
    pending: int  # earned, waiting out the return window
    debt: int
    birthday: date | None = None
    offers: frozenset[str] = field(default_factory=frozenset)
    purchases: int = 0  # sales so far, this till's unsynced ones included
    qualifying_spend: int = 0  # kopecks in the current tier window, as the central counts


def by_token(db: sqlite_utils.Database, token: str) -> str | None:
    row = db.execute("SELECT customer_id FROM cards WHERE token = ?", [token]).fetchone()
    return row[0] if row else None


def view(db: sqlite_utils.Database, customer_id: str) -> CustomerView | None:
    row = db.execute(
        "SELECT tier, segments, available, pending, debt, as_of_epoch, as_of_seq, profile"
        " FROM customers WHERE id = ?", [customer_id]
    ).fetchone()
    if row is None:
        return None
    tier, segments, available, pending, debt, as_of_epoch, as_of_seq, profile_json = row
    profile = json.loads(profile_json)
    # Entries the central had not applied when it sent this balance still count here. An
    # older epoch's entries are all in the central's figures, or were carried into the
    # current epoch when it began (agent.epochs).
    current = epoch(db)
    since = as_of_seq if as_of_epoch == current else 0
    earned, redeemed, clawback, refund, sales = db.execute(
        "SELECT COALESCE(SUM(earned), 0), COALESCE(SUM(redeemed), 0),"
        " COALESCE(SUM(clawback), 0), COALESCE(SUM(refund), 0),"
        " COALESCE(SUM(kind = 'sale'), 0)"
        " FROM journal WHERE customer_id = ? AND epoch = ? AND seq > ?",
        [customer_id, current, since]
    ).fetchone()
    return CustomerView(
        id=customer_id,
        tier=tier,
        segments=frozenset(json.loads(segments)),
        available=available - redeemed + refund,
        pending=max(0, pending + earned - clawback),
        debt=debt,
        birthday=date.fromisoformat(profile["birthday"]) if profile.get("birthday") else None,
        offers=frozenset(profile.get("offers", ())) | _unused_granted(db, customer_id, profile),
        purchases=profile.get("purchases", 0) + sales,
        # The central's figure: an upgrade earned by this till's own unsynced receipts
        # shows once they are synced (the engine already counts the receipt being priced).
        qualifying_spend=profile.get("qualifying_spend", 0),
    )


PROFILE = ("birthday", "offers", "granted_offers", "purchases", "qualifying_spend")


def _unused_granted(db: sqlite_utils.Database, customer_id: str,
                    profile: dict) -> frozenset[str]:
    """Offers a purchase earned (good for one purchase), less those this till's receipts used
    that the central had not counted when it sent them: a till must not honour one twice.

    The central counts uses with campaign budgets, a step after ingest: so the cut-off is how
    far that count had come (allowances_seq), not the acknowledged sequence."""
    granted = frozenset(profile.get("granted_offers", ()))
    if not granted:
        return granted
    epoch_ = epoch(db)
    counted, counted_epoch = db.execute(
        "SELECT allowances_seq, as_of_epoch FROM customers WHERE id = ?", [customer_id]
    ).fetchone()
    since = counted if counted_epoch == epoch_ else 0
    used: set[str] = set()
    for (body,) in db.execute(
        "SELECT body FROM journal WHERE customer_id = ? AND epoch = ? AND seq > ?"
        " AND kind = 'sale'", [customer_id, epoch_, since]
    ):
        used.update(unpack(body)["detail"].get("settlement", {}).get("offers_used", ()))
    return granted - used


def apply_deltas(db: sqlite_utils.Database, delta: dict) -> None:
    """Store what the central sent; its `acked_seq` says which of our entries it includes."""
    with db.atomic():
        for c in delta["customers"]:
            db.execute(
                "INSERT OR REPLACE INTO customers (id, tier, segments, available, pending, debt,"
                " as_of_epoch, as_of_seq, profile, allowances, allowances_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [c["id"], c.get("tier"), json.dumps(c.get("segments", [])), c["available"],
                 c["pending"], c["debt"], delta.get("epoch"), delta.get("acked_seq", 0),
                 json.dumps({k: c[k] for k in PROFILE if k in c}),
                 campaign_allowances.customer_figures(delta, c),
                 # Budget usage trails the acknowledgement (central.campaign_budgets):
                 # its own sequence says which of our grants the figures include.
                 delta.get("budgets", {}).get("as_of_seq", 0)],
            )
            db.execute("DELETE FROM cards WHERE customer_id = ?", [c["id"]])
            for token in c["cards"]:
                db.execute("INSERT OR REPLACE INTO cards (token, customer_id) VALUES (?, ?)",
                           [token, c["id"]])
        if "budgets" in delta:
            campaign_allowances.save(db, delta["budgets"], delta.get("epoch"))
        db.execute("UPDATE meta SET value = ? WHERE key = 'customer_cursor'",
                   [str(delta["cursor"])])
