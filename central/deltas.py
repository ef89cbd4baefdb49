"""Customer deltas for tills: what changed since the till's cursor, with the balances.

The answer also carries the till's acknowledged sequence read in the same snapshot, so the
till knows which of its own entries the balances already include.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from central import campaign_budgets, ledger, offer_grants, offline_caps, rulesets, tiers

MAX_DELTA = 1000


def customer_deltas(conn: sqlite3.Connection, till_id: str, cursor: int,
                    now: datetime) -> dict:
    conn.execute("BEGIN")  # one read snapshot for the balances and the acknowledgement
    try:
        till = conn.execute(
            "SELECT current_epoch, acked_seq FROM tills WHERE id = ?", (till_id,)
        ).fetchone()
        tier_rules = rulesets.current_tiers(conn)
        # Budgets of the newest rule set only, read from their own table (one row per
        # budgeted campaign): the document itself is never parsed here.
        budgets = campaign_budgets.budgets(conn)
        rows = conn.execute(
            "SELECT id, tier, segments, birthday, offers, purchases, window_start,"
            " window_spend, granted_offers, change_seq FROM customers WHERE change_seq > ?"
            " ORDER BY change_seq LIMIT ?",
            (cursor, MAX_DELTA),
        ).fetchall()
        customers = []
        for r in rows:
            cards = [
                c["token"]
                for c in conn.execute("SELECT token FROM cards WHERE customer_id = ?", (r["id"],))
            ]
            tier, spend = tiers.effective(tier_rules, r["tier"], r["window_start"],
                                          r["window_spend"], now)
            customers.append(
                {
                    "id": r["id"],
                    "cards": cards,
                    "tier": tier,
                    "segments": json.loads(r["segments"]),
                    "birthday": r["birthday"],
                    "offers": json.loads(r["offers"]),
                    "granted_offers": sorted(offer_grants.live(r["granted_offers"], now)),
                    "purchases": r["purchases"],
                    "qualifying_spend": spend,
                    **ledger.balance(conn, r["id"]).to_dict(),
                    "allowances": campaign_budgets.customer_allowances(conn, r["id"],
                                                                       budgets, now),
                }
            )
        epoch = till["current_epoch"] if till else None
        budget_caps = {
            # The figures include this till's entries up to `as_of_seq` (of `epoch`): the
            # till subtracts what it granted after that, and nothing twice.
            "as_of_seq": campaign_budgets.accounted_seq(conn, till_id, epoch),
            "campaigns": campaign_budgets.till_allowances(conn, budgets, now),
        }
    finally:
        conn.execute("COMMIT")
    return {
        "cursor": rows[-1]["change_seq"] if rows else cursor,
        "more": len(rows) == MAX_DELTA,
        "epoch": till["current_epoch"] if till else None,
        "acked_seq": till["acked_seq"] if till else 0,
        "customers": customers,
        # The programme's offline caps travel with every delta, so a till has the current
        # ones as soon as it has current balances.
        "caps": offline_caps.current(conn).to_dict(),
        "budgets": budget_caps,
    }
