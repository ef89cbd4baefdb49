"""What whole-store tests (database outage, failover) check at the end, and the cashiers
that keep selling meanwhile: the central's journal is every till's journal entry by entry,
and every balance is what those journals give. (tests/test_sync_chaos.py has its own copies
of the first helpers, being reworked in parallel; it can take these.)"""

from __future__ import annotations

import asyncio
import random

from agent import journal
from agent.store import open_store
from tillpoint.processes import wait_for
from tillpoint.store_harness import StoreHarness, Till

ITEMS = [{"sku": "300", "name": "Socks", "qty": 1000, "price": 15000, "category": "sports",
          "vat": "22"},
         {"sku": "100", "name": "Milk", "qty": 2000, "price": 8990, "category": "dairy",
          "vat": "10"}]


def local_entries(till: Till) -> list[tuple[str, int, str, str | None, int, int]]:
    """A till's journal as its agent holds it: (epoch, seq, hash, customer, earned,
    redeemed) in order."""
    db = open_store(till.state / "agent.db")
    try:
        rows = db.execute("SELECT epoch, seq, hash, customer_id, earned, redeemed FROM journal"
                          " ORDER BY id").fetchall()
    finally:
        db.close()
    return [tuple(r) for r in rows]


def journalled(tills: list[Till]) -> int:
    """Receipts journalled by these tills so far."""
    total = 0
    for till in tills:
        db = open_store(till.state / "agent.db")
        try:
            total += db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        finally:
            db.close()
    return total


async def check_ledger_equals_journals(store: StoreHarness, tills: list[Till],
                                       opening: dict[str, int]) -> int:
    """The central holds each till's journal exactly (each entry once, none missing, same
    hashes), every customer's balance is `opening` plus what the journals earned less what
    they redeemed, and no alarm was raised, once the central has re-priced every sale.
    Returns the number of entries."""

    async def repriced() -> bool | None:
        return True if (await store.office("GET", "/api/v1/repricing"))["behind"] == 0 else None

    await wait_for(repriced, "the central to re-price every sale", timeout=60)
    expected = dict(opening)
    total = 0
    for till in tills:
        local = local_entries(till)
        total += len(local)
        held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
        assert [(e[0], e[1], e[2]) for e in local] == [
            (h["epoch"], h["seq"], h["hash"]) for h in held], till.name
        for _, _, _, cid, earned, redeemed in local:
            if cid:
                expected[cid] += earned - redeemed
        db = open_store(till.state / "agent.db")
        try:
            assert journal.verify(db).ok
        finally:
            db.close()
    for cid, points in expected.items():
        bal = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
        assert bal["available"] + bal["pending"] == points, cid
    alerts = (await store.office("GET", "/api/v1/alerts"))["alerts"]
    assert not [a for a in alerts if a["kind"] in ("security", "repricing-mismatch")], alerts
    return total


async def cashier(store: StoreHarness, till: Till, customers: list[str],
                  rng: random.Random, done: asyncio.Event, members: float = 0.3) -> int:
    """Receipts at one till, one after another, until `done`; a share of them members'
    (earning, not spending: nothing here needs the central). Every sale must succeed: the
    till sells whatever the central and its database do. Returns how many were sold."""
    sold = 0
    while not done.is_set():
        body: dict = {"lines": [rng.choice(ITEMS)], "payment": "cash"}
        if customers and rng.random() < members:
            body["customer_id"] = rng.choice(customers)
        await store.pos(till, "POST", "/pos/v1/receipts", body)
        sold += 1
    return sold
