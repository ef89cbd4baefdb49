"""Blocking a customer or a card: head office with a reason, audited; the tills refuse them
after their next sync, showing the reason; a blocked customer neither earns nor spends at
the till; the central credits nothing of a sale made after the till had been sent the block,
and credits a till that had not been (offline: what the till was sent is what counts).

End to end on real parts: a central test server, and tills made of the agent's own store,
sync client, checkout and POS API (tests/sync_fixtures.py, tests/pos_rig.py)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.checkout import Checkout
from agent.devices.reader import CardPresented
from agent.pos_api import LastCard, Till, make_app
from agent.pos_auth import PosSecret, write_pos_secret
from agent.taxes import StoreVat
from central import blocks, db, deltas, repricing
from central.clock import iso
from tests.pos_rig import CASHIER, PaperPrinter
from tests.sync_fixtures import LocalTill, enrol, live_central  # noqa: F401
from tests.test_central_sync_api import enrolled_till

CARD, OTHER_CARD, THIRD_CARD = "2990000000012", "2990000000029", "4000000000000002"
SOCKS = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000, "vat": "22"}
STOLEN = "card reported stolen"


async def new(central, card: str, bonus: int = 0) -> str:
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": card, "welcome_bonus": bonus})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def block(central, cid: str, *, unblock: bool = False, **body):
    verb = "unblock" if unblock else "block"
    return await central.post(f"/api/v1/customers/{cid}/{verb}", headers=central.admin,
                              json=body)


async def error(resp) -> str:
    return (await resp.json())["error"]


# -- head office ------------------------------------------------------------------------

async def test_a_customer_is_blocked_and_unblocked_with_a_reason_audited(central):
    cid = await new(central, CARD)
    resp = await block(central, cid, reason=STOLEN)
    assert resp.status == 200
    assert await resp.json() == {"customer_id": cid, "blocked": True, "reason": STOLEN}
    read = await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json()
    assert read["blocked"]["reason"] == STOLEN and read["blocked"]["at"]
    search = await (await central.get("/api/v1/customers", headers=central.admin,
                                      params={"id": cid})).json()
    assert search["customers"][0]["blocked"] is True
    resp = await block(central, cid, reason="again")
    assert resp.status == 409 and "blocked already" in await error(resp)
    resp = await block(central, cid, unblock=True, reason="found the card")
    assert resp.status == 200 and (await resp.json())["blocked"] is False
    read = await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json()
    assert read["blocked"] is None
    resp = await block(central, cid, unblock=True, reason="twice")
    assert resp.status == 409 and "not blocked" in await error(resp)
    got = [(r["action"], json.loads(r["after"])) for r in central.db.execute(
        "SELECT action, after FROM audit WHERE action LIKE 'customer.%block' ORDER BY seq")]
    assert got == [("customer.block", {"blocked": True, "reason": STOLEN}),
                   ("customer.unblock", {"blocked": False, "reason": "found the card"})]


async def test_a_card_is_blocked_by_its_last_digits_or_its_number(central):
    cid = await new(central, CARD)
    resp = await central.post(f"/api/v1/customers/{cid}/cards", headers=central.admin,
                              json={"card_number": THIRD_CARD})
    assert resp.status == 201
    resp = await block(central, cid, card="0012", reason=STOLEN)
    assert await resp.json() == {"customer_id": cid, "card": "****0012", "blocked": True,
                                 "reason": STOLEN}
    read = await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json()
    assert read["blocked"] is None
    assert [(c["last4"], c["reason"]) for c in read["blocked_cards"]] == [("0012", STOLEN)]
    resp = await block(central, cid, card_number=THIRD_CARD, reason="lost")
    assert resp.status == 200 and (await resp.json())["card"] == "****0002"
    resp = await block(central, cid, unblock=True, card_number="2990 0000 0001 2",
                       reason="found")
    assert resp.status == 200
    # the audit log says a card was named, never which
    after = [json.loads(r["after"]) for r in central.db.execute(
        "SELECT after FROM audit WHERE action LIKE 'customer.card.%block' ORDER BY seq")]
    assert [a["last4"] for a in after] == ["[personal data]"] * 3
    assert "0012" not in " ".join(r["after"] for r in central.db.execute(
        "SELECT after FROM audit WHERE action LIKE 'customer.card.%block'"))


async def test_two_cards_with_the_same_last_digits_are_named_by_number(central):
    cid = await new(central, CARD)
    await central.post(f"/api/v1/customers/{cid}/cards", headers=central.admin,
                       json={"card_number": "4000000000000012"})
    resp = await block(central, cid, card="0012", reason=STOLEN)
    assert resp.status == 409 and "card_number" in await error(resp)
    resp = await block(central, cid, card_number="4000000000000012", reason=STOLEN)
    assert resp.status == 200


@pytest.mark.parametrize(("body", "status", "named"), [
    ({}, 400, "reason"), ({"reason": ""}, 400, "reason"), ({"reason": "   "}, 400, "reason"),
    ({"reason": "x" * 201}, 400, "reason"), ({"reason": 5}, 400, "reason"),
    ({"reason": "r", "card": "12"}, 400, "card"), ({"reason": "r", "card": 12}, 400, "card"),
    ({"reason": "r", "card_number": "12"}, 400, "card_number"),
    ({"reason": "r", "colour": "red"}, 400, "colour"),
    ({"reason": "r", "card": "9999"}, 404, "9999"),
    ({"reason": "r", "card_number": OTHER_CARD}, 404, "card"),
])
async def test_bad_blocks_are_refused_naming_the_field(central, body, status, named):
    cid = await new(central, CARD)
    await new(central, OTHER_CARD)
    resp = await central.post(f"/api/v1/customers/{cid}/block", headers=central.admin,
                              json=body)
    assert resp.status == status and named in await error(resp)


async def test_an_unknown_customer_is_404(central):
    resp = await block(central, "cus_nobody", reason=STOLEN)
    assert resp.status == 404


async def test_the_block_travels_in_the_customer_delta_and_is_recorded_as_sent(central,
                                                                               clock):
    till = await enrolled_till(central)
    cid = await new(central, CARD)
    other = await new(central, OTHER_CARD)
    await block(central, cid, reason=STOLEN)
    await block(central, other, card="0029", reason="lost")
    page = deltas.customer_deltas(central.db, till.till_id, 0, clock())
    by_id = {c["id"]: c for c in page["customers"]}
    assert by_id[cid]["blocked"] == STOLEN and by_id[cid]["blocked_cards"] == {}
    assert by_id[other]["blocked"] is None
    assert list(by_id[other]["blocked_cards"].values()) == ["lost"]
    assert list(by_id[other]["blocked_cards"]) == by_id[other]["cards"]
    views = {r["customer_id"]: json.loads(r["view"]) for r in central.db.execute(
        "SELECT customer_id, view FROM till_views")}
    assert views[cid]["blocked"] == STOLEN and views[other]["blocked"] is None


def _view(conn, till_id: str, cid: str, at: datetime, blocked: str | None) -> None:
    conn.execute("INSERT INTO till_views (till_id, customer_id, delivered_at, view)"
                 " VALUES (?, ?, ?, ?)", (till_id, cid, iso(at), json.dumps(
                     {"blocked": blocked})))


async def test_a_sale_is_refused_only_if_every_view_the_till_may_have_held_was_blocked(
        central):
    till = await enrolled_till(central)
    cid = await new(central, CARD)
    t0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
    conn, tid = central.db, till.till_id
    assert blocks.sale_refusal(conn, tid, cid, t0) is None  # never sent anything
    _view(conn, tid, cid, t0, None)
    _view(conn, tid, cid, t0 + timedelta(hours=1), STOLEN)  # the block reaches the till
    # sold before the block was sent, or so near it that the clocks cannot tell: credited
    assert blocks.sale_refusal(conn, tid, cid, t0 + timedelta(minutes=30)) is None
    assert blocks.sale_refusal(conn, tid, cid, t0 + timedelta(minutes=62)) is None
    # sold well after: the till had been told
    why = blocks.sale_refusal(conn, tid, cid, t0 + timedelta(hours=2))
    assert why is not None and STOLEN in why
    # lifted later: a sale after the lift reached the till is credited again
    _view(conn, tid, cid, t0 + timedelta(hours=3), None)
    assert blocks.sale_refusal(conn, tid, cid, t0 + timedelta(hours=2)) is not None
    assert blocks.sale_refusal(conn, tid, cid, t0 + timedelta(hours=3, minutes=2)) is None
    assert blocks.sale_refusal(conn, tid, cid, t0 + timedelta(hours=4)) is None
    # a card's block refuses a sale that names the card, in every view the till held
    card = {"blocked": None, "blocked_cards": {"ct_blocked": "lost"}}
    conn.execute("INSERT INTO till_views (till_id, customer_id, delivered_at, view)"
                 " VALUES (?, ?, ?, ?)", (tid, cid, iso(t0 + timedelta(hours=5)),
                                          json.dumps(card)))
    later = t0 + timedelta(hours=6)
    assert "lost" in (blocks.sale_refusal(conn, tid, cid, later, ["ct_other", "ct_blocked"])
                      or "")
    assert blocks.sale_refusal(conn, tid, cid, later, ["ct_other"]) is None
    assert blocks.sale_refusal(conn, tid, cid, later) is None  # no card named
    # another till was never sent the block: its sales are credited
    other = await enrolled_till(central)
    _view(conn, other.till_id, cid, t0, None)
    assert blocks.sale_refusal(conn, other.till_id, cid, t0 + timedelta(hours=2)) is None


# -- end to end: the till ----------------------------------------------------------------

class PosTill:
    """A till of real agent parts: its store and sync client (LocalTill), and the checkout
    and POS API over that store, with the card keys the central gave it."""

    def __init__(self, central, local: LocalTill, tmp: Path) -> None:
        self.local = local
        # the sync client's rules cache, as the agent shares one (agent.service)
        self.checkout = Checkout(local.db, PaperPrinter(), local.sync.rules,  # type: ignore[arg-type]
                                 local.ident.store, lambda: datetime.now(UTC),
                                 vat=StoreVat({"22": 1, "10": 2, "0": 3, "none": 4}, "22"))
        secret_path = tmp / f"pos-secret-{local.ident.till_id}"
        write_pos_secret(secret_path)
        self.auth = {"Authorization": f"Bearer {secret_path.read_text().strip()}",
                     "Cashier-Id": CASHIER}
        ring = central.secrets.card_keys
        self.till = Till(self.checkout, LastCard(), ring, local.sync.pull_customers,
                         lambda: {}, self._no_shift, app_keys=lambda: ring)
        self.app = make_app(self.till, PosSecret(secret_path))

    async def _no_shift(self) -> int:
        return 0

    async def start(self, aiohttp_client) -> PosTill:
        self.pos = await aiohttp_client(self.app)
        await self.sync()
        return self

    async def sync(self) -> None:
        await self.local.sync.pull_ruleset()
        await self.local.sync.pull_customers()

    async def identify(self, card: str):
        return await self.pos.post("/pos/v1/identify", headers=self.auth,
                                   json={"card_number": card})

    async def sell(self, cid: str, redeem: int = 0):
        return await self.pos.post("/pos/v1/receipts", headers=self.auth,
                                   json={"customer_id": cid, "lines": [SOCKS],
                                         "redeem": redeem})


@pytest.fixture
async def tills(live_central, aiohttp_client, tmp_path: Path):  # noqa: F811
    made = []

    async def make() -> PosTill:
        local = LocalTill(await enrol(live_central), tmp_path / f"till-{len(made)}.db")
        made.append(local)
        return await PosTill(live_central, local, tmp_path).start(aiohttp_client)

    yield make
    for local in made:
        await local.close()


async def test_tills_refuse_a_blocked_customer_after_their_next_sync(live_central, tills):  # noqa: F811
    central = live_central
    cid = await new(central, CARD, bonus=500)
    till = await tills()
    assert (await till.identify(CARD)).status == 200
    await block(central, cid, reason=STOLEN)
    # not synced yet: the till cannot know
    assert (await till.identify(CARD)).status == 200
    await till.sync()
    resp = await till.identify(CARD)
    assert resp.status == 403
    body = await resp.json()
    assert body["blocked"] is True and body["reason"] == STOLEN
    assert body["card_blocked"] is False and STOLEN in body["error"]
    # neither earns nor spends: the POS must sell without the customer
    for path, extra in (("/pos/v1/price", {}), ("/pos/v1/receipts", {"redeem": 0})):
        resp = await till.pos.post(path, headers=till.auth,
                                   json={"customer_id": cid, "lines": [SOCKS], **extra})
        assert resp.status == 403 and STOLEN in await error(resp)
    assert till.checkout.printer.documents == []  # type: ignore[attr-defined]
    # nor is the customer proved present by a code
    for path, extra in (("/pos/v1/presence/sms", {}), ("/pos/v1/presence/code",
                                                       {"code": "123456"})):
        resp = await till.pos.post(path, headers=till.auth, json={"customer_id": cid, **extra})
        assert resp.status == 403 and STOLEN in await error(resp)
    await block(central, cid, unblock=True, reason="found")
    await till.sync()
    assert (await till.identify(CARD)).status == 200


async def test_tills_refuse_a_blocked_card_and_take_the_customers_other_card(
        live_central, tills):  # noqa: F811
    central = live_central
    cid = await new(central, CARD)
    await central.post(f"/api/v1/customers/{cid}/cards", headers=central.admin,
                       json={"card_number": THIRD_CARD})
    await block(central, cid, card="0012", reason=STOLEN)
    till = await tills()
    resp = await till.identify(CARD)
    assert resp.status == 403
    body = await resp.json()
    assert body["card_blocked"] is True and body["card_last4"] == "0012"
    assert body["error"] == f"card ****0012 is blocked by head office: {STOLEN}"
    who = await till.identify(THIRD_CARD)
    assert who.status == 200 and (await who.json())["customer_id"] == cid
    assert (await till.sell(cid)).status == 201  # the customer is not blocked


async def test_the_central_credits_only_what_tills_sold_before_they_were_told(
        live_central, tills, monkeypatch):  # noqa: F811
    """Till A pulls the block; till B, offline since before it, sells to the customer in good
    faith and is credited. A till that sells after it was told (here: its store tampered
    with, the block wiped) is not: a `blocked-customer-sale` alert, no quarantine."""
    central = live_central
    # Deliveries and sales a few seconds apart: the clocks' tolerance would blur them.
    monkeypatch.setattr(blocks, "CLOCK_TOLERANCE", timedelta(0))
    cid = await new(central, CARD, bonus=500)
    told, offline = await tills(), await tills()
    await block(central, cid, reason=STOLEN)
    await told.sync()
    # till B never heard: it sells and earns as before
    sale = await offline.sell(cid)
    assert sale.status == 201, await sale.text()
    earned_offline = (await sale.json())["earned"]
    assert earned_offline > 0
    # till A was told; with the block wiped from its store it sells anyway
    told.local.db.execute("UPDATE customers SET blocked = NULL")
    told.local.db.conn.commit()
    sale = await told.sell(cid)
    assert sale.status == 201
    assert (await sale.json())["earned"] > 0
    for t in (offline, told):
        await t.local.sync.push()
    while repricing.reprice_pending(central.db, datetime.now(UTC)):
        pass
    lots = {r["till_id"]: (r["points"], r["hold"]) for r in central.db.execute(
        "SELECT till_id, points, hold FROM lots WHERE till_id IS NOT NULL")}
    assert lots[offline.local.ident.till_id] == (earned_offline, None)  # credited
    assert lots[told.local.ident.till_id][1] == "refused"
    got = [(r["kind"], r["till_id"]) for r in central.db.execute(
        "SELECT kind, till_id FROM alerts WHERE kind IN ('blocked-customer-sale',"
        " 'repricing-mismatch', 'till-quarantined')")]
    assert got == [("blocked-customer-sale", told.local.ident.till_id)]
    assert central.db.execute("SELECT COUNT(*) FROM tills WHERE quarantined_at IS NOT NULL"
                              ).fetchone()[0] == 0


async def test_a_card_blocked_at_a_till_that_was_told_earns_nothing_when_presented(
        live_central, tills, monkeypatch):  # noqa: F811
    """A sale that spends names the presented card in its proof of presence: the central
    refuses to credit it if that card was blocked in what the till had been sent."""
    central = live_central
    monkeypatch.setattr(blocks, "CLOCK_TOLERANCE", timedelta(0))
    cid = await new(central, CARD, bonus=500)
    await central.post(f"/api/v1/customers/{cid}/cards", headers=central.admin,
                       json={"card_number": THIRD_CARD})
    till = await tills()
    await block(central, cid, card="0012", reason=STOLEN)
    await till.sync()
    ring = central.secrets.card_keys

    async def present_and_sell(card: str):
        till.till.last_card.presented(CardPresented(tuple(t for _, t in ring.tokens(card)),
                                                    "loyalty", card[-4:], time.monotonic()))
        who = await till.pos.post("/pos/v1/identify", headers=till.auth, json={})
        assert who.status == 200, await who.text()
        assert (await who.json())["present"] == "card"
        sale = await till.sell(cid, redeem=10)
        assert sale.status == 201, await sale.text()
        return (await sale.json())["receipt_id"]

    # the other card is fine; the blocked one, presented at a tampered till, is not
    good = await present_and_sell(THIRD_CARD)
    till.local.db.execute("UPDATE cards SET blocked = NULL")
    till.local.db.conn.commit()
    bad = await present_and_sell(CARD)
    await till.local.sync.push()
    while repricing.reprice_pending(central.db, datetime.now(UTC)):
        pass
    holds = {r["receipt_id"]: r["hold"] for r in central.db.execute(
        "SELECT receipt_id, hold FROM lots WHERE till_id IS NOT NULL")}
    assert holds == {good: None, bad: "refused"}
    kinds = [r["kind"] for r in central.db.execute(
        "SELECT kind FROM alerts WHERE kind IN ('blocked-customer-sale',"
        " 'repricing-mismatch')")]
    assert kinds == ["blocked-customer-sale"]


_deliveries = st.lists(st.tuples(st.integers(0, 120), st.booleans()), max_size=8)


@pytest.fixture
def one_central(tmp_path: Path):
    """One SQLite central for all of a property test's examples (tills apart by id)."""
    conn = db.connect(tmp_path / "property.db")
    yield conn
    conn.close()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_deliveries, st.integers(0, 130))
def test_what_the_till_may_have_held_decides(one_central, deliveries, sold_minute):
    """Deliveries to a till at minutes (blocked or not), a sale at a minute; the tolerance
    five minutes. Credited if any view the till may have held lacked the block; refused if
    the last view surely held, and every one sent near the sale, carried it."""
    conn = one_central
    till_id = f"t{uuid.uuid4().hex[:8]}"
    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    tol = 5
    for minute, blocked in sorted(deliveries, key=lambda d: d[0]):
        _view(conn, till_id, "cus_x", t0 + timedelta(minutes=minute),
              STOLEN if blocked else None)
    why = blocks.sale_refusal(conn, till_id, "cus_x", t0 + timedelta(minutes=sold_minute))
    ordered = sorted(deliveries, key=lambda d: d[0])
    before = [b for m, b in ordered if m <= sold_minute - tol]
    near = [b for m, b in ordered if sold_minute - tol < m <= sold_minute + tol]
    surely_held = before[-1:] if before else []
    if not any(b for m, b in ordered if m <= sold_minute + tol):
        assert why is None  # never told
    if any(not b for b in near) or (surely_held and not surely_held[0]):
        assert why is None  # may have held a view without the block
    if (surely_held or near) and all(surely_held + near):
        assert why is not None and STOLEN in why
