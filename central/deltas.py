"""Customer deltas for tills: what changed since the till's cursor, with the balances.

The answer also carries the till's acknowledged sequence read in the same snapshot, so the
till knows which of its own entries the balances already include.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from central import (
    campaign_budgets,
    deliveries,
    ledger,
    offer_grants,
    offline_caps,
    quarantine,
    rulesets,
    tiers,
)
from central.alerts import raise_alert
from central.db import Connection, DatabaseError, Row, transaction
from protocol import balances, bounds, rules

MAX_DELTA = 1000


def customer_deltas(conn: Connection, till_id: str, cursor: int,
                    now: datetime) -> dict:
    with conn.snapshot():  # one read snapshot for the balances and the acknowledgement
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
        withheld: list[tuple[str, str]] = []
        for r in rows:
            try:
                customers.append(_customer(conn, r, tier_rules, budgets, now))
            except (bounds.OutOfBounds, DatabaseError, ValueError, TypeError) as e:
                # One customer the tills could not take must not stop every till's sync:
                # it is left out, with an alert, and the others go.
                withheld.append((r["id"], str(e)))
        epoch = till["current_epoch"] if till else None
        budget_caps = {
            # The figures include this till's entries up to `as_of_seq` (of `epoch`): the
            # till subtracts what it granted after that, and nothing twice.
            "as_of_seq": campaign_budgets.accounted_seq(conn, till_id, epoch),
            "campaigns": campaign_budgets.till_allowances(conn, budgets, now),
        }
        quarantined = quarantine.state(conn, till_id)
    # What this till was sent, so that re-pricing can tell a view it received from one it
    # made up (central.deliveries).
    with transaction(conn):
        deliveries.record_views(conn, till_id, customers, now)
    for customer_id, problem in withheld:
        _withheld_alert(conn, now, customer_id, problem)
    return {
        "cursor": rows[-1]["change_seq"] if rows else cursor,
        "more": len(rows) == MAX_DELTA,
        "epoch": till["current_epoch"] if till else None,
        "acked_seq": till["acked_seq"] if till else 0,
        "customers": customers,
        # The programme's offline caps travel with every delta, so a till has the current
        # ones as soon as it has current balances.
        "caps": quarantine.caps_for(offline_caps.current(conn), quarantined is not None).to_dict(),
        # A quarantined till keeps selling but spends no points; it shows this in its status.
        "quarantine": quarantined,
        "budgets": budget_caps,
    }


def _customer(conn: Connection, r: Row, tier_rules: dict | None,
              budgets: dict, now: datetime) -> dict:
    """One customer as tills receive them, checked to be within bounds before it goes."""
    cards = [
        c["token"]
        # a card whose key retired is of no use to a till: it waits to be linked again
        for c in conn.execute("SELECT token FROM cards WHERE customer_id = ?"
                              " AND retired_at IS NULL", (r["id"],))
    ]
    # As of now, whatever has matured the stored lots: and the lots themselves, so a till
    # that goes offline still sees points activate and expire on time.
    points = ledger.state_at(conn, r["id"], now)
    tier, spend = tiers.effective(tier_rules, r["tier"], r["window_start"],
                                  r["window_spend"], now)
    out = {
        "id": r["id"],
        "cards": cards,
        "tier": tier,
        "segments": json.loads(r["segments"]),
        # Month and day: what the rules need, not the year (152-FZ).
        "birthday": rules.month_day(date.fromisoformat(r["birthday"])) if r["birthday"]
        else None,
        "offers": json.loads(r["offers"]),
        "granted_offers": sorted(offer_grants.live(r["granted_offers"], now)),
        "purchases": r["purchases"],
        "qualifying_spend": spend,
        **points.balance().to_dict(),
        "lots": [balances.lot_to_wire(lot) for lot in balances.live_lots(points)],
        "allowances": campaign_budgets.customer_allowances(conn, r["id"], budgets, now),
    }
    for name in ("available", "pending", "debt"):
        BALANCE.check(out[name], f"customers[{r['id']}].{name}")
    bounds.check_tree(out, f"customers[{r['id']}]")
    return out


BALANCE = bounds.IntRange(-bounds.MAX_BALANCE, bounds.MAX_BALANCE, "points")


def _withheld_alert(conn: Connection, now: datetime, customer_id: str,
                    problem: str) -> None:
    """One alert per customer and problem, not one per till's pull."""
    message = f"customer withheld from tills' deltas: {problem}"
    if conn.execute("SELECT 1 FROM alerts WHERE kind = 'delta-withheld' AND customer_id = ?"
                    " AND message = ?", (customer_id, message)).fetchone() is None:
        raise_alert(conn, now, "delta-withheld", message, severity="critical",
                    customer_id=customer_id)
