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
    messages,
    offer_grants,
    offline_caps,
    quarantine,
    rulesets,
    tiers,
)
from central.alerts import raise_alert
from central.db import Connection, DatabaseError, Row, transaction
from protocol import balances, bounds, phones, rules
from protocol.card_keys import CardKeyring

MAX_DELTA = 1000


def customer_deltas(conn: Connection, till_id: str, cursor: int,
                    now: datetime, keys: CardKeyring | None = None) -> dict:
    """One page of changes since `cursor`, as a dict. `keys`: the card keys, whose newest
    makes the phone tokens (protocol.phones); without them no phone goes."""
    head, customers, _ = _page(conn, till_id, cursor, now, keys)
    return {**head, "customers": customers}


def customer_deltas_json(conn: Connection, till_id: str, cursor: int,
                         now: datetime, keys: CardKeyring | None = None) -> bytes:
    """The same page as the JSON a till receives, made of each customer's text as it was
    checked: a page is encoded once."""
    head, _, texts = _page(conn, till_id, cursor, now, keys)
    return (json.dumps(head)[:-1] + ', "customers": [' + ", ".join(texts) + "]}").encode()


def _page(conn: Connection, till_id: str, cursor: int, now: datetime,
          keys: CardKeyring | None) -> tuple[dict, list[dict], list[str]]:
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
            " window_spend, granted_offers, change_seq, debt, blocked, phone, phone_review"
            " FROM customers"
            " WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
            (cursor, MAX_DELTA),
        ).fetchall()
        # What a page needs of other tables, read for the whole page at once.
        ids = [r["id"] for r in rows]
        cards = _cards(conn, ids)
        points = ledger.states_at(conn, {r["id"]: r["debt"] for r in rows}, now)
        allowances = campaign_budgets.customers_allowances(conn, ids, budgets, now)
        waiting = messages.receipt_lines(conn, ids, now)
        customers = []
        texts = []
        withheld: list[tuple[str, str]] = []
        for r in rows:
            try:
                customer = _customer(r, cards.get(r["id"], {}), points[r["id"]],
                                     allowances[r["id"]], tier_rules, now)
                if r["id"] in waiting:  # absent: none (a till's profile is replaced whole)
                    customer["receipt_lines"] = waiting[r["id"]]
                customer["phones"] = _phones(r, keys)
                texts.append(_encoded(customer))
                customers.append(customer)
            except (bounds.OutOfBounds, DatabaseError, ValueError, TypeError) as e:
                # One customer the tills could not take must not stop every till's sync:
                # it is left out, with an alert, and the others go.
                withheld.append((r["id"], str(e)))
        epoch = till["current_epoch"] if till else None
        budget_caps = {
            # The figures include this till's entries up to `as_of_seq` (of `epoch`): the
            # till subtracts what it granted after that, and nothing twice.
            "as_of_seq": campaign_budgets.accounted_seq(conn, till_id, epoch),
        }
        quarantined = quarantine.state(conn, till_id)
    # What this till was sent, so that re-pricing can tell a view it received from one it
    # made up (central.deliveries).
    with transaction(conn):
        deliveries.record_views(conn, till_id, customers, now)
        # The till's leases are renewed in a writing transaction, after the snapshot: if
        # the accounting moved on meanwhile, the till subtracts some of its grants twice
        # until its next sync (grants less, never more).
        budget_caps["campaigns"] = campaign_budgets.till_allowances(conn, till_id, budgets,
                                                                    now)
    for customer_id, problem in withheld:
        _withheld_alert(conn, now, customer_id, problem)
    return {
        "cursor": rows[-1]["change_seq"] if rows else cursor,
        "more": len(rows) == MAX_DELTA,
        "epoch": till["current_epoch"] if till else None,
        "acked_seq": till["acked_seq"] if till else 0,
        # The programme's offline caps travel with every delta, so a till has the current
        # ones as soon as it has current balances.
        "caps": quarantine.caps_for(offline_caps.current(conn), quarantined is not None).to_dict(),
        # A quarantined till keeps selling but spends no points; it shows this in its status.
        "quarantine": quarantined,
        "budgets": budget_caps,
    }, customers, texts


def _cards(conn: Connection, ids: list[str]) -> dict[str, dict[str, str | None]]:
    """Each customer's live card tokens, with the reason of each blocked one (else None): a
    card whose key retired is of no use to a till, it waits to be linked again."""
    out: dict[str, dict[str, str | None]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for customer_id, token, blocked in conn.execute(
                "SELECT customer_id, token, blocked FROM cards WHERE customer_id IN"
                f" ({','.join('?' * len(chunk))}) AND retired_at IS NULL", chunk):
            out.setdefault(customer_id, {})[token] = blocked
    return out


def _phones(r: Row, keys: CardKeyring | None) -> list[str]:
    """The customer's phone as tills hold it: its token under the newest card key, for
    identification by phone (agent.pos_api). None for a number the phone migration left
    for review (central.customer_search.backfill): another customer holds it."""
    if not keys or r["phone"] is None or r["phone_review"] is not None:
        return []
    return [phones.phone_token(keys.newest.secret, r["phone"])]


def _customer(r: Row, cards: dict[str, str | None], points: balances.State,
              allowances: dict[str, int], tier_rules: dict | None, now: datetime) -> dict:
    """One customer as tills receive them, checked to be within bounds before it goes.

    `points`: as of now, whatever has matured the stored lots; the lots themselves go too,
    so a till that goes offline still sees points activate and expire on time."""
    tier, spend = tiers.effective(tier_rules, r["tier"], r["window_start"],
                                  r["window_spend"], now)
    out = {
        "id": r["id"],
        "cards": list(cards),
        # A block, with the reason the till shows (central.blocks): the customer's, and each
        # blocked card's by its token. Tills refuse them.
        "blocked": r["blocked"],
        "blocked_cards": {token: why for token, why in cards.items() if why is not None},
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
        "allowances": allowances,
    }
    for name in ("available", "pending", "debt"):
        BALANCE.check(out[name], f"customers[{r['id']}].{name}")
    return out


def _encoded(out: dict) -> str:
    """The customer's JSON as the page carries it, checked to be within bounds: from the
    text at C speed, and only where that cannot vouch for it by walking the value."""
    text = json.dumps(out)
    if not bounds.json_fits(text):
        bounds.check_tree(out, f"customers[{out['id']}]")
    return text


BALANCE = bounds.IntRange(-bounds.MAX_BALANCE, bounds.MAX_BALANCE, "points")


def _withheld_alert(conn: Connection, now: datetime, customer_id: str,
                    problem: str) -> None:
    """One alert per customer and problem, not one per till's pull."""
    message = f"customer withheld from tills' deltas: {problem}"
    if conn.execute("SELECT 1 FROM alerts WHERE kind = 'delta-withheld' AND customer_id = ?"
                    " AND message = ?", (customer_id, message)).fetchone() is None:
        raise_alert(conn, now, "delta-withheld", message, severity="critical",
                    customer_id=customer_id)
