"""A return moves no more points than the central's own record of its sale backs: a till
with a stolen key cannot mint points by returning more than was redeemed, a receipt that
does not exist, or another customer's; nor drain a customer by clawing back more than the
sale earned. What it claims beyond is journalled, not booked; the till is quarantined."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from central import db, ledger, repricing
from central.db_sqlite import SQLiteConnection
from tests.test_central_sync_api import balance, enrolled_till, new_customer, send
from tests.test_till_takeover import kinds, pull, sale, sent_view

OTHER_CARD = "2990000000036"


def quarantined(central, till) -> bool:
    return central.db.execute("SELECT quarantined_at FROM tills WHERE id = ?",
                              (till.till_id,)).fetchone()[0] is not None


def alert(central, kind: str) -> str:
    return central.db.execute("SELECT message FROM alerts WHERE kind = ? ORDER BY id DESC",
                              (kind,)).fetchone()["message"]


async def test_returns_within_the_sale_are_booked_as_claimed(central):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    sale = till.sale(cid, earned=50, redeemed=200)
    till.return_(cid, sale.receipt_id, clawback=20, refund=80)
    till.return_(cid, sale.receipt_id, clawback=30, refund=120)  # the rest of it, exactly
    assert (await send(central, till.batch())).status == 200
    assert await balance(central, cid) == {"available": 1000, "pending": 0, "debt": 0}
    assert "return-beyond-sale" not in kinds(central) and not quarantined(central, till)


async def test_a_refund_beyond_what_the_sale_spent_mints_nothing(central):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    sale = till.sale(cid, redeemed=200)
    till.return_(cid, sale.receipt_id, refund=150)
    till.return_(cid, sale.receipt_id, refund=1_000_000)  # 50 left of the 200
    assert (await send(central, till.batch())).status == 200
    assert await balance(central, cid) == {"available": 1000, "pending": 0, "debt": 0}
    assert ledger.movement_total(central.db, cid) == 1000
    assert "refund of 1000000" in alert(central, "return-beyond-sale")
    assert "backs 50 and 0" in alert(central, "return-beyond-sale")
    assert quarantined(central, till)


async def test_a_return_of_no_sale_or_of_another_customer_s_moves_nothing(central):
    till = await enrolled_till(central)
    victim = await new_customer(central, bonus=1000)
    thief = await new_customer(central, card=OTHER_CARD)
    theirs = till.sale(victim, earned=40, redeemed=500)
    till.return_(thief, "f" * 24, refund=700_000)  # a receipt that never was
    till.return_(thief, theirs.receipt_id, refund=500)  # the victim's redemption
    till.return_(thief, theirs.receipt_id, clawback=1)
    assert (await send(central, till.batch())).status == 200
    assert await balance(central, thief) == {"available": 0, "pending": 0, "debt": 0}
    messages = [r["message"] for r in central.db.execute(
        "SELECT message FROM alerts WHERE kind = 'return-beyond-sale' ORDER BY id")]
    assert "no sale the central holds" in messages[0]
    assert all("another customer's sale" in m for m in messages[1:]) and len(messages) == 3
    # The victim's own return is still whole: nothing was counted against their sale.
    till.return_(victim, theirs.receipt_id, clawback=40, refund=500)
    assert (await send(central, till.batch(5, 5))).status == 200
    assert await balance(central, victim) == {"available": 1000, "pending": 0, "debt": 0}
    assert kinds(central).count("return-beyond-sale") == 3  # no fourth refusal


async def test_a_clawback_beyond_what_the_sale_earned_takes_no_more(central):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    sale = till.sale(cid, earned=50)
    till.return_(cid, sale.receipt_id, clawback=900)
    assert (await send(central, till.batch())).status == 200
    # The sale's 50 pending points are taken back; the customer's 1,000 stay.
    assert await balance(central, cid) == {"available": 1000, "pending": 0, "debt": 0}
    assert "clawback of 900" in alert(central, "return-beyond-sale")


async def test_a_redemption_the_central_gave_back_is_not_refunded_again(central, clock):
    """A sale that did not re-price had its redemption given back by the central; a later
    return of it refunds nothing more."""
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    sale = till.sale(cid, redeemed=300)  # carries nothing to re-price with: withheld
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    assert await balance(central, cid) == {"available": 1000, "pending": 0, "debt": 0}
    till.return_(cid, sale.receipt_id, refund=300)
    assert (await send(central, till.batch(2, 2))).status == 200
    assert await balance(central, cid) == {"available": 1000, "pending": 0, "debt": 0}
    assert "backs 0 and 0" in alert(central, "return-beyond-sale")


def test_returns_ingested_before_the_bound_count_as_booked(tmp_path: Path):
    """Migration 21 counts the returns already ingested (booked as claimed then) against
    their sales, so an upgrade lets none of them be refunded twice."""
    conn = SQLiteConnection(tmp_path / "old.db")
    db.migrate(conn, upto=20)
    for receipt, refund, clawback in (("r1", 80, 20), ("r2", 40, 5)):
        conn.execute(
            "INSERT INTO receipts (till_id, receipt_id, kind, customer_id, store, total,"
            " earned, redeemed, clawback, refund, original_receipt_id, at, ruleset_version)"
            " VALUES ('t', ?, 'return', 'c', 's1', 100, 0, 0, ?, ?, 'sold', 'x', 1)",
            (receipt, clawback, refund))
    assert db.migrate(conn) == len(db.MIGRATIONS) - 20
    row = conn.execute("SELECT returned, refunded, clawed_back FROM sale_returns"
                       " WHERE receipt_id = 'sold'").fetchone()
    assert tuple(row) == ("{}", 120, 25)
    conn.close()


async def test_a_refused_refund_does_not_widen_the_balance_re_pricing_honours(central, clock):
    """Re-pricing lets a till's view hold what its own returns gave back: what the ledger
    booked of them, not what they claimed."""
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    seen = sent_view(await pull(central, till, clock), cid)
    till.return_(cid, "e" * 24, refund=500_000)
    sale(till, central, dataclasses.replace(seen, balance=501_000), at=clock(),
         claim_redeemed=400_000)
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    assert "balance of 501000" in alert(central, "repricing-mismatch")
    assert await balance(central, cid) == {"available": 1000, "pending": 0, "debt": 0}
