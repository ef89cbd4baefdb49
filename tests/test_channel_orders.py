"""Orders from the web shop and the app: priced by the tills' engine, journalled under the
channel's virtual till, idempotent by order id, one channel blind to another's orders."""

from __future__ import annotations

import threading
from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central import channel_orders, channels, db, kpi_counts, repricing
from central.errors import Refused
from protocol import bounds, lots, rules

CARD = "4000000000000002"
SHOES = [{"sku": "shoe-1", "qty": 2000, "price": 150_000, "category": "sports/shoes"}]


def programme() -> dict:
    """The default programme, with a return window of 21 days for web and app orders and a
    campaign for app orders only."""
    doc = rules.default_ruleset_doc()
    doc["programme"]["return_windows"] = [{"channels": ["web", "app"], "days": 21}]
    doc["campaigns"].append({"id": "app-bonus", "name": "App orders: +2%", "priority": 3,
                             "when": {"channels": ["app"]},
                             "effect": {"type": "percent", "percent": 2}})
    return doc


async def setup(central, points: int = 5000) -> str:
    resp = await central.put("/api/v1/ruleset", headers=central.admin, json={"doc": programme()})
    assert resp.status == 201, await resp.text()
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": CARD})
    cid = (await resp.json())["id"]
    resp = await central.post(f"/api/v1/customers/{cid}/adjustments", headers=central.admin,
                              json={"points": points, "reason": "opening balance"})
    assert resp.status == 200, await resp.text()
    return cid


async def channel(central, kind: str, store: str = "online") -> dict[str, str]:
    resp = await central.post("/api/v1/channels", headers=central.admin,
                              json={"name": f"our {kind}", "kind": kind, "store": store})
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    return {"Authorization": f"Bearer {made['token']}", "id": made["channel"]["id"]}


def auth(ch: dict[str, str]) -> dict[str, str]:
    return {"Authorization": ch["Authorization"]}


async def balance(central, cid: str) -> dict:
    got = await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json()
    return got["balance"]


async def post(central, ch, path: str, body: dict):
    return await central.post(f"/channel/v1/{path}", headers=auth(ch), json=body)


async def test_price_confirm_with_redemption_and_partial_return(central, clock):
    cid = await setup(central)
    app, web = await channel(central, "app"), await channel(central, "web")
    # Channel campaigns apply by the channel's kind: the app's order earns 2 % more.
    priced = await (await post(central, app, "price", {"customer_id": cid, "lines": SHOES})
                    ).json()
    on_web = await (await post(central, web, "price", {"customer_id": cid, "lines": SHOES})
                    ).json()
    assert "app-bonus" in priced["campaigns"] and "app-bonus" not in on_web["campaigns"]
    assert priced["earned"] == 210 and on_web["earned"] == 150  # 7 % and 5 % of 3,000.00
    assert priced["balance"] == 5000 and priced["max_redeemable"] == 1500  # half the order
    spend = {"customer_id": cid, "lines": SHOES, "redeem": 1000}
    quoted = await (await post(central, app, "price", spend)).json()
    assert quoted["to_pay"] == 200_000 and quoted["earned"] == 140  # on the money part
    assert (await balance(central, cid))["available"] == 5000  # pricing moves nothing

    resp = await post(central, app, "orders/A-1/confirm", spend)
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert (done["redeemed"], done["earned"], done["to_pay"]) == (1000, 140, 200_000)
    # The channel's return window: pending through 21 whole days (protocol.lots).
    assert [lot["activates_at"] for lot in done["lots"]] == [
        lots.activation(clock(), 21, UTC).isoformat()]
    assert done["balance"] == {"available": 4000, "pending": 140, "debt": 0}
    assert await balance(central, cid) == done["balance"]

    # A repeat answers the same and moves nothing; another body under that id is 409.
    again = await post(central, app, "orders/A-1/confirm", spend)
    assert again.status == 200 and await again.json() == done
    changed = await post(central, app, "orders/A-1/confirm", {**spend, "redeem": 900})
    assert changed.status == 409 and "another body" in (await changed.json())["error"]
    assert await balance(central, cid) == done["balance"]

    # Half the shoes back: half the earned points taken back, half the spent given back.
    clock.advance(days=2)
    half = {"lines": [{"index": 0, "qty": 1000}]}
    resp = await post(central, app, "orders/A-1/returns/R-1", half)
    assert resp.status == 200, await resp.text()
    back = await resp.json()
    assert (back["clawback"], back["refund"], back["money"]) == (70, 500, 100_000)
    assert back["balance"] == {"available": 4500, "pending": 70, "debt": 0}
    assert await (await post(central, app, "orders/A-1/returns/R-1", half)).json() == back
    other = await post(central, app, "orders/A-1/returns/R-1",
                       {"lines": [{"index": 0, "qty": 500}]})
    assert other.status == 409
    # Bounded by what was sold less what came back before.
    over = await post(central, app, "orders/A-1/returns/R-2",
                      {"lines": [{"index": 0, "qty": 1001}]})
    assert over.status == 409 and "line 0" in (await over.json())["error"]
    rest = await (await post(central, app, "orders/A-1/returns/R-2",
                             {"lines": [{"index": 0, "qty": 1000}]})).json()
    assert (rest["clawback"], rest["refund"], rest["complete"]) == (70, 500, True)
    assert await balance(central, cid) == {"available": 5000, "pending": 0, "debt": 0}

    # The order is a receipt like any other: journalled under the channel's virtual till,
    # in the ledger, and the followers take it as a till's.
    till = channels.get(central.db, app["id"]).till_id
    kinds = [r["kind"] for r in central.db.execute(
        "SELECT kind FROM journal WHERE till_id = ? ORDER BY seq", (till,))]
    assert kinds == ["sale", "return", "return"]
    moved = sorted((r["kind"], r["points"]) for r in central.db.execute(
        "SELECT kind, points FROM ledger WHERE customer_id = ? AND till_id = ?", (cid, till)))
    assert moved == [("clawback", -70), ("clawback", -70), ("earn", 140), ("redeem", -1000),
                     ("refund", 500), ("refund", 500)]
    repricing.reprice_pending(central.db, clock())
    assert repricing.progress(central.db)["mismatches"] == 0
    alerts = [r["kind"] for r in central.db.execute("SELECT kind FROM alerts")]
    assert not {"presence", "repricing-mismatch", "return-beyond-sale"} & set(alerts)
    kpi_counts.count_pending(central.db)
    day = clock().date().isoformat()
    resp = await central.get("/api/v1/kpis", headers=central.admin,
                             params={"from": "2026-11-01", "to": day})
    figures = await resp.json()
    assert figures["points_flow"]["redeemed"] == 1000
    assert figures["points_flow"]["refund"] == 1000
    assert figures["receipts"]["members"]["sales"] == 1
    assert figures["receipts"]["members"]["returns"] == 2

    got = await (await central.get("/channel/v1/orders/A-1", headers=auth(app))).json()
    assert got["receipt_id"] == done["receipt_id"]
    assert [r["return_id"] for r in got["returns"]] == ["R-1", "R-2"]


async def test_a_channel_sees_and_returns_only_its_own_orders(central, clock):
    cid = await setup(central)
    mine, theirs = await channel(central, "web"), await channel(central, "app")
    assert (await post(central, mine, "orders/7/confirm",
                       {"customer_id": cid, "lines": SHOES})).status == 200
    assert (await central.get("/channel/v1/orders/7", headers=auth(theirs))).status == 404
    resp = await post(central, theirs, "orders/7/returns/1",
                      {"lines": [{"index": 0, "qty": 1000}]})
    assert resp.status == 404 and "order_id" in (await resp.json())["error"]
    # Order ids are each channel's own: the other may use the same id for its own order.
    resp = await post(central, theirs, "orders/7/confirm", {"lines": SHOES})
    assert resp.status == 200 and (await resp.json())["customer_id"] is None
    assert (await central.get("/channel/v1/orders/7", headers=auth(mine))).status == 200


async def test_tokens_are_checked_and_a_revoked_channel_is_refused(central, clock):
    ch = await channel(central, "web")
    assert (await central.post("/channel/v1/price", json={"lines": SHOES})).status == 401
    wrong = {"Authorization": f"Bearer {ch['id']}:guess"}
    assert (await central.post("/channel/v1/price", headers=wrong,
                               json={"lines": SHOES})).status == 401
    staff_token = central.admin  # head office's token is not a channel's
    assert (await central.post("/channel/v1/price", headers=staff_token,
                               json={"lines": SHOES})).status == 401
    # ... and a channel's token opens nothing of head office's.
    assert (await central.get("/api/v1/channels", headers=auth(ch))).status == 401
    listed = await (await central.get("/api/v1/channels", headers=central.admin)).json()
    assert [c["id"] for c in listed["channels"]] == [ch["id"]]
    assert "token" not in listed["channels"][0]
    resp = await central.post(f"/api/v1/channels/{ch['id']}/revoke", headers=central.admin)
    assert resp.status == 200
    assert (await post(central, ch, "price", {"lines": SHOES})).status == 401
    log = await (await central.get("/api/v1/audit?subject=channel:" + ch["id"],
                                   headers=central.admin)).json()
    assert [r["action"] for r in log["records"]] == ["channel.revoke"]


@pytest.mark.parametrize("body, named", [
    ({}, "lines"),
    ({"lines": []}, "lines"),
    ({"lines": "shoe"}, "lines"),
    ({"lines": [{"qty": 1000, "price": 100}]}, "lines[0].sku"),
    ({"lines": [{"sku": "a", "qty": 0, "price": 100}]}, "lines[0].qty"),
    ({"lines": [{"sku": "a", "qty": 1000, "price": -1}]}, "lines[0].price"),
    ({"lines": [{"sku": "a", "qty": 1.5, "price": 1}]}, "lines[0].qty"),
    ({"lines": [{"sku": "a", "qty": 1000, "price": 1, "colour": "red"}]}, "lines[0]"),
    ({"lines": [{"sku": "a", "qty": 1000, "price": 1, "flags": [1]}]}, "lines[0].flags"),
    ({"lines": [{"sku": "a", "qty": 1000, "price": 1, "category": 5}]}, "lines[0].category"),
    ({"lines": SHOES, "redeem": -5}, "redeem"),
    ({"lines": SHOES, "redeem": True}, "redeem"),
    ({"lines": SHOES, "redeem": 10}, "redeem"),  # a non-member spends nothing
    ({"lines": SHOES, "customer_id": 5}, "customer_id"),
    ({"lines": SHOES, "customer_id": "c_nobody"}, "customer_id"),
])
async def test_bad_orders_are_refused_naming_the_field(central, clock, body, named):
    ch = await channel(central, "web")
    for path in ("price", "orders/X/confirm"):
        resp = await post(central, ch, path, body)
        assert 400 <= resp.status < 500, (path, resp.status)
        assert named in (await resp.json())["error"], (path, await resp.json())
    assert central.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0


async def test_impossible_orders_and_returns_are_refused(central, clock):
    cid = await setup(central, points=300)
    ch = await channel(central, "web")
    # More than the balance, more than the rules allow.
    resp = await post(central, ch, "orders/1/confirm",
                      {"customer_id": cid, "lines": SHOES, "redeem": 301})
    assert resp.status == 409 and "redeem" in (await resp.json())["error"]
    assert (await post(central, ch, "orders/2/confirm", {"lines": SHOES})).status == 200
    for lines, named in (([{"index": 3, "qty": 1000}], "line 3"),
                         ([{"index": 0, "qty": 1000}] * 2, "lines[1].index"),
                         ([{"index": 0}], "lines[0].qty"),
                         ([], "lines")):
        resp = await post(central, ch, "orders/2/returns/r", {"lines": lines})
        assert resp.status in (400, 409) and named in (await resp.json())["error"]
    resp = await post(central, ch, "orders/" + "x" * 65 + "/confirm", {"lines": SHOES})
    assert resp.status == 400 and "order_id" in (await resp.json())["error"]
    assert (await balance(central, cid))["available"] == 300


async def test_two_confirms_of_one_order_at_once_move_points_once(central, clock, database,
                                                              tmp_path):
    cid = await setup(central)
    ch = channels.get(central.db, (await channel(central, "web"))["id"])
    target = database if isinstance(database, str) else tmp_path / "central" / "central.db"
    conns = [db.connect(target) for _ in range(2)]
    body = {"customer_id": cid, "lines": SHOES, "redeem": 1000}
    start = threading.Barrier(2)
    answers: list[object] = [None, None]

    def confirm(i: int) -> None:
        start.wait()
        try:
            answers[i] = channel_orders.confirm(conns[i], ch, "twice", body, clock())
        except Refused as e:  # pragma: no cover - reported by the assertion below
            answers[i] = e

    threads = [threading.Thread(target=confirm, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for c in conns:
        c.close()
    assert isinstance(answers[0], dict) and answers[0] == answers[1]
    spent = central.db.execute("SELECT COUNT(*), SUM(points) FROM ledger WHERE customer_id = ?"
                               " AND kind = 'redeem'", (cid,)).fetchone()
    assert tuple(spent) == (1, -1000)
    assert (await balance(central, cid))["available"] == 4000


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                    | st.text(max_size=300),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
LINE_FIELDS = ("sku", "qty", "price", "category", "brand", "flags")


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(field=st.sampled_from(LINE_FIELDS), value=JSON)
def test_any_value_in_a_line_is_taken_or_refused_naming_it(field, value):
    """One hostile value in one field of a valid line: the line is read, or refused with a
    message naming that field, never anything else (a TypeError, an overflow)."""
    line = {**SHOES[0], field: value}
    try:
        read = channel_orders.order_lines({"lines": [line]})
    except (Refused, bounds.OutOfBounds) as e:
        assert f"lines[0].{field}" in str(e) or "lines[0] amount" in str(e), str(e)
    else:
        assert read[0].amount == (read[0].qty * read[0].price + 500) // 1000
