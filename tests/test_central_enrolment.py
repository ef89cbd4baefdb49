"""Enrolment proves possession of the private key and refuses weak keys: the small-order key
attack (a batch "signed" for a key of order 1 without any private key) gets nowhere."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central import tills
from protocol.batches import Batch, encode_batch
from protocol.signing import public_key_hex
from protocol.wire import pack, unpack
from tests.test_central_sync_api import enrolled_till, rows, send
from tests.till_double import TestTill

IDENTITY_KEY = "01" + "00" * 31  # the neutral point: [k]A is the identity for every k
SMALL_ORDER_KEY = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"


async def token(central) -> str:
    resp = await central.post("/api/v1/enrolment-tokens", json={"store": "s1"},
                              headers=central.admin)
    return (await resp.json())["token"]


def test_a_small_order_key_accepts_a_signature_made_without_any_private_key():
    """Why weak keys must be refused: the library verifies this forgery."""
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(IDENTITY_KEY))
    forged = bytes.fromhex(IDENTITY_KEY) + bytes(32)  # R = identity, S = 0
    key.verify(forged, b"any batch at all")  # raises if refused; it is not


async def test_small_order_and_identity_keys_are_refused_at_enrolment(central):
    for weak in (IDENTITY_KEY, SMALL_ORDER_KEY, "00" * 32):
        tok = await token(central)
        resp = await central.post("/sync/v1/enroll", json={
            "token": tok, "public_key": weak, "proof": (IDENTITY_KEY + "00" * 32)})
        assert resp.status == 400, weak
        assert "weak public key" in (await resp.json())["error"]
    assert rows(central, "tills") == 0


async def test_a_batch_for_a_weak_key_enrolled_earlier_is_refused(central):
    """A database from before enrolment checked keys: the forgery still gets nowhere."""
    till = await enrolled_till(central)
    central.db.execute("UPDATE tills SET public_key = ? WHERE id = ?",
                       (IDENTITY_KEY, till.till_id))
    till.sale(None)
    batch = Batch(till.till_id, till.epoch, tuple(till.entries), "2026-11-23T10:00:00+00:00")
    good = encode_batch(till.key, batch)
    # The signature replaced by the forgery R = identity, S = 0.
    forged = pack({"body": unpack(good)["body"], "sig": bytes.fromhex(IDENTITY_KEY) + bytes(32)})
    tills._weakness.cache_clear()
    resp = await send(central, forged)
    assert resp.status in (401, 403)
    assert rows(central, "journal") == 0


async def test_enrolment_needs_a_proof_of_possession(central):
    till, other = TestTill(), TestTill()
    tok = await token(central)
    missing = {"token": tok, "public_key": till.public_key}
    resp = await central.post("/sync/v1/enroll", json=missing)
    assert resp.status == 400 and "'proof' is required" in (await resp.json())["error"]
    # Someone else's key with a proof made by another key: refused, the token kept.
    stolen = {**other.enrolment(tok), "public_key": till.public_key}
    resp = await central.post("/sync/v1/enroll", json=stolen)
    assert resp.status == 400 and "proof of possession" in (await resp.json())["error"]
    # A proof made for another token is no proof for this one.
    replayed = {**till.enrolment("et_other"), "token": tok}
    resp = await central.post("/sync/v1/enroll", json=replayed)
    assert resp.status == 400
    resp = await central.post("/sync/v1/enroll", json=till.enrolment(tok))
    assert resp.status == 200
    assert public_key_hex(till.key) == central.db.execute(
        "SELECT public_key FROM tills").fetchone()[0]


async def test_a_key_enrolment_found_sound_is_not_checked_again_at_each_start(central):
    """Enrolment records the key it checked; a process that starts later trusts that record
    for that key only, and checks any other (an older database's, or one changed since)."""
    till = await enrolled_till(central)
    tills._weakness.cache_clear()  # as in a process that has just started
    till.sale(None)
    assert (await send(central, till.batch(1, 1))).status == 200
    assert tills._weakness.cache_info().misses == 0
    # A till enrolled before enrolment recorded it: its key is checked, once per process.
    central.db.execute("UPDATE tills SET sound_key = NULL WHERE id = ?", (till.till_id,))
    for seq in (2, 3):
        till.sale(None)
        assert (await send(central, till.batch(seq, seq))).status == 200
    assert tills._weakness.cache_info().misses == 1


async def test_an_enrolment_token_names_its_store(central):
    for body, named in [({}, "store"), ({"store": ""}, "store"), ({"store": "  "}, "store"),
                        ({"store": 7}, "store"), ({"store": "s1", "ttl_hours": 0}, "hours")]:
        resp = await central.post("/api/v1/enrolment-tokens", json=body, headers=central.admin)
        assert resp.status == 400 and named in (await resp.json())["error"], body
    resp = await central.post("/api/v1/enrolment-tokens", json={"store": "s1"},
                              headers=central.admin)
    assert resp.status == 201 and (await resp.json())["store"] == "s1"
