"""Identification at the till by a phone number the cashier types: the number in E.164 and
hashed under the card keys on both sides, so the till holds tokens, never numbers; it earns
but does not spend, and shares the typed card numbers' rate limit.

End to end on real parts, as tests/test_customer_blocks.py: a central test server and a
till of the agent's own store, sync client, checkout and POS API."""

from __future__ import annotations

import sqlite3

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agent.card_lookup import TYPED_PER_MINUTE
from central import deltas
from protocol import phones
from protocol.cards import card_token
from tests.sync_fixtures import live_central  # noqa: F401
from tests.test_central_sync_api import enrolled_till
from tests.test_customer_blocks import SOCKS, block, tills  # noqa: F401

CARD, OTHER_CARD = "2990000000012", "2990000000029"
PHONE = "+7 900 111-22-33"


async def new(central, card: str, phone: str | None, bonus: int = 0) -> str:
    resp = await central.post("/api/v1/customers", headers=central.admin, json={
        "card_number": card, "phone": phone, "welcome_bonus": bonus})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def by_phone(till, phone):
    return await till.pos.post("/pos/v1/identify", headers=till.auth, json={"phone": phone})


async def test_a_typed_phone_identifies_the_customer_however_written(live_central, tills):  # noqa: F811
    cid = await new(live_central, CARD, PHONE, bonus=500)
    till = await tills()
    for typed in ("8 (900) 111 22 33", "+79001112233", "89001112233"):
        resp = await by_phone(till, typed)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["customer_id"] == cid and body["identified_by"] == "phone"
        assert body["present"] is None  # anyone can read a number out: not a presence
        assert body["balance"]["available"] == 500
    # the till holds the phone as a token only: no number anywhere in its database
    till.local.db.conn.commit()
    dump = "\n".join(sqlite3.connect(till.local.path).iterdump())
    for digits in ("9001112233", "900 111", "111-22-33"):
        assert digits not in dump
    (token,) = [r[0] for r in till.local.db.execute("SELECT token FROM phones")]
    assert phones.is_phone_token(token)


async def test_identified_by_phone_it_earns_but_does_not_spend(live_central, tills):  # noqa: F811
    cid = await new(live_central, CARD, PHONE, bonus=500)
    till = await tills()
    assert (await by_phone(till, PHONE)).status == 200
    resp = await till.pos.post("/pos/v1/receipts", headers=till.auth,
                               json={"customer_id": cid, "lines": [SOCKS], "redeem": 100})
    assert resp.status == 403 and (await resp.json())["presence_required"] is True
    assert (await by_phone(till, PHONE)).status == 200
    resp = await till.pos.post("/pos/v1/receipts", headers=till.auth,
                               json={"customer_id": cid, "lines": [SOCKS], "redeem": 0})
    assert resp.status == 201 and (await resp.json())["earned"] > 0


async def test_a_changed_or_erased_phone_follows_the_next_sync(live_central, tills):  # noqa: F811
    central = live_central
    cid = await new(central, CARD, PHONE)
    till = await tills()
    assert (await by_phone(till, PHONE)).status == 200
    resp = await central.patch(f"/api/v1/customers/{cid}", headers=central.admin,
                               json={"phone": "+7 900 444-55-66"})
    assert resp.status == 200
    await till.sync()
    assert (await by_phone(till, PHONE)).status == 404
    assert (await by_phone(till, "89004445566")).status == 200
    # the old number, given to another customer, is theirs
    other = await new(central, OTHER_CARD, PHONE)
    await till.sync()
    assert (await (await by_phone(till, PHONE)).json())["customer_id"] == other
    resp = await central.post(f"/api/v1/customers/{other}/erase", headers=central.admin,
                              json={"reason": "asked"})
    assert resp.status == 200
    await till.sync()
    assert (await by_phone(till, PHONE)).status == 404


async def test_a_blocked_customer_is_refused_by_phone_with_the_reason(live_central, tills):  # noqa: F811
    cid = await new(live_central, CARD, PHONE)
    await block(live_central, cid, reason="fraud under review")
    till = await tills()
    resp = await by_phone(till, PHONE)
    assert resp.status == 403
    body = await resp.json()
    assert body["blocked"] is True and body["reason"] == "fraud under review"


@pytest.mark.parametrize("phone", ["+7 (9) 1", "12345", "", "٨٩٠٠١١١٢٢٣٣", 79001112233, None,
                                   ["+79001112233"], "x" * 40])
async def test_a_bad_phone_is_400_naming_the_field(live_central, tills, phone):  # noqa: F811
    till = await tills()
    resp = await by_phone(till, phone)
    assert resp.status == 400 and "phone" in (await resp.json())["error"]


async def test_card_and_phone_together_are_400(live_central, tills):  # noqa: F811
    till = await tills()
    resp = await till.pos.post("/pos/v1/identify", headers=till.auth,
                               json={"phone": PHONE, "card_number": CARD})
    assert resp.status == 400


async def test_typed_phones_share_the_typed_card_numbers_limit(live_central, tills):  # noqa: F811
    await new(live_central, CARD, PHONE)
    till = await tills()
    for i in range(TYPED_PER_MINUTE):
        if i % 2:
            resp = await by_phone(till, f"+7 900 000-00-{i:02d}")  # nobody's
            assert resp.status == 404
        else:
            resp = await till.pos.post("/pos/v1/identify", headers=till.auth,
                                       json={"card_number": CARD})
            assert resp.status == 200
    resp = await by_phone(till, PHONE)  # even a right number, past the limit
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    resp = await till.pos.post("/pos/v1/identify", headers=till.auth,
                               json={"card_number": CARD})
    assert resp.status == 429
    assert till.till.guessing.refused_total == 2


async def test_deltas_carry_phone_tokens_only_for_settled_numbers(central, clock):
    till = await enrolled_till(central)
    cid = await new(central, CARD, PHONE)
    # as the phone migration leaves a second customer of one number (customer_search)
    central.db.execute("INSERT INTO customers (id, name, phone, phone_review, created_at)"
                       " VALUES ('cus_dup', '', '8 900 111 22 33', ?, '2026-01-01')",
                       (f"duplicate of {cid}",))
    central.db.execute("UPDATE customers SET change_seq = 99 WHERE id = 'cus_dup'")
    ring = central.secrets.card_keys
    page = deltas.customer_deltas(central.db, till.till_id, 0, clock(), ring)
    by_id = {c["id"]: c for c in page["customers"]}
    assert by_id[cid]["phones"] == [phones.phone_token(ring.newest.secret, "+79001112233")]
    assert by_id["cus_dup"]["phones"] == []
    assert deltas.customer_deltas(central.db, till.till_id, 0, clock())["customers"][0][
        "phones"] == []  # no keys, no tokens


@given(st.sampled_from(["+7 {a} {b}-{c}-{d}", "8 ({a}) {b} {c} {d}", "8{a}{b}{c}{d}",
                        "+7({a}){b}-{c}{d}", "7 {a} {b} {c} {d}"]),
       st.integers(900, 999), st.integers(0, 999), st.integers(0, 99), st.integers(0, 99))
def test_one_number_typed_any_way_is_one_e164(form, a, b, c, d):
    expected = f"+7{a}{b:03d}{c:02d}{d:02d}"
    # a number of an allocated range (libphonenumber's metadata): others are refused alike
    assume(phonenumbers.is_valid_number(phonenumbers.parse(expected)))
    typed = form.format(a=a, b=f"{b:03d}", c=f"{c:02d}", d=f"{d:02d}")
    assert phones.e164(typed) == expected


@given(st.text(alphabet="0123456789", min_size=6, max_size=15))
def test_a_phone_token_is_never_a_card_token(digits):
    secret = b"k" * 32
    assert phones.phone_token(secret, "+" + digits) != card_token(secret, digits)
    assert phones.phone_token(secret, "+" + digits).startswith("pt_")


def test_phones_go_to_the_tills_again_under_a_new_card_key(database, tmp_path):
    from datetime import UTC, datetime

    from central import customer_phones, customers, db
    from protocol.card_keys import CardKeyring, new_key

    now = datetime(2026, 11, 23, tzinfo=UTC)
    ring = CardKeyring([new_key(1, now)])
    conn = db.connect(database)
    try:
        with_phone = customers.create(conn, ring, now, card_number=CARD, phone=PHONE)["id"]
        without = customers.create(conn, ring, now, card_number=OTHER_CARD)["id"]
        assert customer_phones.follow_key(conn, ring) is False  # first start: recorded
        assert customer_phones.follow_key(conn, ring) is False
        cursor = conn.execute("SELECT value FROM counters WHERE name = 'customer_change'"
                              ).fetchone()[0]
        assert deltas.customer_deltas(conn, "t1", cursor, now, ring)["customers"] == []
        rotated = ring.rotated(now)
        assert customer_phones.follow_key(conn, rotated) is True
        page = deltas.customer_deltas(conn, "t1", cursor, now, rotated)["customers"]
        assert [c["id"] for c in page] == [with_phone] and without != with_phone
        assert page[0]["phones"] == [phones.phone_token(rotated.newest.secret, "+79001112233")]
        assert customer_phones.follow_key(conn, rotated) is False  # once per key
    finally:
        conn.close()
