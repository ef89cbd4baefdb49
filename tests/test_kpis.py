"""KPIs from receipts that went through real ingest, counted by the follower, read through
the head-office API; every expected figure is worked out by hand beside it."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from central import customers, kpi_counts, rulesets
from central.clock import utcnow
from protocol.rules import default_ruleset_doc
from tests.sync_fixtures import LocalTill, enrol, live_central

__all__ = ["live_central"]


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


async def kpis(central, **query) -> dict:
    resp = await central.get("/api/v1/kpis", params=query, headers=central.admin)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def count_all(conn, limit: int = kpi_counts.CHUNK) -> None:
    while kpi_counts.count_pending(conn, limit=limit):
        pass


async def store_with_a_week(central, tmp_path):
    """Moscow (UTC+3, region "central") and Vladivostok (UTC+10, region "east")."""
    doc = default_ruleset_doc()
    doc["stores"] = {"msk": {"time_zone": "Europe/Moscow", "region": "central"},
                     "vvo": {"time_zone": "Asia/Vladivostok", "region": "east"}}
    version = rulesets.publish(central.db, doc, "test", utcnow())
    msk = LocalTill(await enrol(central, "msk"), tmp_path / "msk.db")
    vvo = LocalTill(await enrol(central, "vvo"), tmp_path / "vvo.db")
    keys = central.secrets.card_keys
    ann = customers.create(central.db, keys, utcnow(), card_number="2990000000019",
                           segments=["students"])["id"]
    bob = customers.create(central.db, keys, utcnow(), card_number="2990000000026")["id"]
    # Vladivostok, 01:30 on 3 November there (15:30 UTC on the 2nd): Ann, 120.00.
    vvo.sell(ann, at=utc(2, 15, 30), total=12000, ruleset_version=version)
    # Moscow, 23:30 on 2 November: Ann, 100.00; and someone without a card, 50.00.
    msk.sell(ann, at=utc(2, 20, 30), total=10000, ruleset_version=version)
    other = msk.sell(None, at=utc(2, 20, 40), total=5000, ruleset_version=version)
    # Moscow, 00:30 on 3 November (21:30 UTC on the 2nd): Bob, 80.00.
    msk.sell(bob, at=utc(2, 21, 30), total=8000, ruleset_version=version)
    # 5 November, Moscow: the card-less customer brings back 20.00 of goods.
    msk.take_back(other, at=utc(5, 9), total=2000)
    assert await msk.sync.push() == 4 and await vvo.sync.push() == 1
    return msk, vvo


async def test_kpis_count_each_receipt_on_its_stores_day_and_compare_members_with_others(
        live_central, tmp_path):
    msk, vvo = await store_with_a_week(live_central, tmp_path)
    try:
        count_all(live_central.db, limit=1)  # page by page: the same as all at once

        # 2 November in Moscow: Ann's 100.00 and the card-less 50.00.
        day2 = await kpis(live_central, **{"from": "2026-11-02", "to": "2026-11-02",
                                           "region": "central"})
        assert day2["period"]["stores"] == ["msk"]
        assert day2["receipts"]["members"]["sales"] == 1
        assert day2["receipts"]["others"] == {"sales": 1, "revenue": 5000, "returns": 0,
                                              "returned": 0}
        assert day2["participation"]["receipts_bp"] == 5000  # 1 of 2
        assert day2["participation"]["revenue_bp"] == 6666  # 10000 of 15000, rounded down
        assert day2["average_receipt"] == {**day2["average_receipt"],
                                           "members_kopecks": 10000, "others_kopecks": 5000}

        # 3 November, every store: Bob in Moscow after midnight, Ann in Vladivostok.
        day3 = await kpis(live_central, **{"from": "2026-11-03", "to": "2026-11-03"})
        assert day3["receipts"]["members"]["sales"] == 2
        assert day3["receipts"]["members"]["revenue"] == 20000
        assert day3["receipts"]["others"]["sales"] == 0
        assert day3["members"]["buying"] == 2

        # The month: three member sales by two members, one return counted on its own day.
        month = await kpis(live_central, **{"from": "2026-11-01", "to": "2026-11-30"})
        assert month["receipts"]["members"]["sales"] == 3
        assert month["receipts"]["others"]["returns"] == 1
        assert month["receipts"]["others"]["returned"] == 2000
        assert month["frequency"]["receipts_per_member_milli"] == 1500  # 3 / 2
        assert month["average_receipt"]["members_kopecks"] == 10000  # 30000 / 3
        assert month["churn"]["previous_buying"] == 0 and month["churn"]["churn_bp"] is None
        # Both joined (first purchase) in November: one cohort of two, all buying then.
        assert month["cohorts"]["by_cohort"] == {"2026-11": {
            "size": 2, "months": {"2026-11": {"buying": 2, "retention_bp": 10000}}}}
        assert month["ltv"]["members"] == 2 and month["ltv"]["per_member_kopecks"] == 15000

        # A segment: Ann only (a student), in both stores.
        students = await kpis(live_central, **{"from": "2026-11-01", "to": "2026-11-30",
                                               "segment": "students"})
        assert students["receipts"]["members"]["sales"] == 2
        assert students["receipts"]["members"]["revenue"] == 22000
        assert students["members"]["buying"] == 1
        # Ann's share of the month's sales: 2 of 4 receipts, 22000 of 35000 kopecks.
        assert students["participation"] == {**students["participation"],
                                              "receipts_bp": 5000, "revenue_bp": 6285}

        # December: nobody bought; November's two buyers have churned.
        december = await kpis(live_central, **{"from": "2026-12-01", "to": "2026-12-30"})
        assert december["churn"] == {**december["churn"], "previous_buying": 2,
                                     "churned": 2, "churn_bp": 10000}
        assert december["participation"]["receipts_bp"] is None  # no receipts: no share
    finally:
        await msk.close()
        await vvo.close()


async def test_a_return_that_reaches_the_central_before_its_sale_is_counted_with_it(
        live_central, tmp_path):
    # Returns anywhere: the return's till may sync before the selling till does.
    a = LocalTill(await enrol(live_central, "s1"), tmp_path / "a.db")
    b = LocalTill(await enrol(live_central, "s1"), tmp_path / "b.db")
    try:
        ann = customers.create(live_central.db, live_central.secrets.card_keys, utcnow(),
                               card_number="2990000000019")["id"]
        sale = a.sell(ann, at=utc(2, 10), total=10000)
        b.take_back(sale, at=utc(3, 10), total=4000)
        assert await b.sync.push() == 1
        count_all(live_central.db)
        assert await a.sync.push() == 1
        count_all(live_central.db)
        body = await kpis(live_central, **{"from": "2026-11-01", "to": "2026-11-30"})
        assert body["ltv"] == {**body["ltv"], "members": 1, "revenue": 6000}
        assert body["cohorts"]["by_cohort"]["2026-11"]["size"] == 1
        assert body["receipts"]["members"] == {"sales": 1, "revenue": 10000, "returns": 1,
                                               "returned": 4000}
    finally:
        await a.close()
        await b.close()


async def test_liability_is_outstanding_points_at_worth_less_observed_breakage(
        live_central, tmp_path):
    keys = live_central.secrets.card_keys
    ann = customers.create(live_central.db, keys, utcnow(),
                           card_number="2990000000019")["id"]
    customers.adjust(live_central.db, ann, 300, "test", "welcome back", utcnow())
    figures = kpi_counts.snapshot_points(live_central.db, utcnow())
    assert figures == {"outstanding": 300, "expired": 0, "redeemed": 0}
    body = await kpis(live_central, **{"from": "2026-11-01", "to": "2026-11-30"})
    liability = body["liability"]
    # The default programme: a point is worth 1.00; nothing expired yet, so no breakage.
    assert liability["outstanding"] == 300 and liability["worth"] == {"steps": 1,
                                                                      "kopecks": 100}
    assert liability["breakage_bp"] is None and liability["kopecks"] == 30000


async def test_kpis_in_csv_carry_each_figure_with_its_definition(live_central, tmp_path):
    msk, vvo = await store_with_a_week(live_central, tmp_path)
    try:
        count_all(live_central.db)
        resp = await live_central.get(
            "/api/v1/kpis", params={"from": "2026-11-01", "to": "2026-11-30", "format": "csv"},
            headers=live_central.admin)
        assert resp.status == 200 and resp.content_type == "text/csv"
        rows = {r["figure"]: r for r in csv.DictReader(io.StringIO(await resp.text()))}
        assert rows["receipts.members.sales"]["value"] == "3"
        assert "basis points" in rows["participation.receipts_bp"]["definition"]
    finally:
        await msk.close()
        await vvo.close()


async def test_kpi_queries_that_cannot_be_answered_say_which_field(live_central):
    async def refused(query: dict, status: int = 400, headers=None) -> str:
        resp = await live_central.get("/api/v1/kpis", params=query,
                                      headers=live_central.admin if headers is None
                                      else headers)
        assert resp.status == status, await resp.text()
        return await resp.text()

    month = {"from": "2026-11-01", "to": "2026-11-30"}
    assert "'from'" in await refused({"to": "2026-11-30"})
    assert "'to'" in await refused({"from": "2026-11-01", "to": "30.11.2026"})
    assert "before" in await refused({"from": "2026-11-30", "to": "2026-11-01"})
    # Near the calendar's ends the period before (churn) would overflow: was a 500
    assert "'from' must be a day from 1970" in await refused({"from": "0001-01-01",
                                                             "to": "0002-01-01"})
    assert "'to' must be a day from" in await refused({"from": "9998-01-01",
                                                      "to": "9999-12-31"})
    assert "region" in await refused({**month, "region": "atlantis"})
    assert "'store' or 'region'" in await refused({**month, "store": "a", "region": "b"})
    assert "active_days" in await refused({**month, "active_days": "0"})
    assert "format" in await refused({**month, "format": "xml"})
    await refused(month, 401, headers={})
