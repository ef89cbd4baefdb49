"""The central's till-facing API: enrolment, batch ingestion, signed rule set, deltas."""

from __future__ import annotations

import dataclasses
import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import presence as proofs
from protocol.journal import JournalEntry
from protocol.request_auth import sign_request
from protocol.ruleset_wire import decode_ruleset
from protocol.signing import BadSignature, parse_public_key
from protocol.wire import pack
from tests.till_double import TestTill

CARD = "2990000000012"


async def enrolled_till(central) -> TestTill:
    till = TestTill()
    resp = await central.post("/api/v1/enrolment-tokens", json={"store": "s1"},
                              headers=central.admin)
    token = (await resp.json())["token"]
    resp = await central.post("/sync/v1/enroll",
                              json=till.enrolment(token))
    assert resp.status == 200, await resp.text()
    till.till_id = (await resp.json())["till_id"]
    return till


async def new_customer(central, card: str = CARD, bonus: int = 0) -> str:
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": card, "welcome_bonus": bonus})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def send(central, data: bytes):
    return await central.post("/sync/v1/batches", data=data,
                              headers={"Content-Type": "application/msgpack"})


async def balance(central, customer_id: str) -> dict:
    resp = await central.get(f"/api/v1/customers/{customer_id}", headers=central.admin)
    return (await resp.json())["balance"]


def rows(central, table: str) -> int:
    return central.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# -- enrolment ---------------------------------------------------------------------------

async def test_enrolment_gives_till_id_secret_and_pinned_central_key(central):
    till = await enrolled_till(central)
    assert till.till_id.startswith("till_")
    resp = await central.get("/api/v1/tills", headers=central.admin)
    listed = (await resp.json())["tills"]
    assert [t["id"] for t in listed] == [till.till_id]
    assert listed[0]["last_sync_at"] is None


async def test_enrolment_token_cannot_be_reused(central):
    resp = await central.post("/api/v1/enrolment-tokens", json={"store": "s1"},
                              headers=central.admin)
    token = (await resp.json())["token"]
    first = TestTill()
    second = TestTill()
    ok = await central.post("/sync/v1/enroll", json=first.enrolment(token))
    assert ok.status == 200
    again = await central.post("/sync/v1/enroll", json=second.enrolment(token))
    assert again.status == 409
    assert "already been used" in (await again.json())["error"]
    assert rows(central, "tills") == 1


async def test_unknown_and_expired_tokens_are_refused(central, clock):
    till = TestTill()
    resp = await central.post("/sync/v1/enroll", json=till.enrolment("made-up"))
    assert resp.status == 403
    assert "not known" in (await resp.json())["error"]
    resp = await central.post("/api/v1/enrolment-tokens", json={"store": "s1", "ttl_hours": 1},
                              headers=central.admin)
    token = (await resp.json())["token"]
    clock.advance(hours=2)
    resp = await central.post("/sync/v1/enroll", json=till.enrolment(token))
    assert resp.status == 403
    assert "expired" in (await resp.json())["error"]
    assert rows(central, "tills") == 0


async def test_enrolment_with_a_bad_key_or_body_is_a_clear_400(central):
    resp = await central.post("/sync/v1/enroll", json={"token": "t", "public_key": "zz",
                                                       "proof": "00"})
    assert resp.status == 400
    assert "public key" in (await resp.json())["error"]
    resp = await central.post("/sync/v1/enroll", data=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["error"]
    resp = await central.post("/sync/v1/enroll", json={"public_key": "00" * 32})
    assert resp.status == 400
    assert "'token' is required" in (await resp.json())["error"]


# -- head-office auth --------------------------------------------------------------------

async def test_head_office_api_needs_the_admin_token(central):
    for method, path in [("GET", "/api/v1/tills"), ("POST", "/api/v1/customers"),
                         ("GET", "/api/v1/summary"), ("PUT", "/api/v1/ruleset")]:
        resp = await central.request(method, path, headers={"Authorization": "Bearer nope"})
        assert resp.status == 401, path
        resp = await central.request(method, path)
        assert resp.status == 401, path
    assert rows(central, "customers") == 0


async def test_customer_with_a_bad_or_duplicate_card_is_refused(central, caplog):
    caplog.set_level(logging.DEBUG)
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": "12ab"})
    assert resp.status == 400
    await new_customer(central)
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": CARD})
    assert resp.status == 409
    assert rows(central, "customers") == 1
    assert CARD not in caplog.text
    assert CARD not in str(central.db.execute("SELECT * FROM cards").fetchall())


async def test_customer_lookup_by_card_answers_with_last4_only(central):
    cid = await new_customer(central, bonus=300)
    resp = await central.post("/api/v1/customers/lookup", headers=central.admin,
                              json={"card_number": CARD})
    body = await resp.json()
    assert body["id"] == cid and body["cards"] == ["****0012"]
    assert body["balance"] == {"available": 300, "pending": 0, "debt": 0}
    resp = await central.post("/api/v1/customers/lookup", headers=central.admin,
                              json={"card_number": "2990000000029"})
    assert resp.status == 404


# -- batches -----------------------------------------------------------------------------

async def test_batch_applies_each_entry_once_and_answers_the_acknowledged_seq(central):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    sale = till.sale(cid, earned=50, redeemed=200)
    till.sale(None, total=5000)
    till.return_(cid, sale.receipt_id, clawback=20, refund=80)
    resp = await send(central, till.batch())
    assert resp.status == 200
    assert (await resp.json())["acked_seq"] == 3
    # 1000 - 200 redeemed + 80 refunded; 50 earned pending, 20 of it taken back.
    assert await balance(central, cid) == {"available": 880, "pending": 30, "debt": 0}
    ledger_rows = rows(central, "ledger")
    again = await send(central, till.batch())
    assert again.status == 200 and (await again.json()) == {
        "epoch": till.epoch, "acked_seq": 3, "applied": 0}
    assert rows(central, "ledger") == ledger_rows
    assert rows(central, "receipts") == 3  # the non-member's receipt too


async def test_a_gap_is_answered_with_what_is_held_so_the_till_resends(central):
    till = await enrolled_till(central)
    for _ in range(5):
        till.sale(None)
    resp = await send(central, till.batch(1, 2))
    assert (await resp.json())["acked_seq"] == 2
    resp = await send(central, till.batch(4, 5))
    assert resp.status == 200
    assert (await resp.json())["acked_seq"] == 2
    assert rows(central, "journal") == 2
    resp = await send(central, till.batch(3, 5))
    assert (await resp.json())["acked_seq"] == 5


async def test_bad_signature_is_refused_with_an_alert_and_nothing_applied(central):
    till = await enrolled_till(central)
    till.sale(None)
    resp = await send(central, till.batch(key=Ed25519PrivateKey.generate()))
    assert resp.status == 401
    assert "signature" in (await resp.json())["error"]
    assert rows(central, "journal") == 0
    alerts = central.db.execute("SELECT kind, till_id FROM alerts").fetchall()
    assert [tuple(a) for a in alerts] == [("security", till.till_id)]


async def test_rewritten_history_is_refused_and_raises_a_security_alert(central):
    till = await enrolled_till(central)
    cid = await new_customer(central)
    till.sale(cid, earned=10)
    await send(central, till.batch())
    forged = dataclasses.replace(till.entries[0], earned=999, lots=[
        {**till.entries[0].lots[0], "points": 999}])
    forged = dataclasses.replace(forged, hash=forged.compute_hash())
    resp = await send(central, till.batch(entries=[forged]))
    assert resp.status == 409
    assert await balance(central, cid) == {"available": 0, "pending": 10, "debt": 0}
    assert central.db.execute("SELECT kind FROM alerts").fetchone()["kind"] == "security"


async def test_broken_chain_is_refused(central):
    till = await enrolled_till(central)
    till.sale(None)
    second = till.sale(None)
    bent = dataclasses.replace(second, prev_hash="00" * 32)
    bent = dataclasses.replace(bent, hash=bent.compute_hash())
    resp = await send(central, till.batch(entries=[till.entries[0], bent]))
    assert resp.status == 422
    assert "hash chain" in (await resp.json())["error"]
    assert rows(central, "journal") == 0  # the whole batch, good first entry included


async def test_unknown_and_revoked_tills_are_refused(central):
    stranger = TestTill()
    stranger.till_id = "till_unknown"
    stranger.sale(None)
    resp = await send(central, stranger.batch())
    assert resp.status == 403
    assert "not enrolled" in (await resp.json())["error"]
    till = await enrolled_till(central)
    till.sale(None)
    resp = await central.post(f"/api/v1/tills/{till.till_id}/revoke", headers=central.admin)
    assert resp.status == 200
    resp = await send(central, till.batch())
    assert resp.status == 403
    assert "revoked" in (await resp.json())["error"]
    assert rows(central, "journal") == 0


async def test_malformed_and_truncated_batches_get_a_clear_400(central):
    till = await enrolled_till(central)
    till.sale(None)
    good = till.batch()
    for data in (b"", b"\xc1", b"not msgpack at all", good[: len(good) // 2],
                 pack({"body": b"x", "sig": b"y"}), pack([1, 2, 3])):
        resp = await send(central, data)
        assert resp.status == 400, data
        assert "malformed batch" in (await resp.json())["error"]
    assert rows(central, "journal") == 0


async def test_overspend_offline_becomes_debt_with_an_alert_and_later_credits_pay_it(
        central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=100)
    # the card at the reader: the customer was there, only the till's balance was stale
    till.sale(cid, redeemed=150, presence=proofs.card([central.secrets.card_keys.token(CARD)[1]]))
    await send(central, till.batch())
    assert await balance(central, cid) == {"available": -50, "pending": 0, "debt": 50}
    kinds = [r["kind"] for r in central.db.execute("SELECT kind FROM alerts")]
    assert kinds == ["offline-overspend"]
    # A till's points are credited once re-priced (test_till_takeover); any credit that
    # becomes spendable pays the debt first.
    resp = await central.post(f"/api/v1/customers/{cid}/adjustments", headers=central.admin,
                              json={"points": 80, "actor": "olga", "reason": "goodwill"})
    assert resp.status == 200, await resp.text()
    assert await balance(central, cid) == {"available": 30, "pending": 0, "debt": 0}


# -- downstream ---------------------------------------------------------------------------

def signed_get(till: TestTill, path: str, now: int) -> dict[str, str]:
    return sign_request(till.key, till.till_id, "GET", path, b"", now)


async def test_rule_set_is_signed_by_the_central_and_needs_a_signed_request(central, clock):
    till = await enrolled_till(central)
    resp = await central.get("/sync/v1/ruleset")
    assert resp.status == 401
    now = int(clock().timestamp())
    resp = await central.get("/sync/v1/ruleset", headers=signed_get(till, "/sync/v1/ruleset",
                                                                     now))
    assert resp.status == 200
    data = await resp.read()
    from protocol.signing import public_key_hex

    central_key = parse_public_key(public_key_hex(central.secrets.signing_key))
    rs = decode_ruleset(data, central_key)
    assert rs.version == 1
    tampered = data.replace(b"version", b"versioN")
    import pytest

    with pytest.raises((BadSignature, ValueError)):
        decode_ruleset(tampered, central_key)
    stale = signed_get(till, "/sync/v1/ruleset", now - 3600)
    resp = await central.get("/sync/v1/ruleset", headers=stale)
    assert resp.status == 401 and "window" in (await resp.json())["error"]


async def test_customer_deltas_carry_tokens_balances_and_the_acknowledged_seq(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=250)
    now = int(clock().timestamp())
    path = "/sync/v1/customers?since=0"
    resp = await central.get(path, headers=signed_get(till, path, now))
    delta = await resp.json()
    assert [c["id"] for c in delta["customers"]] == [cid]
    assert delta["customers"][0]["available"] == 250
    assert delta["customers"][0]["cards"][0].startswith("ct_")
    assert delta["acked_seq"] == 0
    till.sale(cid, earned=5)
    await send(central, till.batch())
    path = f"/sync/v1/customers?since={delta['cursor']}"
    resp = await central.get(path, headers=signed_get(till, path, now))
    delta = await resp.json()
    assert delta["acked_seq"] == 1 and delta["customers"][0]["pending"] == 5


async def test_journal_entry_decoding_names_the_bad_field():
    import pytest

    from protocol.wire import InvalidMessage

    till = TestTill()
    good = till.sale(None).to_wire()
    for bad, word in [({**good, "earned": -1}, "earned"), ({**good, "kind": "gift"}, "kind"),
                      ({**good, "seq": "1"}, "seq"), ({**good, "extra": 1}, "unknown"),
                      ({k: v for k, v in good.items() if k != "store"}, "store")]:
        with pytest.raises(InvalidMessage, match=word):
            JournalEntry.from_wire(bad)


async def test_sales_count_as_purchases_and_tier_spend_and_upgrade_at_once(central, clock):
    from protocol.rules import default_ruleset_doc

    doc = default_ruleset_doc()
    doc["tiers"] = {"window": "calendar_month", "levels": [
        {"id": "base", "min_spend": 0}, {"id": "silver", "min_spend": 500_000}]}
    resp = await central.put("/api/v1/ruleset", headers=central.admin,
                             json={"doc": doc, "actor": "marketing"})
    assert resp.status == 201
    till = await enrolled_till(central)
    cid = await new_customer(central)
    first = till.sale(cid, total=300_000)
    till.sale(cid, total=250_000)
    till.return_(cid, first.receipt_id, total=100_000)
    assert (await send(central, till.batch())).status == 200
    now = int(clock().timestamp())
    path = "/sync/v1/customers?since=0"
    resp = await central.get(path, headers=signed_get(till, path, now))
    mine = (await resp.json())["customers"][0]
    # 550,000 reached silver at once; the return leaves 450,000 but not the tier.
    assert (mine["purchases"], mine["qualifying_spend"], mine["tier"]) == (2, 450_000,
                                                                           "silver")
    clock.advance(days=40)  # the window turned over: below silver, back to base
    resp = await central.get(path, headers=signed_get(till, path, int(clock().timestamp())))
    mine = (await resp.json())["customers"][0]
    assert (mine["qualifying_spend"], mine["tier"]) == (0, "base")
