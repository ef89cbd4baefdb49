"""Manual adjustments above the programme's threshold wait for a second person."""

from __future__ import annotations

from central import approvals, staff

CARD = "4000000000000002"


def person(central, clock, role: str, name: str) -> tuple[str, dict[str, str]]:
    account, tok = staff.add(central.db, central.secrets.staff_token_key, name, role, "test",
                             clock())
    return account.id, {"Authorization": f"Bearer {tok}"}


async def customer(central, headers) -> str:
    resp = await central.post("/api/v1/customers", headers=headers, json={"card_number": CARD})
    return (await resp.json())["id"]


async def balance(central, cid: str) -> int:
    got = await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json()
    return got["balance"]["available"]


async def adjust(central, headers, cid: str, points: int):
    return await central.post(f"/api/v1/customers/{cid}/adjustments", headers=headers,
                              json={"points": points, "reason": "complaint 17"})


async def test_a_large_adjustment_waits_for_a_second_person(central, clock):
    olga, olga_h = person(central, clock, "support", "Olga")
    ivan, ivan_h = person(central, clock, "security", "Ivan")
    cid = await customer(central, olga_h)
    limit = approvals.DEFAULT_APPROVAL_ABOVE
    assert (await adjust(central, olga_h, cid, limit)).status == 200  # at the threshold
    resp = await adjust(central, olga_h, cid, limit + 1)
    assert resp.status == 202
    pending = await resp.json()
    assert pending["status"] == "pending" and pending["requested_by"] == olga
    assert await balance(central, cid) == limit  # nothing applied yet
    queue = await (await central.get("/api/v1/approvals?status=pending",
                                     headers=olga_h)).json()
    assert [a["id"] for a in queue["approvals"]] == [pending["id"]]
    # Support may ask but not approve; security approves.
    url = f"/api/v1/approvals/{pending['id']}/approve"
    assert (await central.post(url, headers=olga_h)).status == 403
    clock.advance(minutes=5)
    resp = await central.post(url, headers=ivan_h)
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert done["status"] == "approved" and done["decided_by"] == ivan
    assert await balance(central, cid) == 2 * limit + 1
    actors = [r["actor"] for r in central.db.execute(
        "SELECT actor FROM ledger WHERE customer_id = ? AND kind = 'adjust' ORDER BY id",
        (cid,))]
    assert actors == [olga, olga]  # the ledger names who asked; approvals and audit who approved
    assert (await central.post(url, headers=ivan_h)).status == 409  # once
    assert await balance(central, cid) == 2 * limit + 1
    log = await (await central.get(f"/api/v1/audit?subject=approval:{pending['id']}",
                                   headers=central.admin)).json()
    assert [(r["actor"], r["action"]) for r in log["records"]] == [
        (ivan, "adjustment.approve")]
    asked = await (await central.get("/api/v1/audit?action=adjustment.request",
                                     headers=central.admin)).json()
    assert [r["actor"] for r in asked["records"]] == [olga]


async def test_nobody_approves_their_own_and_rejected_ones_never_apply(central, clock):
    _, boss_h = person(central, clock, "admin", "Boss")
    _, ivan_h = person(central, clock, "security", "Ivan")
    cid = await customer(central, boss_h)
    resp = await adjust(central, boss_h, cid, -50_000)  # a large debit waits too
    assert resp.status == 202
    pending = await resp.json()
    resp = await central.post(f"/api/v1/approvals/{pending['id']}/approve", headers=boss_h)
    assert resp.status == 403 and "second person" in (await resp.json())["error"]
    resp = await central.post(f"/api/v1/approvals/{pending['id']}/reject", headers=ivan_h,
                              json={"note": "no such complaint"})
    assert resp.status == 200
    rejected = await resp.json()
    assert rejected["status"] == "rejected" and rejected["note"] == "no such complaint"
    assert (await central.post(f"/api/v1/approvals/{pending['id']}/approve",
                               headers=central.admin)).status == 409
    assert await balance(central, cid) == 0
    assert (await central.post("/api/v1/approvals/ap_nothing/approve",
                               headers=ivan_h)).status == 404
    assert (await central.get("/api/v1/approvals?status=pending",
                              headers=ivan_h)).status == 200
    resp = await central.get("/api/v1/approvals?status=maybe", headers=ivan_h)
    assert resp.status == 400 and "status" in (await resp.json())["error"]


async def test_the_threshold_is_the_programmes(central, clock):
    _, olga_h = person(central, clock, "support", "Olga")
    cid = await customer(central, olga_h)
    for body, named in [({}, "approval_above"), ({"approval_above": -1}, "approval_above"),
                        ({"approval_above": "100"}, "approval_above")]:
        resp = await central.put("/api/v1/adjustment-policy", headers=central.admin, json=body)
        assert resp.status == 400 and named in (await resp.json())["error"], body
    resp = await central.put("/api/v1/adjustment-policy", headers=central.admin,
                             json={"approval_above": 100})
    assert resp.status == 200
    assert (await adjust(central, olga_h, cid, 101)).status == 202
    assert (await adjust(central, olga_h, cid, 100)).status == 200
    await central.put("/api/v1/adjustment-policy", headers=central.admin,
                      json={"approval_above": None})
    assert (await adjust(central, olga_h, cid, 900_000)).status == 200
    got = await (await central.get("/api/v1/adjustment-policy", headers=olga_h)).json()
    assert got == {"approval_above": None}
    # Paging the queue: oldest first, in pages.
    await central.put("/api/v1/adjustment-policy", headers=central.admin,
                      json={"approval_above": 0})
    ids = []
    for i in range(5):
        clock.advance(seconds=1)
        ids.append((await (await adjust(central, olga_h, cid, i + 1)).json())["id"])
    seen, after = [], None
    while True:
        page = await (await central.get(
            "/api/v1/approvals?status=pending&limit=2" + (f"&after={after}" if after else ""),
            headers=olga_h)).json()
        seen += [a["id"] for a in page["approvals"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen[-5:] == ids


def test_two_approvers_at_once_apply_it_once(database, clock):
    """Two approvers in two processes (here two connections in two threads) approve the same
    adjustment at the same moment: one applies it, the other is told it is decided."""
    from concurrent.futures import ThreadPoolExecutor

    from central import customers, db
    from central.errors import Refused
    from protocol.card_keys import CardKeyring, new_key

    conns = [db.connect(database), db.connect(database)]
    try:
        ring = CardKeyring([new_key(1, clock())])
        cid = customers.create(conns[0], ring, clock(), card_number=CARD)["id"]
        pending = approvals.request(conns[0], cid, 50_000, "complaint", "st_olga", clock())

        def approve(args) -> str:
            conn, who = args
            try:
                approvals.approve(conn, pending["id"], who, clock())
                return "approved"
            except Refused as e:
                return str(e.status)

        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(approve, zip(conns, ["st_ivan", "st_anna"],
                                                    strict=True)))
        assert outcomes == ["409", "approved"]
        assert customers.read(conns[0], cid, clock())["balance"]["available"] == 50_000
    finally:
        for c in conns:
            c.close()
