"""The audit log: who changed or read what (from the token), when, before and after; no
personal data in it; filters and paging; append-only and hash-chained."""

from __future__ import annotations

import pytest

from central import audit, staff
from central.db import DatabaseError

CARD = "4000000000000002"


def token(central, clock, role: str, name: str) -> tuple[str, dict[str, str]]:
    account, tok = staff.add(central.db, central.secrets.staff_token_key, name, role, "test",
                             clock())
    return account.id, {"Authorization": f"Bearer {tok}"}


async def records(central, query: str = "") -> dict:
    resp = await central.get(f"/api/v1/audit{query}", headers=central.admin)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def audit_text(central) -> str:
    return " ".join(str(tuple(r)) for r in central.db.execute("SELECT * FROM audit"))


async def test_changes_and_personal_reads_are_recorded_under_the_tokens_account(central,
                                                                                clock):
    olga, olga_h = token(central, clock, "support", "Olga")
    resp = await central.post("/api/v1/customers", headers=olga_h, json={
        "card_number": CARD, "name": "Анна Смирнова", "phone": "+79001112233"})
    cid = (await resp.json())["id"]
    clock.advance(minutes=1)
    await central.patch(f"/api/v1/customers/{cid}", headers=olga_h,
                        json={"phone": "+79004445566", "tier": "gold"})
    await central.post(f"/api/v1/customers/{cid}/adjustments", headers=olga_h,
                       json={"points": 50, "reason": "goodwill", "actor": "someone else"})
    await central.get(f"/api/v1/customers/{cid}", headers=olga_h)
    await central.post("/api/v1/customers/lookup", headers=olga_h, json={"card_number": CARD})
    await central.get(f"/api/v1/customers/{cid}/personal-data", headers=olga_h)
    # Refused requests change nothing and leave no record.
    assert (await central.get("/api/v1/customers/nobody", headers=olga_h)).status == 404
    assert (await central.post(f"/api/v1/customers/{cid}/adjustments", headers=olga_h,
                               json={"points": 0, "reason": "r"})).status == 400

    got = (await records(central))["records"]
    assert [(r["actor"], r["action"], r["subject"]) for r in reversed(got)] == [
        (olga, "customer.create", f"customer:{cid}"),
        (olga, "customer.update", f"customer:{cid}"),
        (olga, "customer.adjust", f"customer:{cid}"),
        (olga, "customer.read", f"customer:{cid}"),
        (olga, "customer.lookup", f"customer:{cid}"),
        (olga, "customer.export", f"customer:{cid}"),
    ]
    create, update, adjust = got[-1], got[-2], got[-3]
    assert create["at"] == "2026-11-23T10:00:00+00:00" and update["at"] > create["at"]
    assert update["before"]["tier"] is None and update["after"]["tier"] == "gold"
    assert update["after"]["changed"] == ["phone", "tier"]
    assert update["before"]["phone"] == update["after"]["phone"] == audit.PERSONAL_MARK
    assert adjust["before"]["balance"]["available"] == 0
    assert adjust["after"]["points"] == 50 and adjust["after"]["reason"] == "goodwill"
    # Nothing personal in the log: not the name, the phones, the card.
    text = audit_text(central)
    for personal in ("Анна", "Смирнова", "1112233", "4445566", "0002"):
        assert personal not in text


async def test_staff_changes_rule_sets_and_tills_are_recorded(central, clock):
    resp = await central.post("/api/v1/staff", headers=central.admin,
                              json={"name": "Anna", "role": "marketing"})
    anna = await resp.json()
    anna_h = {"Authorization": f"Bearer {anna['token']}"}
    doc = (await (await central.get("/api/v1/ruleset", headers=anna_h)).json())["doc"]
    assert (await central.put("/api/v1/ruleset", headers=anna_h, json={"doc": doc})).status \
        == 201
    await central.post(f"/api/v1/staff/{anna['id']}/revoke", headers=central.admin)
    got = (await records(central))["records"]
    assert [(r["actor"], r["action"], r["subject"]) for r in reversed(got)] == [
        (staff.LEGACY_ADMIN, "staff.add", f"staff:{anna['id']}"),
        (anna["id"], "ruleset.publish", "ruleset"),
        (staff.LEGACY_ADMIN, "staff.revoke", f"staff:{anna['id']}"),
    ]
    assert got[1]["after"]["version"] == got[1]["before"]["version"] + 1
    assert got[0]["before"]["revoked_at"] is None and got[0]["after"]["revoked_at"]
    assert anna["token"].split(":")[1] not in audit_text(central)


async def test_filters_and_paging(central, clock):
    _, olga_h = token(central, clock, "support", "Olga")
    ivan, ivan_h = token(central, clock, "security", "Ivan")
    resp = await central.post("/api/v1/customers", headers=olga_h, json={"card_number": CARD})
    cid = (await resp.json())["id"]
    for i in range(12):
        clock.advance(hours=1)
        who = ivan_h if i % 3 == 0 else olga_h
        await central.get(f"/api/v1/customers/{cid}", headers=who)
    everything = (await records(central, "?limit=500"))["records"]
    assert len(everything) == 13
    seen, before = [], None
    while True:
        page = await records(central, "?limit=5" + (f"&before={before}" if before else ""))
        seen += [r["seq"] for r in page["records"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [r["seq"] for r in everything] == list(range(13, 0, -1))
    by_ivan = (await records(central, f"?actor={ivan}"))["records"]
    assert len(by_ivan) == 4 and {r["actor"] for r in by_ivan} == {ivan}
    reads = (await records(central, f"?action=customer.read&subject=customer:{cid}"))
    assert len(reads["records"]) == 12
    window = (await records(central, "?since=2026-11-23T12:00:00%2B00:00"
                                     "&until=2026-11-23T15:00:00%2B03:00"))["records"]
    # 12:00 UTC inclusive to 12:00 UTC (15:00 at +03:00) exclusive: nothing; then three hours
    assert window == []
    window = (await records(central, "?since=2026-11-23T12:00:00Z"
                                     "&until=2026-11-23T15:00:00Z"))["records"]
    assert [r["at"][11:16] for r in window] == ["14:00", "13:00", "12:00"]
    for query, named in [("?since=yesterday", "since"), ("?until=2026-11-23T12:00:00", "until"),
                         ("?limit=0", "limit"), ("?limit=501", "limit"), ("?before=x", "before"),
                         ("?actor=%00", "actor")]:
        resp = await central.get(f"/api/v1/audit{query}", headers=central.admin)
        assert resp.status == 400 and named in (await resp.json())["error"], query


async def test_the_chain_verifies_and_shows_any_tampering(central, clock):
    _, olga_h = token(central, clock, "support", "Olga")
    resp = await central.post("/api/v1/customers", headers=olga_h, json={"card_number": CARD})
    cid = (await resp.json())["id"]
    for _ in range(4):
        await central.get(f"/api/v1/customers/{cid}", headers=olga_h)
    verdict = await (await central.get("/api/v1/audit/verify", headers=central.admin)).json()
    assert verdict == {"records": 5, "ok": True, "problem": None}
    first = central.db.execute("SELECT prev_hash FROM audit WHERE seq = 1").fetchone()[0]
    assert first == audit.GENESIS
    # The database itself refuses to change or delete a record...
    conn = central.db
    if conn.dialect.name == "sqlite":
        with pytest.raises(DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 3")
        with pytest.raises(DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE seq = 3")
        with pytest.raises(DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
        lift = ["DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"]
    else:
        conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 3")
        conn.execute("DELETE FROM audit WHERE seq = 3")
        with pytest.raises(DatabaseError, match="append-only"):
            conn.execute("TRUNCATE audit")
        lift = ["DROP RULE audit_no_update ON audit", "DROP RULE audit_no_delete ON audit"]
    assert verdict == audit.verify(conn)
    # ...and whoever lifts that is still found out by the chain.
    for sql in lift:
        conn.execute(sql)
    conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 3")
    assert audit.verify(conn)["problem"] == "entry 3 has a hash that does not match its content"
    conn.execute("DELETE FROM audit WHERE seq = 3")
    assert audit.verify(conn)["problem"] == "gap: expected entry 3, found 4"
    conn.execute("DELETE FROM audit WHERE seq >= 4")
    assert audit.verify(conn)["ok"]  # a cut-off tail: docs/roles.md says how to anchor it


async def test_erasure_leaves_the_log_without_the_customers_data(central, clock):
    _, olga_h = token(central, clock, "support", "Olga")
    resp = await central.post("/api/v1/customers", headers=olga_h, json={
        "card_number": CARD, "name": "Пётр Иванов", "phone": "+79007778899",
        "birthday": "1990-05-17"})
    cid = (await resp.json())["id"]
    await central.patch(f"/api/v1/customers/{cid}", headers=olga_h, json={"name": "Пётр И."})
    resp = await central.post(f"/api/v1/customers/{cid}/erase", headers=olga_h,
                              json={"reason": "customer's request"})
    assert resp.status == 200
    got = (await records(central, f"?subject=customer:{cid}"))["records"]
    assert [r["action"] for r in got] == ["customer.erase", "customer.update", "customer.create"]
    text = audit_text(central)
    for personal in ("Пётр", "Иванов", "7778899", "1990-05-17"):
        assert personal not in text
    assert audit.verify(central.db)["ok"]


async def test_a_change_whose_record_fails_is_not_kept(central, clock, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the audit log's disk is gone")

    monkeypatch.setattr(audit, "append", broken)
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": CARD, "name": "Anna"})
    assert resp.status == 500
    monkeypatch.undo()
    assert central.db.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == 0
    assert central.db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 0
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": CARD, "name": "Anna"})
    assert resp.status == 201 and audit.verify(central.db)["records"] == 1


def test_two_processes_append_one_chain(database, clock):
    """Two connections (as two central processes have) appending at once: each record
    links to the one committed before it, none is numbered twice."""
    from concurrent.futures import ThreadPoolExecutor

    from central import db

    conns = [db.connect(database), db.connect(database)]
    try:
        def write(conn) -> None:
            for i in range(25):
                with audit.recorded(conn, clock(), "st_test", "test.append", f"n:{i}"):
                    pass

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, conns))
        assert audit.verify(conns[0]) == {"records": 50, "ok": True, "problem": None}
    finally:
        for c in conns:
            c.close()
