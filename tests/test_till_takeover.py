"""A till that has been taken over: its own key, hand-built signed batches claiming what the
rules do not give. The central credits no more than its own re-pricing, quarantines the till,
and head office's release restores it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import timedelta

import pytest

from agent import offline_caps
from central import db, ledger, quarantine, repricing
from central.clock import parse_iso, utcnow
from central.db import transaction
from central.offline_caps import OfflineCaps
from protocol import rules
from protocol.request_auth import sign_request
from tests.sync_fixtures import LocalTill, enrol, live_central
from tests.test_central_sync_api import balance, enrolled_till, new_customer, send
from tests.test_end_to_end import CARD, SOCKS
from tests.till_double import TestTill
from tillpoint.processes import tillpoint_cmd, wait_for
from tillpoint.store_harness import ApiError

__all__ = ["live_central"]

LINES = [{"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "category": "sports",
          "brand": "", "flags": []}]
ONE_ROUBLE = [{"sku": "1", "name": "Match", "qty": 1000, "price": 100, "category": "",
               "brand": "", "flags": []}]


async def pull(central, till: TestTill, clock) -> dict:
    """The till's pulls, signed with its key: the rule set, then customers from cursor 0."""
    now = int(clock().timestamp())
    for path in ("/sync/v1/ruleset", "/sync/v1/customers?since=0"):
        headers = sign_request(till.key, till.till_id, "GET", path, b"", now)
        resp = await central.get(path, headers=headers)
        assert resp.status == 200, await resp.text()
    return await resp.json()


def sent_view(delta: dict, customer_id: str) -> rules.Customer:
    """The customer as the till would price them from what the central sent it."""
    c = next(c for c in delta["customers"] if c["id"] == customer_id)
    return rules.Customer(id=customer_id, balance=max(0, c["available"]), tier=c["tier"],
                          segments=frozenset(c["segments"]), purchase_count=c["purchases"],
                          qualifying_spend=c["qualifying_spend"],
                          activated_offers=frozenset(c["offers"]))


def ruleset(central, version: int = 1) -> rules.RuleSet:
    row = central.db.execute("SELECT doc FROM rulesets WHERE version = ?", (version,)).fetchone()
    return rules.compile_ruleset(json.loads(row["doc"]))


def sale(till: TestTill, central, customer: rules.Customer, *, lines=LINES, redeem: int = 0,
         claim_earned: int | None = None, claim_redeemed: int | None = None,
         at=None, lots_activate_now: bool = False) -> rules.Settlement:
    """A sale journalled as a till would; the claims bend it as a hostile till would."""
    when = at or parse_iso(till.sale(None).at)
    if at is None:
        till.entries.pop()
    receipt = rules.Receipt(lines=tuple(
        rules.ReceiptLine(sku=ln["sku"], qty=ln["qty"], price=ln["price"],
                          amount=(ln["qty"] * ln["price"] + 500) // 1000,
                          category=ln["category"]) for ln in lines), store="s1")
    s = rules.settle(ruleset(central), receipt, customer, when, redeem)
    earned = s.earned if claim_earned is None else claim_earned
    redeemed = s.redeemed if claim_redeemed is None else claim_redeemed
    e = till.sale(customer.id, earned=earned, redeemed=redeemed, at=when,
                  window_days=0 if lots_activate_now else 14)
    e = dataclasses.replace(e, detail={"settlement": s.to_dict(), "lines": lines,
                                       "customer": customer.to_dict()})
    till.entries[-1] = dataclasses.replace(e, hash=e.compute_hash())
    return s


def kinds(central) -> list[str]:
    return [r["kind"] for r in central.db.execute("SELECT kind FROM alerts ORDER BY id")]


async def test_inflated_entries_credit_nothing_and_quarantine_the_till_until_released(
        central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    delta = await pull(central, till, clock)
    seen = sent_view(delta, cid)
    assert delta["quarantine"] is None and delta["caps"]["redeem_per_receipt"] > 0

    honest = sale(till, central, seen)
    assert honest.earned == 22
    # A 1-rouble sale claiming 50,000 points that activate at once.
    sale(till, central, seen, lines=ONE_ROUBLE, claim_earned=50_000, lots_activate_now=True)
    assert (await send(central, till.batch())).status == 200
    # Nothing the till claimed is spendable before the central has re-priced it.
    assert (await balance(central, cid))["available"] == 1000

    assert repricing.reprice_pending(central.db, clock()) == 2
    assert await balance(central, cid) == {"available": 1000, "pending": 22, "debt": 0}
    lot = central.db.execute("SELECT activates_at FROM lots WHERE receipt_id = ?",
                             (till.entries[0].receipt_id,)).fetchone()
    # The rule set's dates for the sale, not the dates the till's entry carries.
    assert parse_iso(lot["activates_at"]) == honest.lots[0].activates_at
    assert lot["activates_at"] != till.entries[0].lots[0]["activates"]
    assert "till-quarantined" in kinds(central)
    alert = central.db.execute("SELECT severity, message FROM alerts"
                               " WHERE kind = 'till-quarantined'").fetchone()
    assert alert["severity"] == "critical" and "earned 50000" in alert["message"]

    # Quarantined: it keeps selling and syncing, its credits are held, its caps are 0.
    delta = await pull(central, till, clock)
    assert delta["quarantine"]["reason"] and delta["caps"]["redeem_per_receipt"] == 0
    assert delta["caps"]["redeem_per_card_day"] == 0 and delta["caps"]["till_outstanding"] == 0
    listed = (await (await central.get("/api/v1/tills", headers=central.admin)).json())["tills"]
    assert listed[0]["quarantine"]["since"]
    seen = sent_view(delta, cid)
    held = sale(till, central, seen)
    assert (await send(central, till.batch(3, 3))).status == 200
    repricing.reprice_pending(central.db, clock())
    clock.advance(days=15)  # both honest sales are past their return window
    with transaction(central.db):
        ledger.mature(central.db, cid, clock())  # as the maturing of lots does
    assert await balance(central, cid) == {"available": 1022, "pending": held.earned,
                                           "debt": 0}

    resp = await central.post(f"/api/v1/tills/{till.till_id}/release",
                              json={"actor": "security@ho"}, headers=central.admin)
    assert resp.status == 200 and (await resp.json())["released_points"] == held.earned
    assert await balance(central, cid) == {"available": 1022 + held.earned, "pending": 0,
                                           "debt": 0}
    assert ledger.movement_total(central.db, cid) == 1022 + held.earned
    delta = await pull(central, till, clock)
    assert delta["quarantine"] is None and delta["caps"]["redeem_per_receipt"] > 0
    # The inflated sale stays uncredited: the ledger explains it with an adjustment.
    resp = await central.get(f"/api/v1/customers/{cid}", headers=central.admin)
    history = (await resp.json())["history"]
    assert any(h["kind"] == "adjust" and h["points"] == -50_000 for h in history)
    assert (await central.post("/api/v1/tills/till_nobody/release", json={"actor": "x"},
                               headers=central.admin)).status == 404


async def test_a_view_a_balance_or_a_rule_set_never_sent_is_not_honoured(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    seen = sent_view(await pull(central, till, clock), cid)
    # Spending a balance the central never sent this till: 1,000,000 points.
    sale(till, central, dataclasses.replace(seen, balance=2_000_000), redeem=0,
         claim_redeemed=1_000_000)
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    message = central.db.execute("SELECT message FROM alerts WHERE kind = 'repricing-mismatch'"
                                 ).fetchone()["message"]
    assert "balance of 2000000" in message
    assert "till-quarantined" in kinds(central)
    # Ingest took the till's word (debt, and an alert); re-pricing gave it all back.
    assert "offline-overspend" in kinds(central)
    assert await balance(central, cid) == {"available": 1000, "pending": 0, "debt": 0}
    assert ledger.movement_total(central.db, cid) == 1000  # explained entry by entry

    other = await enrolled_till(central)  # never pulled anything
    sale(other, central, seen)
    assert (await send(central, other.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    messages = [r["message"] for r in central.db.execute(
        "SELECT message FROM alerts WHERE kind = 'repricing-mismatch' AND till_id = ?",
        (other.till_id,))]
    assert messages and "never sent to this till" in messages[0]


async def test_a_sale_time_out_of_bounds_is_held_to_them_with_an_alert(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central)
    seen = sent_view(await pull(central, till, clock), cid)
    # Sold "in 2020": the points would be active long ago. The central holds the time to
    # the till's previous entry (none: its enrolment) and the time of ingest.
    sale(till, central, seen, at=clock() - timedelta(days=2000))
    assert (await send(central, till.batch())).status == 200
    assert "sale-time" in kinds(central)
    repricing.reprice_pending(central.db, clock())
    lot = central.db.execute("SELECT activates_at, status FROM lots WHERE customer_id = ?",
                             (cid,)).fetchone()
    assert lot["status"] == "pending" and parse_iso(lot["activates_at"]) > clock()


async def test_the_till_says_it_is_quarantined_and_spends_nothing(live_central, tmp_path):
    ident = await enrol(live_central)
    till = LocalTill(ident, tmp_path / "agent.db")
    try:
        await till.sync.pull_customers()
        assert till.sync.state.quarantine is None
        with transaction(live_central.db):
            quarantine.quarantine(live_central.db, ident.till_id, "entry 7 re-priced otherwise",
                                  utcnow())
        await till.sync.pull_customers()
        assert till.sync.state.quarantine["reason"] == "entry 7 re-priced otherwise"
        assert till.sync.state.to_dict()["quarantine"] == till.sync.state.quarantine
        caps = offline_caps.load(till.db)
        assert (caps.redeem_per_receipt, caps.redeem_per_card_day, caps.till_outstanding) == (
            0, 0, 0)
        till.sell()  # it keeps selling and syncing
        assert await till.sync.push() == 1
    finally:
        await till.close()
    # Store IT sees it with the agent stopped, from the till's own files.
    out = subprocess.run(tillpoint_cmd("agent", "status", "--state", str(tmp_path),
                                       "--pos-port", "1"),
                         capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout)["quarantine"]["reason"] == "entry 7 re-priced otherwise"

    again = LocalTill(ident, tmp_path / "agent.db")  # after a restart it still knows
    try:
        assert again.sync.state.quarantine is not None
        resp = await live_central.post(f"/api/v1/tills/{ident.till_id}/release",
                                       json={"actor": "security@ho"}, headers=live_central.admin)
        assert resp.status == 200
        await again.sync.pull_customers()
        assert again.sync.state.quarantine is None
        assert offline_caps.load(again.db).redeem_per_receipt == OfflineCaps().redeem_per_receipt
    finally:
        await again.close()


async def test_a_quarantined_till_keeps_selling_refuses_redemptions_and_says_so(store):
    """Real processes: the agent learns of its quarantine with its next pull."""
    till = store.tills[0]
    cid = (await store.office("POST", "/api/v1/customers",
                              {"card_number": CARD, "welcome_bonus": 1000}))["id"]
    conn = db.connect(store.central_database)
    try:
        with transaction(conn):
            quarantine.quarantine(conn, till.till_id, "entry 3 re-priced otherwise", utcnow())
    finally:
        conn.close()

    async def says_so() -> dict | None:
        status = await store.pos(till, "GET", "/pos/v1/status")
        return status if status["quarantine"] else None

    status = await wait_for(says_so, "the till to report its quarantine")
    assert status["quarantine"]["reason"] == "entry 3 re-priced otherwise"
    await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})
    await store.present(till, cid)
    with pytest.raises(ApiError) as e:
        await store.pos(till, "POST", "/pos/v1/receipts",
                        {"customer_id": cid, "lines": [SOCKS], "redeem": 10})
    assert e.value.status == 409
    sold = await store.pos(till, "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [SOCKS]})
    assert sold["earned"] > 0  # it keeps selling

    await store.office("POST", f"/api/v1/tills/{till.till_id}/release", {"actor": "ho"})

    async def released() -> bool | None:
        status = await store.pos(till, "GET", "/pos/v1/status")
        return True if status["quarantine"] is None else None

    await wait_for(released, "the till to report its release")
