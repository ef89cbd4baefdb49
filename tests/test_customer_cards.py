"""Several cards per customer, of kinds loyalty, bank, virtual, and a bank card known only by
its payment account reference (PAR): linked and removed at head office, audited; the tills
take and drop them with their next sync, and identify a customer by a PAR the payment
terminal reports (it earns but does not spend, as a typed number).

End to end on real parts, as tests/test_customer_blocks.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import pars
from protocol.card_keys import CardKey, CardKeyring
from protocol.cards import card_token
from tests.sync_fixtures import live_central  # noqa: F401
from tests.test_customer_blocks import SOCKS, tills  # noqa: F401

CARD, BANK_CARD, VIRTUAL = "2990000000012", "4000000000000002", "2990000000029"
SAME_ENDING = "4000000000000012"
PAR = "V0010013019123456789012345678"
OTHER_PAR = "M0010013019123456789012340000"


async def new(central, card: str = CARD) -> str:
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": card, "welcome_bonus": 300})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def link(central, cid: str, **body):
    return await central.post(f"/api/v1/customers/{cid}/cards", headers=central.admin,
                              json=body)


async def unlink(central, cid: str, card: str, **body):
    return await central.delete(f"/api/v1/customers/{cid}/cards/{card}",
                                headers=central.admin, **({"json": body} if body else {}))


async def error(resp) -> str:
    return (await resp.json())["error"]


async def test_several_cards_of_each_kind_are_linked_and_removed(central):
    cid = await new(central)
    assert (await link(central, cid, card_number=BANK_CARD)).status == 201
    assert (await link(central, cid, card_number=VIRTUAL, kind="virtual")).status == 201
    resp = await link(central, cid, par=PAR.lower()[:10] + " " + PAR.lower()[10:])
    assert resp.status == 201, await resp.text()
    read = await resp.json()
    assert read["cards"] == ["****0012", "****0002", "****0029", "****5678"]
    assert [c["kind"] for c in read["card_details"]] == ["loyalty", "bank", "virtual", "par"]
    resp = await unlink(central, cid, "0002")
    assert resp.status == 200
    assert (await resp.json())["cards"] == ["****0012", "****0029", "****5678"]
    resp = await unlink(central, cid, "5678")
    assert (await resp.json())["cards"] == ["****0012", "****0029"]
    # the audit log keeps that cards changed, not which, and never the PAR
    rows = central.db.execute("SELECT action, before, after FROM audit WHERE action LIKE"
                              " 'customer.card.%' ORDER BY seq").fetchall()
    assert [r["action"] for r in rows] == ["customer.card.link"] * 3 + [
        "customer.card.unlink"] * 2
    text = " ".join(f"{r['before']} {r['after']}" for r in rows)
    for secret in ("0002", "5678", PAR, PAR.lower(), BANK_CARD):
        assert secret not in text


async def test_two_cards_ending_alike_are_told_apart_by_their_number(central):
    cid = await new(central)
    assert (await link(central, cid, card_number=SAME_ENDING)).status == 201
    resp = await unlink(central, cid, "0012")
    assert resp.status == 409 and "card_number" in await error(resp)
    resp = await unlink(central, cid, "0012", card_number=SAME_ENDING)
    assert resp.status == 200 and (await resp.json())["card_details"] == [
        {"last4": "0012", "kind": "loyalty"}]


@pytest.mark.parametrize(("body", "named"), [
    ({"par": "V001"}, "par"), ({"par": "V0010013019123456789012345-78"}, "par"),
    ({"par": 5}, "par"), ({"card_number": VIRTUAL, "kind": "plastic"}, "kind"),
    ({"card_number": "12"}, "card_number"), ({"card_number": VIRTUAL, "par": PAR}, "par"),
])
async def test_bad_links_are_400_naming_the_field(central, body, named):
    cid = await new(central)
    resp = await link(central, cid, **body)
    assert resp.status == 400 and named in await error(resp)


async def test_a_par_is_one_customers(central):
    cid, other = await new(central), await new(central, VIRTUAL)
    assert (await link(central, cid, par=PAR)).status == 201
    resp = await link(central, cid, par=PAR)
    assert resp.status == 409 and "this customer" in await error(resp)
    resp = await link(central, other, par=PAR)
    assert resp.status == 409 and "another customer" in await error(resp)


@pytest.mark.parametrize(("card", "body", "status", "named"), [
    ("12", {}, 400, "card"), ("00-2", {}, 400, "card"), ("9999", {}, 404, "9999"),
    ("0012", {"colour": "red"}, 400, "colour"), ("0012", {"card_number": "1"}, 400,
                                                 "card_number"),
    ("0012", {"card_number": SAME_ENDING}, 404, "0012"), ("0012", {"par": "x"}, 400, "par"),
])
async def test_bad_removals_are_refused_naming_the_field(central, card, body, status, named):
    cid = await new(central)
    resp = await unlink(central, cid, card, **body)
    assert resp.status == status and named in await error(resp)


async def test_removing_a_card_of_nobody_is_404(central):
    assert (await unlink(central, "cus_nobody", "0012")).status == 404


async def test_tills_take_new_cards_and_drop_removed_ones(live_central, tills):  # noqa: F811
    central = live_central
    cid = await new(central)
    await link(central, cid, card_number=BANK_CARD)
    till = await tills()
    for card in (CARD, BANK_CARD):
        resp = await till.identify(card)
        assert resp.status == 200 and (await resp.json())["customer_id"] == cid
    await unlink(central, cid, "0002")
    await till.sync()
    assert (await till.identify(BANK_CARD)).status == 404
    assert (await till.identify(CARD)).status == 200


async def test_the_till_identifies_by_the_par_the_terminal_reports(live_central, tills):  # noqa: F811
    central = live_central
    cid = await new(central)
    await link(central, cid, par=PAR)
    till = await tills()
    resp = await till.pos.post("/pos/v1/identify", headers=till.auth,
                               json={"par": PAR.lower()})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["customer_id"] == cid and body["card_kind"] == "par"
    assert body["card_last4"] == "5678" and body["present"] is None
    # only the POS vouches for it: earns, does not spend
    resp = await till.sell(cid, redeem=100)
    assert resp.status == 403 and (await resp.json())["presence_required"] is True
    resp = await till.pos.post("/pos/v1/identify", headers=till.auth, json={"par": OTHER_PAR})
    assert resp.status == 404
    for bad in ("V001", 7, None):
        resp = await till.pos.post("/pos/v1/identify", headers=till.auth, json={"par": bad})
        assert resp.status == 400 and "par" in (await resp.json())["error"]
    # the till holds the PAR as a token only
    till.local.db.conn.commit()
    assert PAR not in "\n".join(till.local.db.conn.iterdump())
    # a blocked PAR card is refused with the reason
    resp = await central.post(f"/api/v1/customers/{cid}/block", headers=central.admin,
                              json={"card": "5678", "reason": "wallet reported lost"})
    assert resp.status == 200
    await till.sync()
    resp = await till.pos.post("/pos/v1/identify", headers=till.auth, json={"par": PAR})
    assert resp.status == 403
    body = await resp.json()
    assert body["card_blocked"] is True and body["reason"] == "wallet reported lost"
    assert (await till.identify(CARD)).status == 200  # the customer's other card


@given(st.text(alphabet="0123456789", min_size=6, max_size=19))
def test_par_tokens_are_apart_from_card_tokens(digits):
    secret = b"k" * 32
    assert pars.par_token(secret, digits) != card_token(secret, digits)


def test_a_par_is_read_as_the_terminal_may_give_it():
    assert pars.normalize_par(" v001 0013019123456789012345678 ") == PAR
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ring = CardKeyring([CardKey(2, b"n" * 32, at, at.replace(year=2030)),
                        CardKey(1, b"o" * 32, at, at.replace(year=2030))])
    assert [v for v, _ in pars.tokens(ring, PAR)] == [2, 1]
    assert pars.token(ring, PAR) == pars.tokens(ring, PAR)[0]
