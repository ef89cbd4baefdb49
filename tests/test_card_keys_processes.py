"""Card keys through real processes: a rotation reaches the till, which still knows the
cards it knew; the central can serve TLS itself, and the agent trusts nothing less."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from central.app import make_app
from central.clock import utcnow
from central.web_common import SECRETS
from tests.fault_proxy import FaultPlan, FaultProxy
from tillpoint.processes import tillpoint_cmd, wait_for
from tillpoint.store_harness import ApiError, StoreHarness, Till

OLD_CARD = "2990000000019"  # EAN-13 loyalty cards
NEW_CARD = "2990000000026"


def key_versions(data: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{data / 'central.db'}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT last4, key_version FROM cards").fetchall())
    finally:
        conn.close()


async def till_key_versions(store: StoreHarness, till: Till) -> list[int]:
    return (await store.pos(till, "GET", "/pos/v1/status"))["card_keys"]["versions"]


async def swipe(store: StoreHarness, till: Till, card: str) -> dict:
    await store.control(till, "POST", "/reader/present", {"barcode": card})

    async def identified() -> dict | None:
        try:
            return await store.pos(till, "POST", "/pos/v1/identify", {})
        except ApiError as e:  # "no card presented" until the read arrives
            if "no card presented" in str(e.body):
                return None
            raise

    return await wait_for(identified, "the swiped card", timeout=15)


async def test_rotation_reaches_the_till_and_old_cards_still_identify(tmp_path: Path):
    async with StoreHarness(tmp_path) as store:
        await store.start_central()
        proxy = FaultProxy(store.central_url, FaultPlan(rate=0.0), seed=1)
        store.till_central_url = await proxy.start()
        try:
            till = await store.add_till("till-1")
            a = await store.office("POST", "/api/v1/customers",
                                   {"card_number": OLD_CARD, "name": "A"})
            assert (await swipe(store, till, OLD_CARD))["customer_id"] == a["id"]
            assert await till_key_versions(store, till) == [1]
            # the keys live in directories of their own, not beside the data they key
            assert (tmp_path / "central-keys" / "card-keys").exists()
            assert (tmp_path / "till-1-keys" / "card-keys").exists()
            for d in (tmp_path / "central", till.state):
                assert not [p for p in d.iterdir() if "card" in p.name], list(d.iterdir())

            store.kill_central()
            out = subprocess.run(tillpoint_cmd("central", "card-key", "rotate", "--data",
                                               str(tmp_path / "central")),
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0 and "card key version 2" in out.stdout, out.stderr
            await store.start_central()
            proxy.upstream = store.central_url

            async def rotated() -> bool | None:
                return True if await till_key_versions(store, till) == [2, 1] else None

            await wait_for(rotated, "the till to receive key version 2", timeout=30)
            assert key_versions(tmp_path / "central") == {"0019": 1}
            # enrolled before the rotation: still identified, swiped and typed
            assert (await swipe(store, till, OLD_CARD))["customer_id"] == a["id"]
            who = await store.pos(till, "POST", "/pos/v1/identify", {"card_number": OLD_CARD})
            assert who["customer_id"] == a["id"]
            # a card enrolled after it gets a token under the new key, at the central and
            # at the till
            b = await store.office("POST", "/api/v1/customers", {"card_number": NEW_CARD})
            assert key_versions(tmp_path / "central")["0026"] == 2
            assert (await swipe(store, till, NEW_CARD))["customer_id"] == b["id"]
            # seen at head office, the old card is re-keyed; the till still knows it
            await store.office("POST", "/api/v1/customers/lookup", {"card_number": OLD_CARD})
            assert key_versions(tmp_path / "central") == {"0019": 2, "0026": 2}
            assert (await swipe(store, till, OLD_CARD))["customer_id"] == a["id"]
            keys = json.loads((tmp_path / "till-1-keys" / "card-keys").read_text())
            assert [k["version"] for k in keys["keys"]] == [2, 1]
        finally:
            await proxy.close()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tillpoint test central")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "central.crt", tmp_path / "central.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


async def test_agent_and_central_over_tls(tmp_path: Path):
    cert, key = self_signed(tmp_path)
    async with StoreHarness(tmp_path) as store:
        store.central_args = ["--tls-cert", str(cert), "--tls-key", str(key)]
        store.tls_ca = cert
        await store.start_central()
        assert store.central_url.startswith("https://")
        # plain HTTP to the TLS port is no way in
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as s:
                await s.get(store.central_url.replace("https", "http") + "/sync/v1/ruleset")
        # without the CA the agent does not trust the certificate
        token = (await store.office("POST", "/api/v1/enrolment-tokens",
                                    {"store": store.store}))["token"]
        out = subprocess.run(tillpoint_cmd(
            "agent", "enroll", "--state", str(tmp_path / "untrusting"), "--central",
            store.central_url, f"--token={token}"), capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "certificate" in out.stderr.lower(), out.stderr
        # with it: enrolment, keys and every sync over a real TLS handshake
        till = await store.add_till("till-1")
        assert json.loads((till.state / "till.json").read_text())["central_url"] \
            .startswith("https://")
        assert await till_key_versions(store, till) == [1]
        a = await store.office("POST", "/api/v1/customers", {"card_number": OLD_CARD})
        assert (await swipe(store, till, OLD_CARD))["customer_id"] == a["id"]
        await store.pos(till, "POST", "/pos/v1/receipts", {"customer_id": a["id"], "lines": [
            {"sku": "1", "name": "Socks", "qty": 1000, "price": 10000, "category": "x",
             "vat": "22"}]})
        await store.wait_synced()


def test_agent_refuses_plain_http_off_this_machine(tmp_path: Path):
    for cmd in (["--central", "http://192.0.2.10:8600"],
                ["--central", "http://central.example:8600"]):
        out = subprocess.run(tillpoint_cmd("agent", "enroll", "--state", str(tmp_path / "s"),
                                           *cmd, "--token", "et_x"),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and "refusing plain http://" in out.stderr, out.stderr
    # told --insecure, it goes on (and fails only to reach this unroutable address)
    out = subprocess.run(tillpoint_cmd("agent", "enroll", "--state", str(tmp_path / "s"),
                                       "--central", "http://192.0.2.10:9", "--token", "et_x",
                                       "--insecure"),
                         capture_output=True, text=True, timeout=60)
    assert "refusing" not in out.stderr and "cannot reach the central" in out.stderr
    assert not (tmp_path / "s" / "till.json").exists()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(addr).is_loopback else addr


async def test_central_withholds_card_keys_on_plain_http_off_the_loopback(tmp_path: Path):
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no address off the loopback")
    app = make_app(tmp_path / "central", utcnow, reprice_every=None)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, addr, 0)
    await site.start()
    try:
        url = f"http://{addr}:{runner.addresses[0][1]}"
        admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/api/v1/enrolment-tokens", json={"store": "s1"},
                              headers=admin) as r:
                token = (await r.json())["token"]
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            from protocol.signing import public_key_hex
            till_key = Ed25519PrivateKey.generate()
            from protocol import enrolment
            async with s.post(url + "/sync/v1/enroll", json={
                    "token": token, "public_key": public_key_hex(till_key),
                    "proof": enrolment.prove(till_key, token)}) as r:
                body = await r.json()
            assert r.status == 200 and "card_keys" not in body
            assert "only over TLS" in body["card_keys_withheld"]
            secret_hex = app[SECRETS].card_keys.newest.secret.hex()
            assert secret_hex not in json.dumps(body)
            from agent.central_client import CentralClient, CentralError
            from agent.identity import TillIdentity
            from protocol.signing import parse_public_key
            ident = TillIdentity(body["till_id"], "s1", url, till_key,
                                 parse_public_key(body["central_public_key"]),
                                 tmp_path / "k" / "card-keys")
            client = CentralClient(ident)
            try:
                with pytest.raises(CentralError) as e:
                    await client.request("GET", "/sync/v1/card-keys")
                assert e.value.status == 403 and "only over TLS" in str(e.value)
                await client.request("GET", "/sync/v1/ruleset")  # the rest still works
            finally:
                await client.close()
    finally:
        await runner.cleanup()
        await asyncio.sleep(0)
