"""A card whose key retired is linked again by its customer: an SMS code to the phone on
the account, checked at the till (attempt limits, five minutes), then the card presented.
The central (an SMS outbox for the gateway, which cannot run here) and, on real parts, the
agent's POS API with the card at the simulated reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.central_client import CentralError
from agent.presence import SmsDesk
from central import card_keys, db
from protocol.card_keys import read_ring
from protocol.cards import card_token
from tests.test_central_presence import CARD, OTHER_CARD, central, customer, till
from tests.test_pos_presence_processes import PHONE, SOCKS, store
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness

__all__ = ["central", "store", "till"]

RETIRED_KEY = b"a key long past its lifetime"


def retire_card(conn: db.Connection, ring, customer_id: str, number: str) -> None:
    """The card as a key that has since retired left it: its token under that key (version
    7, gone from the ring), retired by the central's own start-up step."""
    conn.execute("UPDATE cards SET token = ?, key_version = 7 WHERE customer_id = ?",
                 (card_token(RETIRED_KEY, number), customer_id))
    assert card_keys.retire_cards(conn, ring, datetime.now(UTC)) == 1


def sms_code(outbox: Path) -> str:
    return json.loads(outbox.read_text().splitlines()[-1])["text"].split("code is ")[1][:6]


async def refused(call) -> CentralError:
    with pytest.raises(CentralError) as e:
        await call
    return e.value


async def test_a_retired_card_is_linked_again_once_per_checked_sms_code(central, till):
    anna = await customer(central, CARD)
    bob = await customer(central, OTHER_CARD, phone="+79007654321")
    ring = central.secrets.card_keys
    retire_card(central.db, ring, anna, CARD)
    version, token = ring.token(CARD)
    desk = SmsDesk(till.client)

    sent = await desk.send(anna)
    e = await refused(desk.relink_card(sent["challenge"], token, version, "0019"))
    assert e.status == 409 and "not been checked" in str(e)  # the code first
    await desk.check(sent["challenge"], sms_code(central.outbox))
    e = await refused(desk.relink_card(sent["challenge"], token, version, "9999"))
    assert e.status == 409 and "no card ending 9999" in str(e)
    e = await refused(desk.relink_card(sent["challenge"], ring.token(OTHER_CARD)[1], version,
                                       "0019"))
    assert e.status == 409 and "another customer" in str(e)  # Bob's card stays Bob's
    e = await refused(desk.relink_card(sent["challenge"], token, 7, "0019"))
    assert e.status == 409 and "not in its lifetime" in str(e)

    await desk.relink_card(sent["challenge"], token, version, "0019")
    row = central.db.execute("SELECT token, key_version, retired_at FROM cards"
                             " WHERE customer_id = ?", (anna,)).fetchone()
    assert tuple(row) == (token, version, None)
    resp = await central.post("/api/v1/customers/lookup", headers=central.admin,
                              json={"card_number": CARD})
    assert (await resp.json())["id"] == anna
    # Tills receive it with the customer.
    await till.sync.pull_customers()
    assert till.db.execute("SELECT customer_id FROM cards WHERE token = ?",
                           [token]).fetchone()[0] == anna
    # Used up: it links nothing more, and proves no presence for spending.
    e = await refused(desk.relink_card(sent["challenge"], token, version, "0019"))
    assert e.status == 410 and "used" in str(e)
    assert central.db.execute("SELECT COUNT(*) FROM alerts WHERE kind = 'card-relinked'"
                              " AND customer_id = ?", (anna,)).fetchone()[0] == 1
    assert bob  # untouched
    assert central.db.execute("SELECT retired_at FROM cards WHERE customer_id = ?",
                              (bob,)).fetchone()[0] is None


async def test_a_relink_needs_a_fresh_code_of_this_till(central, till, tmp_path: Path):
    anna = await customer(central, CARD)
    ring = central.secrets.card_keys
    retire_card(central.db, ring, anna, CARD)
    version, token = ring.token(CARD)
    desk = SmsDesk(till.client)
    sent = await desk.send(anna)
    await desk.check(sent["challenge"], sms_code(central.outbox))

    from tests.sync_fixtures import LocalTill, enrol, new_path
    other = LocalTill(await enrol(central), new_path(tmp_path))
    try:  # another till cannot use this till's code
        e = await refused(SmsDesk(other.client).relink_card(sent["challenge"], token, version,
                                                            "0019"))
        assert e.status == 404
    finally:
        await other.close()
    central.db.execute("UPDATE presence_challenges SET expires_at = ? WHERE id = ?",
                       ((datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
                        sent["challenge"]))
    e = await refused(desk.relink_card(sent["challenge"], token, version, "0019"))
    assert e.status == 410 and "expired" in str(e)
    # Wrong codes void the challenge after five tries (central.presence): nothing to link.
    sent = await desk.send(anna)
    for _ in range(5):
        await refused(desk.check(sent["challenge"], "000000"))
    e = await refused(desk.relink_card(sent["challenge"], token, version, "0019"))
    assert e.status == 410 and "void" in str(e)
    assert central.db.execute("SELECT retired_at FROM cards WHERE customer_id = ?",
                              (anna,)).fetchone()[0] is not None


@pytest.mark.parametrize("body, field", [
    ({"token": "ct_" + "0" * 32, "key_version": 1, "last4": "0019"}, "challenge"),
    ({"challenge": "x", "token": "4276000000000019", "key_version": 1, "last4": "0019"},
     "token"),
    ({"challenge": "x", "token": "ct_" + "0" * 32, "key_version": "1", "last4": "0019"},
     "key_version"),
    ({"challenge": "x", "token": "ct_" + "0" * 32, "key_version": 1, "last4": "١٢٣٤"},
     "last4"),
])
async def test_bad_relink_requests_get_400_naming_the_field(central, till, body, field):
    e = await refused(till.client.request("POST", "/sync/v1/cards/relink",
                                          json.dumps(body).encode(),
                                          content_type="application/json"))
    assert e.status == 400 and repr(field) in str(e)


async def test_unsigned_relink_is_refused(central):
    resp = await central.post("/sync/v1/cards/relink", json={
        "challenge": "x", "token": "ct_" + "0" * 32, "key_version": 1, "last4": "0019"})
    assert resp.status == 401


async def test_at_the_till_the_customer_proves_the_phone_then_presents_the_card(
        store: StoreHarness):
    till = store.tills[0]
    cid = (await store.office("POST", "/api/v1/customers", {
        "card_number": CARD, "welcome_bonus": 1000, "phone": PHONE}))["id"]
    conn = db.connect(store.central_database)
    try:
        ring = read_ring(card_keys.default_key_file(store.workdir / "central"))
        retire_card(conn, ring, cid, CARD)
    finally:
        conn.close()

    async def at_reader(path: str, body: dict) -> dict | None:
        """The card at the simulated reader, then `path`, once the card has reached the
        agent."""
        try:
            return await store.pos(till, "POST", path, body)
        except ApiError as err:
            if "no card presented" in str(err.body):
                return None
            raise

    await store.control(till, "POST", "/reader/present", {"barcode": CARD})
    with pytest.raises(ApiError) as e:  # the till has dropped the retired token
        await wait_for(lambda: at_reader("/pos/v1/identify", {}), "the card at the agent",
                       timeout=15)
    assert e.value.status == 404 and "unknown card ****0019" in str(e.value.body)

    with pytest.raises(ApiError) as e:  # the phone first
        await store.pos(till, "POST", "/pos/v1/cards/relink", {"customer_id": cid})
    assert e.value.status == 409 and "SMS" in e.value.body["error"]
    await store.pos(till, "POST", "/pos/v1/presence/sms", {"customer_id": cid})
    ok = await store.pos(till, "POST", "/pos/v1/presence/code",
                         {"customer_id": cid, "code": sms_code(store.outbox)})
    assert ok["present"] == "sms"

    await store.control(till, "POST", "/reader/present", {"barcode": CARD})
    linked = await wait_for(lambda: at_reader("/pos/v1/cards/relink", {"customer_id": cid}),
                            "the card at the agent", timeout=15)
    assert linked == {"customer_id": cid, "card_last4": "0019", "linked": True,
                      "present": "card"}
    sale = await store.pos(till, "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [SOCKS], "redeem": 50})
    assert sale["redeemed"] == 50  # present by the card itself
    await store.control(till, "POST", "/reader/present", {"barcode": CARD})
    who = await wait_for(lambda: at_reader("/pos/v1/identify", {}), "the card at the agent",
                         timeout=15)
    assert who["customer_id"] == cid and who["present"] == "card"
    await store.wait_synced()
    assert (await store.office("GET", "/api/v1/alerts?kind=presence"))["alerts"] == []
