"""Fraud rules through real ingest of signed batches, the follower, and the head-office API:
for each rule a hit and a near miss, holds that stop the points being spent until a person
releases or confirms them, reviews, and the thresholds validated where they enter."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from statistics import median

from hypothesis import given
from hypothesis import strategies as st

from central import fraud_rules, fraud_watch, ledger, repricing
from central.app import make_app
from central.errors import Refused
from central.web_common import DB, SECRETS
from protocol import presence as proofs
from protocol.journal import JournalEntry
from tests import test_channel_orders as orders
from tests.test_central_sync_api import send
from tests.test_till_takeover import pull
from tests.till_double import TestTill

_cards = itertools.count(1)
CARD = proofs.card(["ct_" + "0" * 32])  # the card read at the reader


async def till_at(central, store: str) -> TestTill:
    till = TestTill()
    resp = await central.post("/api/v1/enrolment-tokens", json={"store": store},
                              headers=central.admin)
    token = (await resp.json())["token"]
    resp = await central.post("/sync/v1/enroll", json=till.enrolment(token))
    assert resp.status == 200, await resp.text()
    till.till_id = (await resp.json())["till_id"]
    till.store = store
    return till


async def customer(central, bonus: int = 0) -> str:
    card = f"2990{next(_cards):09d}"
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": card, "welcome_bonus": bonus})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


def journal(till: TestTill, kind: str, customer_id: str | None, at: datetime, *,
            redeemed: int = 0, cashier: str | None = None, original: str | None = None,
            presence: dict | None = None) -> JournalEntry:
    return till._append(JournalEntry(
        seq=0, epoch="", prev_hash="", kind=kind, receipt_id=uuid.uuid4().hex,
        at=at.isoformat(), store=till.store, customer_id=customer_id, ruleset_version=1,
        total=1000, fiscal_doc=len(till.entries) + 1, redeemed=redeemed, cashier=cashier,
        original_receipt_id=original, presence=presence))


async def push(central, till: TestTill) -> None:
    """Send the till's entries not sent yet, as one signed batch."""
    first = getattr(till, "sent", 0) + 1
    if first > len(till.entries):
        return
    resp = await send(central, till.batch(first))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["acked_seq"] == len(till.entries)
    till.sent = len(till.entries)


def watch(central, clock) -> None:
    while fraud_watch.watch_pending(central.db, clock(), limit=3):  # page by page
        pass


async def hits(central, **query) -> list[dict]:
    resp = await central.get("/api/v1/fraud-hits", params=query, headers=central.admin)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["hits"]


async def put_rules(central, body) -> tuple[int, dict]:
    resp = await central.put("/api/v1/fraud-rules", json=body, headers=central.admin)
    return resp.status, await resp.json()


async def balance(central, cid: str) -> dict:
    resp = await central.get(f"/api/v1/customers/{cid}", headers=central.admin)
    return (await resp.json())["balance"]


def consistent(central, cid: str, now: datetime) -> bool:
    """The ledger's invariant: its movements explain the balance, hold or no hold."""
    b = ledger.balance(central.db, cid, now)
    return ledger.movement_total(central.db, cid) == b.available + b.pending


# -- the rules document ------------------------------------------------------------------

async def test_rules_are_read_changed_in_part_and_the_change_audited(central):
    resp = await central.get("/api/v1/fraud-rules", headers=central.admin)
    rules = await resp.json()
    assert rules["cashier-unusual"] == {"enabled": True, "days": 7, "min_count": 10,
                                        "factor_percent": 300}
    assert rules["card-many-stores"]["hold"] is True
    status, body = await put_rules(central, {"card-many-stores": {"minutes": 5}})
    assert status == 200 and body["card-many-stores"]["minutes"] == 5
    assert body["card-many-stores"]["stores"] == 2  # what the PUT left out is kept
    resp = await central.get("/api/v1/audit", params={"action": "fraud-rules.set"},
                             headers=central.admin)
    records = (await resp.json())["records"]
    assert len(records) == 1
    assert records[0]["before"]["card-many-stores"]["minutes"] == 10
    assert records[0]["after"]["card-many-stores"]["minutes"] == 5


async def test_bad_thresholds_are_refused_naming_the_field_and_nothing_is_kept(central):
    cases = [
        ({"no-such-rule": {}}, "unknown rule 'no-such-rule'"),
        ({"card-many-stores": 5}, "'card-many-stores' must be an object"),
        ({"card-many-stores": {"minutes": 0}}, "'card-many-stores.minutes' must be an integer"
                                               " from 1 to 1440"),
        ({"card-many-stores": {"minutes": "10"}}, "'card-many-stores.minutes'"),
        ({"card-many-stores": {"minutes": 2.5}}, "'card-many-stores.minutes'"),
        ({"cashier-unusual": {"factor_percent": 100}}, "'cashier-unusual.factor_percent'"),
        ({"spent-after-accrual": {"spent_percent": 101}}, "'spent-after-accrual.spent_percent'"),
        ({"cards-per-phone": {"max_cards": True}}, "'cards-per-phone.max_cards'"),
        ({"till-mismatches": {"enabled": "yes"}}, "'till-mismatches.enabled' must be true"),
        ({"till-mismatches": {"hold": True}}, "'till-mismatches.hold': this rule concerns"),
        ({"cashier-unusual": {"typo": 1}}, "'cashier-unusual.typo' is unknown"),
        # the first part is good, the second is not: neither is kept
        ({"card-many-stores": {"minutes": 7}, "cards-per-phone": {"max_cards": -1}},
         "'cards-per-phone.max_cards'"),
    ]
    for body, message in cases:
        status, answer = await put_rules(central, body)
        assert status == 400, body
        assert message in answer["error"], (body, answer)
    resp = await central.put("/api/v1/fraud-rules", data=b"[1]", headers=central.admin)
    assert resp.status == 400
    resp = await central.get("/api/v1/fraud-rules", headers=central.admin)
    assert (await resp.json())["card-many-stores"]["minutes"] == 10


_THRESHOLDS = [(rule, name, lo, hi) for rule, fields in fraud_rules.THRESHOLDS.items()
               for name, (_, lo, hi) in fields.items()]


@given(st.sampled_from(_THRESHOLDS), st.integers(-(2**64), 2**64))
def test_a_threshold_is_taken_exactly_within_its_bounds(threshold, value):
    rule, name, lo, hi = threshold
    try:
        doc = fraud_rules.merged(fraud_rules.defaults(), {rule: {name: value}})
    except Refused as e:
        assert not lo <= value <= hi
        assert e.status == 400 and f"'{rule}.{name}'" in str(e)
    else:
        assert lo <= value <= hi and doc[rule][name] == value
        assert {r: f for r, f in doc.items() if r != rule} == {
            r: f for r, f in fraud_rules.defaults().items() if r != rule}


# -- (a) one card in several stores within minutes ---------------------------------------

async def test_a_card_in_two_stores_within_minutes_hits_and_holds_its_points(central, clock):
    north, south = await till_at(central, "north"), await till_at(central, "south")
    t = clock()
    ann, bob = await customer(central, bonus=300), await customer(central, bonus=300)
    journal(north, "sale", ann, t)
    journal(south, "sale", ann, t + timedelta(minutes=9))  # 9 minutes later, elsewhere
    journal(north, "sale", bob, t)
    journal(south, "sale", bob, t + timedelta(minutes=11))  # near miss: 11 minutes
    clock.advance(minutes=12)
    await push(central, north)
    await push(central, south)
    watch(central, clock)
    found = await hits(central, rule="card-many-stores")
    assert [h["customer_id"] for h in found] == [ann]
    hit = found[0]
    assert hit["evidence"]["stores"] == 2
    assert {r["store"] for r in hit["evidence"]["receipts"]} == {"north", "south"}
    assert {r["receipt_id"] for r in hit["evidence"]["receipts"]} == {
        north.entries[0].receipt_id, south.entries[0].receipt_id}
    alert = central.db.execute("SELECT kind, source, customer_id, message FROM alerts"
                               " WHERE id = ?", (hit["alert_id"],)).fetchone()
    assert (alert["kind"], alert["source"], alert["customer_id"]) == (
        "fraud", "card-many-stores", ann)
    # The rule holds Ann's points (the default for this rule): pending, not spendable.
    assert hit["hold_status"] == "held" and hit["held_points"] == 300
    assert await balance(central, ann) == {"available": 0, "pending": 300, "debt": 0}
    assert await balance(central, bob) == {"available": 300, "pending": 0, "debt": 0}
    assert consistent(central, ann, clock())
    watch(central, clock)
    assert len(await hits(central)) == 1  # each receipt once


def _most_stores(visits, now_visit, span) -> int:
    """By brute force: the most stores among visits within `span` of each other that
    include `now_visit`."""
    best = 0
    others = [v for v in visits if v is not now_visit]
    for n in range(len(others) + 1):
        for group in itertools.combinations(others, n):
            times = [v.at for v in (*group, now_visit)]
            if max(times) - min(times) <= span:
                best = max(best, len({v.store for v in (*group, now_visit)}))
    return best


@given(st.lists(st.tuples(st.integers(-30, 30), st.sampled_from("ABCDE")), max_size=7),
       st.sampled_from("ABCDE"), st.integers(1, 20))
def test_the_stores_a_card_was_in_within_minutes_are_the_most_any_window_holds(
        offsets, store, minutes):
    t0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
    # As the rule reads them: other stores' visits near this receipt, then this one.
    visits = [fraud_watch.Visit(t0 + timedelta(minutes=off), s, f"r{i}")
              for i, (off, s) in enumerate(offsets) if s != store]
    now_visit = fraud_watch.Visit(t0, store, "now")
    visits = [v for v in visits if abs(v.at - t0) <= timedelta(minutes=minutes)]
    group = fraud_watch.busiest_window([*visits, now_visit], t0, timedelta(minutes=minutes))
    assert len(group) == _most_stores([*visits, now_visit], now_visit,
                                      timedelta(minutes=minutes))
    assert now_visit in group
    assert len({v.store for v in group}) == len(group)
    assert max(v.at for v in group) - min(v.at for v in group) <= timedelta(minutes=minutes)


async def test_a_till_that_syncs_late_is_judged_by_when_it_sold(central, clock):
    north, south = await till_at(central, "north"), await till_at(central, "south")
    t = clock()
    ann = await customer(central)
    journal(south, "sale", ann, t + timedelta(minutes=5))
    journal(south, "sale", ann, t + timedelta(hours=2))  # the same store again, later
    clock.advance(hours=3)
    await push(central, south)
    watch(central, clock)
    assert await hits(central) == []
    journal(north, "sale", ann, t)  # offline till: 5 minutes before the first at south
    await push(central, north)
    watch(central, clock)
    (hit,) = await hits(central, rule="card-many-stores")
    assert [r["receipt_id"] for r in hit["evidence"]["receipts"]] == [
        north.entries[0].receipt_id, south.entries[0].receipt_id]


# -- (b) a cashier far above the store's median cashier ----------------------------------

async def test_a_cashier_with_many_returns_against_the_stores_median_hits(central, clock):
    s1, s2 = await till_at(central, "s1"), await till_at(central, "s2")
    t = clock()
    for till in (s1, s2):
        sales = [journal(till, "sale", None, t, cashier=c)
                 for c in ("ann", "bob", "cat") for _ in range(2)]
        for sale, cashier in zip(sales, ("ann", "ann", "bob", "bob", "cat", "cat"),
                                 strict=True):
            if cashier != "cat":
                journal(till, "return", None, t + timedelta(hours=1), cashier=cashier,
                        original=sale.receipt_id)
    # Ann and Bob take back 2 each, Cat none. s1: Dan takes back 10 in three days (the
    # median cashier: 2, so over 6 is unusual); s2: Dan takes back 9, fewer than 10.
    for till, n in ((s1, 10), (s2, 9)):
        for day in range(n):
            sale = journal(till, "sale", None, t + timedelta(hours=2), cashier="eve")
            journal(till, "return", None, t + timedelta(days=day % 3, hours=3),
                    cashier="dan", original=sale.receipt_id)
    clock.advance(days=3)
    await push(central, s1)
    await push(central, s2)
    watch(central, clock)
    found = await hits(central, rule="cashier-unusual")
    assert len(found) == 1, found
    ev = found[0]["evidence"]
    assert (ev["store"], ev["cashier"], ev["measure"], ev["value"]) == ("s1", "dan",
                                                                       "returns", 10)
    assert ev["store_counts"] == [0, 0, 2, 2, 10]  # cat, eve, ann, bob, dan
    assert found[0]["customer_id"] is None and found[0]["hold_status"] is None


async def test_a_cashier_typing_many_card_numbers_hits(central, clock):
    s1, s2 = await till_at(central, "s1"), await till_at(central, "s2")
    ann = await customer(central)
    t = clock()
    for till, typed in ((s1, 10), (s2, 9)):  # s2: near miss, fewer than 10
        for cashier in ("ann", "bob", "cat"):
            for _ in range(3):
                journal(till, "sale", ann, t, cashier=cashier, presence=CARD)
            journal(till, "sale", ann, t, cashier=cashier)  # one typed number each
            journal(till, "sale", None, t, cashier=cashier)  # no member: nothing typed
        for _ in range(typed):
            journal(till, "sale", ann, t, cashier="mallory")
        journal(till, "sale", ann, t, cashier="mallory", presence=CARD)
        await push(central, till)
    watch(central, clock)
    found = await hits(central, rule="cashier-unusual")
    assert [(h["evidence"]["store"], h["evidence"]["cashier"], h["evidence"]["measure"],
             h["evidence"]["value"], h["evidence"]["store_counts"]) for h in found] == [
        ("s1", "mallory", "typed_cards", 10, [1, 1, 1, 10])]


async def test_a_cashier_redeeming_for_many_customers_hits(central, clock):
    till = await till_at(central, "s1")
    t = clock()
    people = [await customer(central, bonus=100) for _ in range(13)]
    for cid in people[:10]:
        for _ in range(2):  # counted once per customer and day
            journal(till, "sale", cid, t, redeemed=10, cashier="mallory", presence=CARD)
    # Three other cashiers redeem for one customer each: the median of 1, 1, 1, 10 is 1.
    for cid, cashier in zip(people[10:], ("ann", "bob", "cat"), strict=True):
        journal(till, "sale", cid, t, redeemed=10, cashier=cashier, presence=CARD)
    await push(central, till)
    watch(central, clock)
    found = await hits(central, rule="cashier-unusual")
    assert [(h["evidence"]["cashier"], h["evidence"]["measure"], h["evidence"]["value"])
            for h in found] == [("mallory", "redeemed_customers", 10)]


def _reference(value: int, others: list[int], min_count: int, factor_percent: int) -> bool:
    return value >= min_count and Fraction(value) > Fraction(factor_percent, 100) * Fraction(
        median(others))


@given(st.lists(st.integers(0, 50), min_size=0, max_size=12), st.integers(0, 60),
       st.integers(1, 20), st.integers(101, 1000))
def test_the_baseline_is_the_median_cashier_times_the_factor(others, value, min_count,
                                                            factor_percent):
    everyone = [*others, value]
    assert fraud_watch.over_baseline(value, everyone, min_count, factor_percent) == \
        _reference(value, everyone, min_count, factor_percent)


# -- (c) a redemption right after a manual adjustment ------------------------------------

async def test_a_redemption_soon_after_a_manual_adjustment_hits(central, clock):
    till = await till_at(central, "s1")
    ann, bob = await customer(central), await customer(central)
    for cid in (ann, bob):
        resp = await central.post(f"/api/v1/customers/{cid}/adjustments",
                                  json={"points": 500, "reason": "goodwill"},
                                  headers=central.admin)
        assert resp.status == 200, await resp.text()
    t = clock()
    journal(till, "sale", ann, t + timedelta(minutes=59), redeemed=100)
    journal(till, "sale", bob, t + timedelta(minutes=61), redeemed=100)  # near miss
    clock.advance(minutes=62)
    await push(central, till)
    watch(central, clock)
    found = await hits(central, rule="redeem-after-adjustment")
    assert [h["customer_id"] for h in found] == [ann]
    ev = found[0]["evidence"]
    assert ev["adjustment"]["points"] == 500 and ev["adjustment"]["actor"] == "admin-token"
    assert ev["redemption"]["receipt_id"] == till.entries[0].receipt_id
    assert found[0]["hold_status"] is None  # this rule does not hold by default
    resp = await central.post(f"/api/v1/fraud-hits/{found[0]['id']}/hold",
                              headers=central.admin, json={"action": "release", "reason": "x"})
    assert resp.status == 409 and "holds no points" in (await resp.json())["error"]


# -- (d) many cards on one phone ---------------------------------------------------------

async def test_more_cards_on_one_account_than_the_rule_allows_hits(central, clock):
    till = await till_at(central, "s1")
    ann, bob = await customer(central), await customer(central)
    for cid, extra in ((ann, 3), (bob, 2)):  # Ann: 4 cards; Bob: 3, the most allowed
        for _ in range(extra):
            resp = await central.post(f"/api/v1/customers/{cid}/cards", headers=central.admin,
                                      json={"card_number": f"2990{next(_cards):09d}"})
            assert resp.status == 201, await resp.text()
    journal(till, "sale", ann, clock())
    journal(till, "sale", bob, clock())
    await push(central, till)
    watch(central, clock)
    found = await hits(central, rule="cards-per-phone")
    assert [h["customer_id"] for h in found] == [ann]
    assert found[0]["evidence"]["cards"] == 4 and len(found[0]["evidence"]["last4"]) == 4


# -- (e) points spent at once after a large accrual, and the hold it takes ---------------

async def test_most_of_a_large_accrual_spent_at_once_hits_and_the_rest_is_held(central, clock):
    till = await till_at(central, "s1")
    ann, bob = await customer(central, bonus=1000), await customer(central, bonus=1000)
    t = clock()
    journal(till, "sale", ann, t + timedelta(minutes=5), redeemed=800)  # 80 %: a hit
    journal(till, "sale", bob, t + timedelta(minutes=5), redeemed=790)  # 79 %: near miss
    clock.advance(minutes=6)
    await push(central, till)
    watch(central, clock)
    found = await hits(central, rule="spent-after-accrual")
    assert [h["customer_id"] for h in found] == [ann]
    hit = found[0]
    assert hit["evidence"]["accrual"]["points"] == 1000
    assert hit["evidence"]["accrual"]["kind"] == "bonus"
    assert hit["evidence"]["redemption"]["points"] == 800
    assert hit["hold_status"] == "held" and hit["held_points"] == 200
    assert await balance(central, ann) == {"available": 0, "pending": 200, "debt": 0}

    # A till that had not heard of the hold lets Ann spend 50: the held points stay held,
    # the 50 become debt, as any offline overspend does.
    journal(till, "sale", ann, clock(), redeemed=50)
    await push(central, till)
    assert await balance(central, ann) == {"available": -50, "pending": 200, "debt": 50}
    # What tills receive: the held points as pending, a lot activating at the end of time.
    sent = next(c for c in (await pull(central, till, clock))["customers"] if c["id"] == ann)
    assert (sent["available"], sent["pending"]) == (-50, 200), sent
    assert [(lot["points"], lot["active"], lot["activates"][:4]) for lot in sent["lots"]] == [
        (200, False, "9999")]
    assert consistent(central, ann, clock())

    # A person releases the hold: the points are spendable again, paying the debt first.
    resp = await central.post(f"/api/v1/fraud-hits/{hit['id']}/hold", headers=central.admin,
                              json={"action": "release", "reason": "customer called"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["hold_status"] == "released" and body["points"] == 200
    assert await balance(central, ann) == {"available": 150, "pending": 0, "debt": 0}
    assert consistent(central, ann, clock())
    resp = await central.post(f"/api/v1/fraud-hits/{hit['id']}/hold", headers=central.admin,
                              json={"action": "release", "reason": "again"})
    assert resp.status == 409 and "(its hold was released)" in (await resp.json())["error"]
    resp = await central.get("/api/v1/audit", params={"action": "fraud-hit.hold.release"},
                             headers=central.admin)
    assert len((await resp.json())["records"]) == 1


async def test_a_confirmed_hold_withdraws_the_held_points_with_a_ledger_row(central, clock):
    till = await till_at(central, "s1")
    ann = await customer(central, bonus=1000)
    journal(till, "sale", ann, clock() + timedelta(minutes=1), redeemed=900)
    clock.advance(minutes=2)
    await push(central, till)
    watch(central, clock)
    (hit,) = await hits(central, rule="spent-after-accrual")
    resp = await central.post(f"/api/v1/fraud-hits/{hit['id']}/hold", headers=central.admin,
                              json={"action": "confirm", "reason": "card was cloned"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["points"] == 100
    assert await balance(central, ann) == {"available": 0, "pending": 0, "debt": 0}
    row = ledger.history(central.db, ann, limit=1)[0]
    assert (row["kind"], row["points"], row["actor"]) == ("adjust", -100, "admin-token")
    assert f"fraud hit {hit['id']} confirmed: card was cloned" == row["reason"]
    assert consistent(central, ann, clock())


# -- (f) re-pricing mismatches of one till -----------------------------------------------

async def test_repeated_repricing_mismatches_of_one_till_hit(central, clock):
    bad, worse = await till_at(central, "s1"), await till_at(central, "s1")
    ann = await customer(central, bonus=10)
    for till, n in ((bad, 2), (worse, 3)):  # near miss: 2 of the 3 a day allowed
        for _ in range(n):
            till.sale(ann, earned=40, at=clock())  # no detail: does not re-price
        till.store = "s1"
        await push(central, till)
    repricing.reprice_pending(central.db, clock())
    found = await hits(central, rule="till-mismatches")
    assert [h["till_id"] for h in found] == [worse.till_id]
    assert found[0]["evidence"]["mismatches"] == 3
    assert {r["receipt_id"] for r in found[0]["evidence"]["receipts"]} == {
        e.receipt_id for e in worse.entries}


# -- review ------------------------------------------------------------------------------

async def test_a_false_positive_is_recorded_and_tunes_nothing(central, clock):
    till = await till_at(central, "s1")
    ann = await customer(central, bonus=1000)
    journal(till, "sale", ann, clock() + timedelta(minutes=1), redeemed=900)
    clock.advance(minutes=2)
    await push(central, till)
    watch(central, clock)
    (hit,) = await hits(central)
    before = await (await central.get("/api/v1/fraud-rules", headers=central.admin)).json()
    url = f"/api/v1/fraud-hits/{hit['id']}/review"
    resp = await central.post(url, headers=central.admin,
                              json={"verdict": "false-positive", "note": "birthday gift"})
    assert resp.status == 200, await resp.text()
    reviewed = await resp.json()
    assert (reviewed["verdict"], reviewed["reviewed_by"], reviewed["note"]) == (
        "false-positive", "admin-token", "birthday gift")
    assert reviewed["hold_status"] == "held"  # a verdict releases nothing by itself
    after = await (await central.get("/api/v1/fraud-rules", headers=central.admin)).json()
    assert after == before
    assert [h["id"] for h in await hits(central, verdict="false-positive")] == [hit["id"]]
    assert await hits(central, verdict="none") == []
    resp = await central.get("/api/v1/audit", params={"action": "fraud-hit.review"},
                             headers=central.admin)
    assert (await resp.json())["records"][0]["after"]["verdict"] == "false-positive"

    for body, status, message in (
            ({"verdict": "maybe"}, 400, "'verdict' must be one of"),
            ({}, 400, "'verdict' is required"),
            ({"verdict": "confirmed", "note": 5}, 400, "'note'")):
        resp = await central.post(url, headers=central.admin, json=body)
        assert resp.status == status and message in (await resp.json())["error"]
    resp = await central.post("/api/v1/fraud-hits/999/review", headers=central.admin,
                              json={"verdict": "confirmed"})
    assert resp.status == 404
    resp = await central.post("/api/v1/fraud-hits/x1/review", headers=central.admin,
                              json={"verdict": "confirmed"})
    assert resp.status == 400 and "'id'" in (await resp.json())["error"]
    resp = await central.post(f"/api/v1/fraud-hits/{hit['id']}/hold", headers=central.admin,
                              json={"action": "forget", "reason": "x"})
    assert resp.status == 400 and "'action' must be one of" in (await resp.json())["error"]
    resp = await central.get("/api/v1/fraud-hits", params={"rule": "nope"},
                             headers=central.admin)
    assert resp.status == 400 and "'rule'" in (await resp.json())["error"]


async def test_a_disabled_rule_does_not_hit(central, clock):
    status, _ = await put_rules(central, {"spent-after-accrual": {"enabled": False}})
    assert status == 200
    till = await till_at(central, "s1")
    ann = await customer(central, bonus=1000)
    journal(till, "sale", ann, clock() + timedelta(minutes=1), redeemed=1000)
    clock.advance(minutes=2)
    await push(central, till)
    watch(central, clock)
    assert await hits(central) == []


async def test_the_central_runs_the_rules_by_itself_as_receipts_arrive(
        aiohttp_client, tmp_path, clock, database):
    app = make_app(tmp_path / "central", clock, reprice_every=0.05,
                   database=database if isinstance(database, str) else None)
    central = await aiohttp_client(app)
    central.db = app[DB]
    central.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    till = await till_at(central, "s1")
    ann = await customer(central, bonus=1000)
    journal(till, "sale", ann, clock() + timedelta(minutes=1), redeemed=950)
    clock.advance(minutes=2)
    await push(central, till)
    deadline = time.monotonic() + 20
    while not (found := await hits(central)):
        assert time.monotonic() < deadline, "the fraud follower never ran"
        await asyncio.sleep(0.05)
    assert [(h["rule"], h["customer_id"]) for h in found] == [("spent-after-accrual", ann)]


async def test_an_online_order_beside_a_store_visit_is_not_a_card_in_two_stores(central, clock):
    """An order from the app two minutes after a purchase in a store is a person at home,
    not a card in two places: channel orders (central.channel_orders) are left out of (a)."""
    north = await till_at(central, "north")
    ann = await customer(central, bonus=300)
    journal(north, "sale", ann, clock())
    await push(central, north)
    app = await orders.channel(central, "app")
    clock.advance(minutes=2)
    resp = await orders.post(central, app, "orders/A-1/confirm",
                             {"customer_id": ann, "lines": orders.SHOES})
    assert resp.status == 200, await resp.text()
    clock.advance(minutes=1)
    watch(central, clock)
    assert await hits(central, rule="card-many-stores") == []
    # The same two minutes at two real stores would hit (the near miss of this test).
    south = await till_at(central, "south")
    journal(south, "sale", ann, clock() - timedelta(minutes=1))
    await push(central, south)
    watch(central, clock)
    assert [h["customer_id"] for h in await hits(central, rule="card-many-stores")] == [ann]
