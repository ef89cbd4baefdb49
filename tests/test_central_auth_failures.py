"""Failed authentications against the central: counted into one alert per source and period,
sources taken from trusted proxies only, alerts paged, filtered and acknowledged, and wrong
head-office tokens throttled per source and account without locking anyone out."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import alerts, staff
from central.app import make_app
from central.auth_failures import Throttle
from central.client_source import TrustedProxies
from central.web_common import DB, SECRETS
from tests.test_central_sync_api import enrolled_till, send
from tests.till_double import TestTill


def security_alerts(central) -> list[dict]:
    return [dict(r) for r in central.db.execute(
        "SELECT kind, severity, source, count, till_id FROM alerts WHERE kind = 'security'"
        " ORDER BY id")]


async def test_a_flood_of_forged_batches_makes_one_alert_per_source_and_period(central, clock):
    till = await enrolled_till(central)
    till.sale(None)
    forged = till.batch(key=Ed25519PrivateKey.generate())
    for _ in range(200):
        assert (await send(central, forged)).status == 401
    assert security_alerts(central) == [{"kind": "security", "severity": "critical",
                                         "source": "127.0.0.1", "count": 200,
                                         "till_id": till.till_id}]
    clock.advance(minutes=11)  # a new period: a new alert
    assert (await send(central, forged)).status == 401
    assert [a["count"] for a in security_alerts(central)] == [200, 1]


async def test_unsigned_requests_unknown_tills_and_guessed_tokens_count_as_failures(central):
    resp = await central.get("/sync/v1/ruleset")
    assert resp.status == 401
    resp = await central.get("/sync/v1/ruleset", headers={
        "X-Tillpoint-Till": "till_nobody", "X-Tillpoint-Time": "0", "X-Tillpoint-Signature": "00"})
    assert resp.status == 401
    resp = await central.post("/sync/v1/enroll", json=TestTill().enrolment("et_guess"))
    assert resp.status == 403
    assert [(a["count"], a["source"]) for a in security_alerts(central)] == [(3, "127.0.0.1")]


@pytest.fixture
async def behind_proxy(aiohttp_client, tmp_path: Path, clock):
    """A central whose only caller is a reverse proxy on the loopback, which it trusts."""
    app = make_app(tmp_path / "proxied", clock, reprice_every=None,
                   trusted_proxies=TrustedProxies.parse(["127.0.0.0/8"]))
    client = await aiohttp_client(app)
    client.db = app[DB]
    client.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    return client


async def test_the_forwarded_address_is_the_source_only_from_a_trusted_proxy(
        behind_proxy, central):
    wrong = {"Authorization": "Bearer wrong"}
    for client in (behind_proxy, central):
        for hops in ("203.0.113.7", "198.51.100.1, 203.0.113.9", "not-an-address"):
            resp = await client.get("/api/v1/tills",
                                    headers={**wrong, "X-Forwarded-For": hops})
            assert resp.status == 401
    # Behind the proxy: the rightmost hop the proxy added (the left is the client's word).
    assert sorted(a["source"] for a in security_alerts(behind_proxy)) == [
        "127.0.0.1", "203.0.113.7", "203.0.113.9"]
    # Straight on the network: the header is anyone's to write and is ignored.
    assert [(a["source"], a["count"]) for a in security_alerts(central)] == [("127.0.0.1", 3)]


async def test_wrong_admin_tokens_are_throttled_per_source_without_locking_others_out(
        behind_proxy):
    attacker = {"Authorization": "Bearer guess", "X-Forwarded-For": "203.0.113.66"}
    for _ in range(10):
        assert (await behind_proxy.get("/api/v1/tills", headers=attacker)).status == 401
    refused = await behind_proxy.get("/api/v1/tills", headers=attacker)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    # Even the right token from that source waits: it learns nothing more.
    resp = await behind_proxy.get("/api/v1/tills", headers={
        **behind_proxy.admin, "X-Forwarded-For": "203.0.113.66"})
    assert resp.status == 429
    # Head office elsewhere is not locked out.
    resp = await behind_proxy.get("/api/v1/tills", headers={
        **behind_proxy.admin, "X-Forwarded-For": "198.51.100.20"})
    assert resp.status == 200


def test_failures_against_a_named_account_refuse_only_sources_that_failed():
    now = [0.0]
    throttle = Throttle(limit=10, account_limit=20, window=300, clock=lambda: now[0])
    for i in range(20):  # twenty sources, each below its own limit, all against alice
        throttle.failed(f"10.0.0.{i}", "alice")
    assert throttle.retry_after("10.0.0.1", "alice") == 300  # a guesser: held off
    assert throttle.retry_after("10.0.0.1", "bob") is None  # other accounts: untouched
    assert throttle.retry_after("192.0.2.1", "alice") is None  # alice at her own desk
    now[0] = 301.0
    assert throttle.retry_after("10.0.0.1", "alice") is None  # the window has passed


def test_the_throttle_forgets_the_oldest_of_too_many_sources():
    throttle = Throttle(max_tracked=100)
    for i in range(1000):
        throttle.failed(f"src-{i}")
    assert len(throttle._sources) == 100


async def test_alerts_are_paged_filtered_and_acknowledged(central, clock):
    for i in range(250):
        alerts.raise_alert(central.db, clock(), "offline-overspend" if i % 2 else "repricing",
                           f"alert {i}", till_id=f"t{i % 3}")
    seen: list[int] = []
    before = None
    while True:
        url = "/api/v1/alerts?limit=100" + (f"&before={before}" if before else "")
        page = await (await central.get(url, headers=central.admin)).json()
        seen += [a["id"] for a in page["alerts"]]
        before = page["next_before"]
        if before is None:
            break
    assert len(seen) == 250 == len(set(seen)) and seen == sorted(seen, reverse=True)

    resp = await central.get("/api/v1/alerts?kind=repricing&till_id=t0&limit=500",
                             headers=central.admin)
    picked = (await resp.json())["alerts"]
    assert picked and all(a["kind"] == "repricing" and a["till_id"] == "t0" for a in picked)

    first = picked[0]["id"]
    olga, olga_token = staff.add(central.db, central.secrets.staff_token_key, "Olga",
                                 "security", "test", clock())
    _, ivan_token = staff.add(central.db, central.secrets.staff_token_key, "Ivan",
                              "security", "test", clock())
    resp = await central.post(f"/api/v1/alerts/{first}/ack", json={},
                              headers={"Authorization": f"Bearer {olga_token}"})
    acked = await resp.json()
    assert resp.status == 200 and acked["acked_by"] == olga.id and acked["acked_at"]
    clock.advance(minutes=1)
    again = await (await central.post(f"/api/v1/alerts/{first}/ack", json={},
                                      headers={"Authorization": f"Bearer {ivan_token}"})).json()
    assert (again["acked_by"], again["acked_at"]) == (olga.id, acked["acked_at"])
    resp = await central.get("/api/v1/alerts?acked=true", headers=central.admin)
    assert [a["id"] for a in (await resp.json())["alerts"]] == [first]
    resp = await central.get("/api/v1/alerts?acked=false&limit=500", headers=central.admin)
    assert len((await resp.json())["alerts"]) == 249
    assert (await central.post("/api/v1/alerts/99999/ack", json={"actor": "olga"},
                               headers=central.admin)).status == 404
    assert (await central.get("/api/v1/alerts?limit=x", headers=central.admin)).status == 400


async def test_requests_a_role_does_not_admit_make_one_alert_per_account_and_period(
        central, clock):
    """A support token trying the staff and audit routes: refused each time, counted on one
    warning for that account; another account's refusals are its own line."""
    _, support = staff.add(central.db, central.secrets.staff_token_key, "Sam", "support",
                           "test", clock())
    _, analyst = staff.add(central.db, central.secrets.staff_token_key, "Ann", "analyst",
                           "test", clock())
    for path in ("/api/v1/staff", "/api/v1/audit", "/api/v1/staff"):
        resp = await central.get(path, headers={"Authorization": f"Bearer {support}"})
        assert resp.status == 403
    # What the role admits raises nothing.
    resp = await central.get("/api/v1/summary", headers={"Authorization": f"Bearer {analyst}"})
    assert resp.status == 200
    assert len(security_alerts(central)) == 1  # support's line; none for what was admitted
    resp = await central.get("/api/v1/audit", headers={"Authorization": f"Bearer {analyst}"})
    assert resp.status == 403
    support_id, analyst_id = support.split(":")[0], analyst.split(":")[0]
    lines = {a["source"]: a for a in security_alerts(central)}
    assert lines[f"account {support_id}"]["count"] == 3
    assert lines[f"account {analyst_id}"]["count"] == 1
    assert {a["severity"] for a in lines.values()} == {"warning"}
    message = central.db.execute("SELECT message FROM alerts WHERE source = ?",
                                 (f"account {support_id}",)).fetchone()[0]
    assert "role support" in message and "GET /api/v1/staff" in message
