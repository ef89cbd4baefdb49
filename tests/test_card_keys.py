"""Card keys: versions, rotation, retirement, where they live, and how tills get them."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import card_keys as central_keys
from central.app import make_app
from central.web_common import DB, SECRETS
from protocol import enrolment
from protocol.card_keys import (
    CardKeyError,
    CardKeyring,
    decode_for_till,
    encode_for_till,
    new_key,
    read_ring,
    write_ring,
)
from protocol.cards import card_token
from protocol.signing import BadSignature, public_key_hex
from tests.conftest import FakeClock

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CARD = "2990000000019"


def test_tokens_newest_first_and_rotation_keeps_older_until_they_retire():
    ring = CardKeyring([new_key(1, NOW, 30)])
    ring2 = ring.rotated(NOW + timedelta(days=1), 365)
    assert ring2.versions == [2, 1] and ring2.newest.version == 2
    (v_new, t_new), (v_old, t_old) = ring2.tokens(CARD)
    assert (v_new, v_old) == (2, 1) and t_new != t_old
    assert ring2.token(CARD) == (2, t_new)
    assert t_old == card_token(ring.newest.secret, CARD)  # older tokens still recognised
    # past its lifetime version 1 retires, and a rotation drops it (and its secret)
    later = NOW + timedelta(days=31)
    assert ring2.active(later).versions == [2]
    assert ring2.rotated(later).versions == [3, 2]
    assert "secret" not in repr(ring2) and ring.newest.secret.hex() not in repr(ring2.keys)


def test_key_file_is_private_and_never_beside_the_data(tmp_path: Path):
    path = tmp_path / "keys" / "card-keys"
    write_ring(path, CardKeyring([new_key(1, NOW)]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_ring(path).versions == [1]
    path.chmod(0o640)
    with pytest.raises(CardKeyError, match="readable by others"):
        read_ring(path)
    path.chmod(0o600)
    data = tmp_path / "central"
    data.mkdir()
    with pytest.raises(CardKeyError, match="must not live in the data directory"):
        central_keys.load(data, data / "card-keys", NOW)
    with pytest.raises(CardKeyError, match="must not live in"):
        central_keys.load(data, data / "sub" / "keys", NOW)


def test_legacy_card_secret_leaves_the_data_directory_as_version_1(tmp_path: Path):
    data = tmp_path / "central"
    data.mkdir()
    (data / "card-secret").write_text("ab" * 32)
    (data / "card-secret").chmod(0o600)
    ring = central_keys.load(data, None, NOW)
    assert ring.versions == [1] and ring.newest.secret == bytes.fromhex("ab" * 32)
    assert not (data / "card-secret").exists()
    assert central_keys.default_key_file(data) == tmp_path / "central-keys" / "card-keys"
    assert read_ring(tmp_path / "central-keys" / "card-keys").versions == [1]


def test_systemd_credential_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    creds = tmp_path / "creds"
    write_ring(creds / "card-keys", CardKeyring([new_key(7, NOW)]))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    data = tmp_path / "central"
    data.mkdir()
    assert central_keys.load(data, None, NOW).versions == [7]
    assert not central_keys.default_key_file(data).exists()  # nothing written beside it


def test_every_key_retired_is_refused(tmp_path: Path):
    data = tmp_path / "central"
    data.mkdir()
    write_ring(central_keys.default_key_file(data), CardKeyring([new_key(1, NOW, 1)]))
    with pytest.raises(CardKeyError, match="every card key has retired"):
        central_keys.load(data, None, NOW + timedelta(days=2))


def test_keys_for_a_till_are_signed_and_addressed():
    key = Ed25519PrivateKey.generate()
    ring = CardKeyring([new_key(2, NOW), new_key(1, NOW - timedelta(days=800), 730)])
    blob = encode_for_till(key, "till_a", ring, NOW)
    got = decode_for_till(blob, key.public_key(), "till_a", NOW)
    assert got.versions == [2]  # the retired one is not taken
    with pytest.raises(ValueError, match="another till"):
        decode_for_till(blob, key.public_key(), "till_b", NOW)
    with pytest.raises(BadSignature):
        decode_for_till(blob, Ed25519PrivateKey.generate().public_key(), "till_a", NOW)


async def _enrol(client, admin) -> dict:
    resp = await client.post("/api/v1/enrolment-tokens", json={"store": "s1"}, headers=admin)
    token = (await resp.json())["token"]
    key = Ed25519PrivateKey.generate()
    resp = await client.post("/sync/v1/enroll", json={
        "token": token, "public_key": public_key_hex(key), "proof": enrolment.prove(key, token)})
    assert resp.status == 200
    return await resp.json()


def _versions(data: Path) -> dict[str, int]:
    conn = sqlite3.connect(data / "central.db")
    try:
        return dict(conn.execute("SELECT last4, key_version FROM cards").fetchall())
    finally:
        conn.close()


async def test_rotation_at_the_central_rekeys_on_sight_and_retirement_keeps_the_account(
        aiohttp_client, tmp_path: Path):
    clock = FakeClock(NOW)
    data = tmp_path / "central"
    app = make_app(data, clock, reprice_every=None)
    client = await aiohttp_client(app)
    admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    assert "card_keys" in await _enrol(client, admin)  # loopback: the keys go
    resp = await client.post("/api/v1/customers", json={"card_number": CARD, "name": "A"},
                             headers=admin)
    cid = (await resp.json())["id"]
    assert _versions(data) == {"0019": 1}
    assert not list(data.glob("*card*"))  # no key beside the data

    # rotate (what `tillpoint central card-key rotate` does), and start again
    path = central_keys.default_key_file(data)
    write_ring(path, read_ring(path).rotated(clock(), 365))
    app[DB].close()
    clock.advance(days=1)
    app2 = make_app(data, clock, reprice_every=None)
    client2 = await aiohttp_client(app2)
    assert app2[SECRETS].card_keys.versions == [2, 1]
    assert (await _enrol(client2, admin))["card_keys"]["keys"][0]["version"] == 2
    resp = await client2.post("/api/v1/customers", json={"card_number": "2990000000026"},
                              headers=admin)
    assert resp.status == 201 and _versions(data)["0026"] == 2  # new tokens: newest key
    resp = await client2.post("/api/v1/customers/lookup", json={"card_number": CARD},
                              headers=admin)
    assert (await resp.json())["id"] == cid  # found under version 1 ...
    assert _versions(data)["0019"] == 2  # ... and re-keyed on sight

    # a third card stays on version 1 until version 1 retires, unseen
    conn = app2[DB]
    tok = card_token(read_ring(path).keys[1].secret, "2990000000033")
    conn.execute("INSERT INTO cards (token, customer_id, last4, created_at, key_version)"
                 " VALUES (?, ?, '0033', '2026-11-23T10:00:00+00:00', 1)", (tok, cid))
    app2[DB].close()
    clock.advance(days=730)  # version 1 (730 days) is past its lifetime; 2 (365) too
    write_ring(path, read_ring(path).rotated(clock(), 365))
    app3 = make_app(data, clock, reprice_every=None)
    client3 = await aiohttp_client(app3)
    assert app3[SECRETS].card_keys.versions == [3]
    got = await (await client3.get(f"/api/v1/customers/{cid}", headers=admin)).json()
    assert got["name"] == "A" and got["cards_to_relink"] == ["****0019", "****0033"]
    assert got["cards"] == []
    resp = await client3.post("/api/v1/customers/lookup", json={"card_number": CARD},
                              headers=admin)
    assert resp.status == 404
    # the customer proves the phone (README), and head office links the card again
    resp = await client3.post(f"/api/v1/customers/{cid}/cards",
                              json={"card_number": CARD}, headers=admin)
    assert resp.status == 201
    got = await resp.json()
    assert got["cards"] == ["****0019"] and got["cards_to_relink"] == ["****0033"]
    resp = await client3.post("/api/v1/customers/lookup", json={"card_number": CARD},
                              headers=admin)
    assert (await resp.json())["id"] == cid
    resp = await client3.post(f"/api/v1/customers/{cid}/cards",
                              json={"card_number": CARD}, headers=admin)
    assert resp.status == 409
    assert json.loads(path.read_text())["keys"][0]["version"] == 3
    assert os.stat(path).st_mode & 0o077 == 0


def test_till_moves_a_legacy_card_secret_out_of_its_state(tmp_path: Path):
    from agent import identity
    from protocol.signing import generate_key

    state = tmp_path / "till"
    state.mkdir()
    central = Ed25519PrivateKey.generate()
    generate_key(state / "till.key")
    (state / "till.json").write_text(json.dumps({
        "till_id": "till_x", "store": "s1", "central_url": "http://127.0.0.1:1",
        "central_public_key": public_key_hex(central)}))
    (state / "card-secret").write_text("cd" * 32)
    (state / "card-secret").chmod(0o600)
    ident = identity.load(state)
    assert ident.card_keys_path == tmp_path / "till-keys" / "card-keys"
    assert read_ring(ident.card_keys_path).newest.secret == bytes.fromhex("cd" * 32)
    assert not (state / "card-secret").exists()


def test_programme_card_ranges_setting_is_checked(tmp_path: Path):
    from agent.config import AgentConfig

    assert AgentConfig.load(tmp_path, {"loyalty_card_ranges": ["2200", "46"]}) \
        .loyalty_card_ranges == ("2200", "46")
    for bad in (["22a"], "2200", [""], ["1" * 20], [22]):
        with pytest.raises(ValueError, match="loyalty_card_ranges"):
            AgentConfig.load(tmp_path, {"loyalty_card_ranges": bad})
