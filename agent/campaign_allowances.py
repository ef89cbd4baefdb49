"""What this till may still grant of each budgeted campaign, for the rules engine.

The central counts budgets (central.campaign_budgets) and sends with every customer delta
this till's lease of each campaign's remaining total (what it may grant, until when: after
that it grants nothing of the campaign until its next sync), each campaign's per-customer cap
and period, and per customer what is left in the current period where they used some.
Those figures include this till's journal up to a sequence number; what the till granted
after it (kept in `grants`, written with the journal entry) is subtracted here, so a till
stops granting when its allowance is used up even while offline.

The engine gets the smaller of the till-level and the customer-level figure; a campaign
with no budget gets no entry and is not limited locally.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import sqlite_utils

from agent.journal import epoch
from agent.store import get_meta, set_meta
from protocol.budget_periods import period_key
from protocol.journal import JournalEntry


@dataclass(frozen=True)
class Cap:
    till_remaining: int | None
    per_customer: int | None
    period: str
    # Until when this till may grant from `till_remaining` without a sync: after that the
    # central lends what is left of it to the other tills.
    lease_expires: datetime | None = None


def save(db: sqlite_utils.Database, budgets: dict[str, Any], delta_epoch: str | None) -> None:
    """Replace the till-level caps with a delta's; run inside the delta's transaction."""
    db.execute("DELETE FROM campaign_budgets")
    db.conn.executemany(
        "INSERT INTO campaign_budgets (campaign_id, till_remaining, per_customer, period,"
        " lease_expires) VALUES (?, ?, ?, ?, ?)",
        [(cid, c.get("till_remaining"), c.get("per_customer"), c["period"],
          _instant(c.get("lease_expires"))) for cid, c in budgets.get("campaigns", {}).items()])
    set_meta(db, "budgets_epoch", delta_epoch or "")
    set_meta(db, "budgets_seq", str(int(budgets.get("as_of_seq", 0))))
    # Bumped on every save: the cache below reloads the table only when it changed.
    set_meta(db, "budgets_rev", str(int(get_meta(db, "budgets_rev", "0") or 0) + 1))


def _instant(text: Any) -> str | None:
    """An ISO time with its offset, normalised to UTC; a malformed one is refused here,
    with the delta, not at the next checkout."""
    if text is None:
        return None
    at = datetime.fromisoformat(text) if isinstance(text, str) else None
    if at is None or at.tzinfo is None:
        raise ValueError(f"lease_expires must be an ISO time with its offset, not {text!r}")
    return at.astimezone(UTC).isoformat()


def customer_figures(delta: dict[str, Any], customer: dict[str, Any]) -> str:
    """A customer's allowances as stored: remaining with the period it is for, so a figure
    from a past period is recognised as stale (the period turned, the cap is whole again)."""
    if not customer.get("allowances"):
        return "{}"  # most customers: no per-customer budget used this period
    campaigns = delta.get("budgets", {}).get("campaigns", {})
    return json.dumps({
        cid: [left, campaigns[cid]["period_key"]]
        for cid, left in customer.get("allowances", {}).items() if cid in campaigns})


class Allowances:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._rev: str | None = None
        self._caps: dict[str, Cap] = {}
        # Each campaign's allowance before anything this till did since the delta: with
        # 10,000 budgeted campaigns, pricing copies this and adjusts the few it touched.
        self._base: dict[str, int] = {}
        self._first_expiry: datetime | None = None

    def caps(self) -> dict[str, Cap]:
        rev = get_meta(self.db, "budgets_rev", "0")
        if rev != self._rev:
            self._caps = {r[0]: Cap(r[1], r[2], r[3],
                                    datetime.fromisoformat(r[4]) if r[4] else None)
                          for r in self.db.execute(
                              "SELECT campaign_id, till_remaining, per_customer, period,"
                              " lease_expires FROM campaign_budgets")}
            self._base = {cid: _smallest(c.till_remaining, c.per_customer)
                          for cid, c in self._caps.items()}
            expiries = [c.lease_expires for c in self._caps.values() if c.lease_expires]
            self._first_expiry = min(expiries) if expiries else None
            self._rev = rev
        return self._caps

    def record(self, entry: JournalEntry) -> None:
        """Note what a sale granted of budgeted campaigns; inside the journal's transaction."""
        assert self.db.conn.in_transaction, "record grants with the journal entry"
        if entry.kind != "sale" or not entry.detail:
            return
        caps = self.caps()
        granted = entry.detail["settlement"].get("campaign_totals", {})
        self.db.conn.executemany(
            "INSERT INTO grants (epoch, seq, campaign_id, customer_id, points, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(entry.epoch, entry.seq, cid, entry.customer_id, points, entry.at)
             for cid, points in sorted(granted.items()) if cid in caps and points > 0])

    def _expired(self, now: datetime) -> set[str]:
        """Campaigns whose lease ran out (no sync since): nothing more to grant of them.
        All leases of a delta expire together, so this is one comparison until then."""
        if self._first_expiry is None or now < self._first_expiry:
            return set()
        return _expired_leases(self._caps, now)

    def for_customer(self, customer_id: str | None, now: datetime,
                     zone: tzinfo | None = None) -> dict[str, int]:
        """`zone`: the programme's, whose calendar the per-customer periods follow."""
        caps = self.caps()
        if not caps:
            return {}
        current = epoch(self.db)
        since = (int(get_meta(self.db, "budgets_seq", "0") or 0)
                 if get_meta(self.db, "budgets_epoch") == current else 0)
        by_till = dict(self.db.execute(
            "SELECT campaign_id, SUM(points) FROM grants WHERE epoch = ? AND seq > ?"
            " GROUP BY campaign_id", [current, since]).fetchall())
        expired = self._expired(now)
        if customer_id is None:
            # Anonymous receipts are bounded by the till's share only (discount campaigns
            # may reach non-members; a per-customer cap has nobody to count against).
            return {cid: 0 if cid in expired else max(0, c.till_remaining - by_till.get(cid, 0))
                    for cid, c in caps.items() if c.till_remaining is not None}
        stored: dict[str, list[Any]] = {}
        mine: list[tuple[str, int, str]] = []
        row = self.db.execute("SELECT allowances, allowances_seq, as_of_epoch FROM customers"
                              " WHERE id = ?", [customer_id]).fetchone()
        if row:
            stored = json.loads(row[0])
            # As agent.customers.view does for balances: only entries after the snapshot.
            after = row[1] if row[2] == current else 0
            mine = self.db.execute(
                "SELECT campaign_id, points, at FROM grants WHERE customer_id = ?"
                " AND epoch = ? AND seq > ?", [customer_id, current, after]).fetchall()
        out = dict(self._base)
        for cid in {*by_till, *stored, *(m[0] for m in mine), *expired} & caps.keys():
            cap = caps[cid]
            till_left = (None if cap.till_remaining is None
                         else 0 if cid in expired
                         else cap.till_remaining - by_till.get(cid, 0))
            customer_left = None
            if cap.per_customer is not None:
                key = period_key(cap.period, now, zone)
                figure = stored.get(cid)
                # The central's figure holds for its period; once that is over, the whole
                # cap is back, less what this till granted in the new period.
                customer_left = figure[0] if figure and figure[1] == key else cap.per_customer
                customer_left -= sum(
                    p for c, p, at in mine if c == cid
                    and period_key(cap.period, datetime.fromisoformat(at), zone) == key)
            out[cid] = max(0, _smallest(till_left, customer_left))
        return out


def _expired_leases(caps: dict[str, Cap], now: datetime) -> set[str]:
    return {cid for cid, c in caps.items() if c.lease_expires and c.lease_expires <= now}


def _smallest(a: int | None, b: int | None) -> int:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else 0
