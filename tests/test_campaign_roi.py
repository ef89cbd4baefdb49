"""Campaign ROI through real signed batches: a campaign holding out half its audience, sales
by treated and held-out customers with known baskets, head office's cost feed, and the ROI
the API answers equal to the one worked out by hand here; and the cost feed's own checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agent import journal
from central import campaign_roi, customers, db, rulesets
from central.clock import utcnow
from protocol import rules
from protocol.journal import JournalEntry, new_receipt_id
from protocol.rules.holdout import held_out
from tests.sync_fixtures import LocalTill, enrol, live_central

__all__ = ["live_central"]

SALT = "roi-test-salt"
CHIPS = ("chips", "snacks", 20000)  # sku, category, price; cost 120.00 in the feed
COLA = ("cola", "drinks", 10000)  # cost 60.00
GUM = ("gum", "snacks", 5000)  # no cost in the feed: counted on revenue
FEED_CSV = b"sku,cost\nchips,12000\ncola,6000\n"
EFFECTS = {"discount": {"type": "discount", "percent": 10},
           "points": {"type": "percent", "percent": 10}}


def ean13(n: int) -> str:
    body = f"299{n:09d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str(-total % 10)


def line(item: tuple[str, str, int], qty: int = 1000) -> rules.ReceiptLine:
    sku, category, price = item
    return rules.ReceiptLine(sku, qty, price, (qty * price + 500) // 1000, category=category)


def sell(till: LocalTill, customer_id: str | None, lines: list[rules.ReceiptLine],
         at: datetime, rs: rules.RuleSet, version: int) -> rules.Settlement:
    """A sale journalled as checkout journals it: settled by the engine, with its lines and
    the customer as pricing saw them."""
    receipt = rules.Receipt(lines=tuple(lines), store=till.ident.store)
    customer = rules.Customer(id=customer_id) if customer_id else None
    s = rules.settle(rs, receipt, customer, at)
    lots = [{"points": lot.points, "activates": lot.activates_at.isoformat(),
             "expires": lot.expires_at.isoformat() if lot.expires_at
             else "9999-12-31T00:00:00+00:00"}
            for lot in s.lots if lot.unit == s.unit and lot.points > 0]
    with till.db.atomic():
        journal.append(till.db, JournalEntry(
            seq=0, epoch="", prev_hash="", kind="sale", receipt_id=new_receipt_id(at),
            at=at.isoformat(timespec="seconds"), store=till.ident.store,
            customer_id=customer_id, ruleset_version=version, total=s.paid_money,
            fiscal_doc=0, earned=sum(lot["points"] for lot in lots), redeemed=0, lots=lots,
            detail={"settlement": s.to_dict(),
                    "lines": [{"sku": ln.sku, "name": ln.sku, "qty": ln.qty, "price": ln.price,
                               "category": ln.category, "brand": "", "flags": []}
                              for ln in lines],
                    "customer": rules.journal_view(customer, rs, till.ident.store, at)
                    if customer else None}))
    return s


async def put_feed(central, body: bytes | dict, headers: dict | None = None):
    h = dict(headers or central.admin)
    if isinstance(body, bytes):
        return await central.put("/api/v1/product-costs", data=body,
                                 headers={**h, "Content-Type": "text/csv"})
    return await central.put("/api/v1/product-costs", json=body, headers=h)


async def groups_of(central, campaign: str, n: int) -> tuple[list[str], list[str]]:
    """n treated and n held-out members of `campaign` (who is which is the hash's say)."""
    treated: list[str] = []
    control: list[str] = []
    i = 0
    while len(treated) < n or len(control) < n:
        i += 1
        cid = customers.create(central.db, central.secrets.card_keys, utcnow(),
                               card_number=ean13(i))["id"]
        into = control if held_out(SALT, campaign, cid, 5000) else treated
        if len(into) < n:
            into.append(cid)
    return treated, control


@pytest.mark.parametrize("kind", sorted(EFFECTS))
async def test_roi_worked_out_by_hand_equals_the_api(live_central, tmp_path, kind):
    central = live_central
    doc = rules.default_ruleset_doc()
    doc["holdout_salt"] = SALT
    rulesets.publish(central.db, doc, "test", utcnow())
    resp = await central.post("/api/v1/campaigns", headers=central.admin, json={
        "id": "snacks", "name": "10 % on snacks", "priority": 10, "holdout": 50,
        "lines": {"categories": ["snacks"]}, "effect": EFFECTS[kind], "status": "live"})
    assert resp.status == 201, await resp.text()
    version = rulesets.current(central.db).version
    rs = rules.compile_ruleset(rulesets.current(central.db).doc)
    assert rs.holdout_salt == SALT and rs.campaigns[rs.by_id["snacks"]].holdout_bp == 5000

    assert (await put_feed(central, FEED_CSV)).status == 200
    (t1, t2), (c1, c2) = await groups_of(central, "snacks", 2)
    till = LocalTill(await enrol(central, "s1"), tmp_path / "till.db")
    try:
        at = utcnow().replace(microsecond=0)
        sold = [
            sell(till, t1, [line(CHIPS, 2000), line(COLA)], at, rs, version),
            sell(till, t1, [line(GUM)], at, rs, version),
            sell(till, t2, [line(CHIPS)], at, rs, version),
            sell(till, c1, [line(CHIPS), line(COLA)], at, rs, version),
            # c2 buys no snacks: the campaign would not apply, so no control receipt
            sell(till, c2, [line(COLA)], at, rs, version),
            # anonymous: never in either group
            sell(till, None, [line(CHIPS)], at, rs, version),
        ]
        assert [s.held_out for s in sold] == [(), (), (), ("snacks",), (), ()]
        assert await till.sync.push() == len(sold)  # real signed batches
        while campaign_roi.count_pending(central.db, limit=2):  # page by page
            pass
        day = at.date()
        resp = await central.get(
            "/api/v1/campaigns/snacks/roi", headers=central.admin,
            params={"from": (day - timedelta(days=1)).isoformat(),
                    "to": (day + timedelta(days=1)).isoformat()})
        assert resp.status == 200, await resp.text()
        got = await resp.json()
        resp = await central.get("/api/v1/campaigns/snacks/figures", headers=central.admin)
        figures = await resp.json()
    finally:
        await till.close()
    assert figures["receipts_by_group"] == {"treated": 3, "control": 1}
    # the always-on base campaign holds nobody out: it is not followed at all
    assert central.db.execute("SELECT COUNT(*) FROM campaign_roi_days"
                              " WHERE campaign_id = 'base'").fetchone()[0] == 0

    # By hand. Treated: t1 (chips ×2 + cola; gum), t2 (chips); control: c1 (chips + cola).
    if kind == "discount":  # 10 % off the snack lines, none of it for the control group
        discount, points = 4000 + 500 + 2000, 0
        treated_revenue = (40000 - 4000 + 10000) + (5000 - 500) + (20000 - 2000)  # 68500
        gum_revenue = 4500
    else:  # 10 % of the snack lines in points at 1.00 a point: 40 + 5 + 20
        discount, points = 0, 65
        treated_revenue = 50000 + 5000 + 20000  # 75000
        gum_revenue = 5000
    chips_cost = 3 * 12000  # three packs at 120.00
    cola_cost = 6000
    treated_margin = treated_revenue - chips_cost - cola_cost  # gum counted on its revenue
    control_margin = 30000 - 12000 - 6000  # 12000
    # (treated_margin / 2 − control_margin / 1) × 2 treated customers
    incremental = treated_margin - control_margin * 2
    cost = points * 100 + discount  # 6500 either way
    assert cost == 6500
    roi_bp = round((incremental - cost) * 10000 / cost)
    assert (kind, incremental, roi_bp) in {("discount", 2500, -6154), ("points", 9000, 3846)}

    treated, control = got["treated"], got["control"]
    assert treated["customers"] == 2 and treated["receipts"] == 3
    assert treated["revenue"] == treated_revenue
    assert treated["cost_of_goods"] == chips_cost + cola_cost
    assert treated["margin"] == treated_margin
    assert treated["basis"] == "mixed"
    assert treated["parts"][1] == {"basis": "revenue", "skus": 1, "revenue": gum_revenue,
                                   "margin": gum_revenue, "note": treated["parts"][1]["note"]}
    assert treated["margin_per_customer"] == treated_margin // 2
    assert control == {**control, "customers": 1, "receipts": 1, "revenue": 30000,
                       "cost_of_goods": 18000, "margin": control_margin, "basis": "margin"}
    assert got["incremental_margin"]["kopecks"] == incremental
    assert got["incremental_margin"]["inputs"] == {
        "treated_margin": treated_margin, "treated_customers": 2,
        "control_margin": control_margin, "control_customers": 1}
    assert got["cost"]["kopecks"] == cost
    assert got["cost"]["inputs"] == {"points": points, "worth": {"steps": 1, "kopecks": 100},
                                     "points_kopecks": points * 100, "discount": discount}
    assert got["roi_bp"] == roi_bp
    assert got["roi"] == {"discount": "-0.6154", "points": "0.3846"}[kind]
    assert got["basis"] == "mixed" and got["behind"] == 0

    # Another period: nothing in it, and the reason instead of a figure.
    resp = await central.get("/api/v1/campaigns/snacks/roi", headers=central.admin,
                             params={"from": "2020-01-01", "to": "2020-01-31"})
    empty = await resp.json()
    assert empty["roi_bp"] is None and "no receipts" in empty["why_not"]


async def test_the_cost_feed_is_stored_whole_audited_as_count_and_digest(live_central):
    central = live_central
    resp = await put_feed(central, {"costs": [{"sku": "a", "cost": 100},
                                              {"sku": "b", "cost": 0}]})
    assert resp.status == 200, await resp.text()
    first = await resp.json()
    assert first["skus"] == 2 and first["uploaded_by"]
    resp = await put_feed(central, b"sku,cost\r\nc,250\r\n\r\n")  # replaces the whole feed
    assert resp.status == 200, await resp.text()
    got = await (await central.get("/api/v1/product-costs", headers=central.admin)).json()
    assert got["skus"] == 1 and got["costs"] == [{"sku": "c", "cost": 250}]
    assert got["digest"] != first["digest"]
    record = central.db.execute("SELECT before, after FROM audit WHERE action ="
                                " 'product-costs.set' ORDER BY seq DESC LIMIT 1").fetchone()
    assert json.loads(record["before"]) == {"skus": 2, "digest": first["digest"]}
    assert json.loads(record["after"]) == {"skus": 1, "digest": got["digest"]}


@pytest.mark.parametrize("body, named", [
    (b"sku,cost\nchips,12000\ncola,sixty\n", "row 2 (line 3): field 'cost'"),
    (b"sku,cost\nchips,-5\n", "row 1 (line 2): field 'cost'"),
    (b"sku,cost\nchips,1.5\n", "row 1 (line 2): field 'cost'"),
    (b"sku,cost\nchips,12000\nchips,13000\n", "row 2 (line 3): field 'sku' 'chips' is given"
                                              " twice (first at row 1 (line 2))"),
    (b"sku,cost\n,100\n", "row 1 (line 2): field 'sku' must not be empty"),
    (b"sku,cost\nchips\n", "row 1 (line 2): has 1 fields"),
    (b"sku,cost\nchips,99999999999\n", "row 1 (line 2): field 'cost' must be from 0"),
    (b"name,price\nchips,1\n", "header 'sku,cost'"),
    (b"sku,cost\n\xff,1\n", "not UTF-8"),
    ({"costs": [{"sku": "a", "cost": 1}, {"sku": "b", "cost": 1.5}]}, "costs[1]: field 'cost'"),
    ({"costs": [{"sku": "a", "cost": "100"}]}, "costs[0]: field 'cost'"),
    ({"costs": [{"sku": "a", "cost": True}]}, "costs[0]: field 'cost'"),
    ({"costs": [{"sku": "a", "price": 1}]}, "costs[0].price: unknown field"),
    ({"costs": [{"sku": 5, "cost": 1}]}, "costs[0]: field 'sku' must be a string"),
    ({"costs": {"a": 1}}, "field 'costs' must be a list"),
    ({"cost": []}, "field 'cost' is unknown"),
])
async def test_bad_feed_rows_are_refused_naming_the_row_and_nothing_is_stored(
        live_central, body, named):
    central = live_central
    assert (await put_feed(central, {"costs": [{"sku": "kept", "cost": 7}]})).status == 200
    resp = await put_feed(central, body)
    text = await resp.text()
    assert resp.status == 400 and named in text, text
    got = await (await central.get("/api/v1/product-costs", headers=central.admin)).json()
    assert got["costs"] == [{"sku": "kept", "cost": 7}]  # the feed before, untouched


async def test_bad_roi_periods_are_refused_naming_the_field(live_central):
    central = live_central
    resp = await central.post("/api/v1/campaigns", headers=central.admin, json={
        "id": "x", "name": "x", "holdout": "12.5", "effect": {"type": "percent", "percent": 1}})
    assert resp.status == 201, await resp.text()
    for params, named in [({"to": "2026-11-01"}, "query 'from' is required"),
                          ({"from": "2026-11-01"}, "query 'to' is required"),
                          ({"from": "yesterday", "to": "2026-11-01"}, "query 'from' must be"),
                          ({"from": "2026-11-02", "to": "2026-11-01"}, "query 'to' is before"),
                          ({"from": "2000-01-01", "to": "2026-11-01"}, "spans more than")]:
        resp = await central.get("/api/v1/campaigns/x/roi", headers=central.admin,
                                 params=params)
        assert resp.status == 400 and named in await resp.text(), params
    resp = await central.get("/api/v1/campaigns/nope/roi", headers=central.admin,
                             params={"from": "2026-11-01", "to": "2026-11-01"})
    assert resp.status == 404


async def test_a_bad_holdout_is_refused_naming_the_field(live_central):
    resp = await live_central.post("/api/v1/campaigns", headers=live_central.admin, json={
        "id": "y", "name": "y", "holdout": 100, "effect": {"type": "percent", "percent": 1}})
    assert resp.status == 400 and "'holdout'" in await resp.text()


async def test_an_offer_campaign_counts_its_grants_as_treated_and_costs_nothing_yet(
        live_central, tmp_path):
    central = live_central
    doc = rules.default_ruleset_doc()
    doc["holdout_salt"] = SALT
    rulesets.publish(central.db, doc, "test", utcnow())
    resp = await central.post("/api/v1/campaigns", headers=central.admin, json={
        "id": "cross", "name": "coffee next time", "holdout": 50,
        "lines": {"categories": ["snacks"]},
        "effect": {"type": "next_purchase_offer", "offer": "coffee"}, "status": "live"})
    assert resp.status == 201, await resp.text()
    current = rulesets.current(central.db)
    rs = rules.compile_ruleset(current.doc)
    ([t1], [c1]) = await groups_of(central, "cross", 1)
    till = LocalTill(await enrol(central, "s1"), tmp_path / "till.db")
    try:
        at = utcnow().replace(microsecond=0)
        sold = [sell(till, t1, [line(CHIPS)], at, rs, current.version),
                sell(till, c1, [line(CHIPS)], at, rs, current.version)]
        assert [g.campaign for g in sold[0].offers_granted] == ["cross"]
        assert sold[1].offers_granted == () and sold[1].held_out == ("cross",)
        assert await till.sync.push() == 2
        while campaign_roi.count_pending(central.db):
            pass
        day = at.date().isoformat()
        got = await (await central.get("/api/v1/campaigns/cross/roi", headers=central.admin,
                                       params={"from": day, "to": day})).json()
    finally:
        await till.close()
    # no cost feed: both on revenue; the same basket, so nothing incremental, and no cost
    assert got["treated"]["customers"] == got["control"]["customers"] == 1
    assert got["treated"]["basis"] == got["control"]["basis"] == got["basis"] == "revenue"
    assert got["incremental_margin"]["kopecks"] == 0 and got["cost"]["kopecks"] == 0
    assert got["roi_bp"] is None and got["why_not"] == "the campaign cost nothing in the period"


def test_the_central_gives_a_rule_set_a_secret_salt_and_keeps_it(database) -> None:
    """Control groups keyed by a salt nobody chose would be predictable from the ids: a
    rule set published without one gets a random one, later versions keep it, and one that
    head office names is taken as named."""
    conn = db.connect(database)
    try:
        now = datetime(2026, 11, 23, tzinfo=UTC)

        def salt_of(version: int) -> str:
            row = conn.execute("SELECT doc FROM rulesets WHERE version = ?",
                               (version,)).fetchone()
            return json.loads(row[0])["holdout_salt"]

        first = rulesets.publish(conn, rules.default_ruleset_doc(), "test", now)
        second = rulesets.publish(conn, rules.default_ruleset_doc(), "test", now)
        assert len(salt_of(first)) == 32 and salt_of(second) == salt_of(first)
        named = rulesets.publish(conn, {**rules.default_ruleset_doc(), "holdout_salt": "s-2027"},
                                 "test", now)
        assert salt_of(named) == "s-2027"
        assert salt_of(rulesets.publish(conn, rules.default_ruleset_doc(), "test", now)) == "s-2027"
    finally:
        conn.close()
