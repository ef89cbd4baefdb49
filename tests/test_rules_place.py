"""The store's clock and place in the rules engine (protocol.rules.place, protocol.lots):
any instant is judged on the store's wall clock, in its region and channel, and a
customer's calendar periods in the programme's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from central import repricing, tiers
from protocol import lots
from protocol.rules import (
    RuleSetError,
    compile_ruleset,
    local_time,
    place_of,
    price,
    settle,
    window_end,
)
from tests.test_rules_support import doc_with, line, member, receipt, rub

MOSCOW = ZoneInfo("Europe/Moscow")
EVENING = {"id": "evening", "priority": 10,
           "when": {"hours": [{"from": "17:00", "to": "19:00"}], "regions": ["moscow"]},
           "effect": {"type": "per_receipt", "points": 100}}


def moscow_rules(*campaigns: dict, **programme) -> object:
    doc = doc_with(*campaigns, **programme)
    doc["stores"] = {"s1": {"time_zone": "Europe/Moscow", "region": "moscow"},
                     "web": {"channel": "web"}}
    return compile_ruleset(doc)


def earned(rs, when: datetime, store: str = "s1", region: str = "") -> int:
    r = receipt(line("milk", rub(1000)), store=store, region=region)
    return price(rs, r, member(), when).earned


def test_an_instant_is_read_on_the_stores_wall_clock_whatever_zone_it_comes_in():
    rs = moscow_rules(EVENING)
    at_1730_moscow = datetime(2027, 3, 1, 14, 30, tzinfo=UTC)
    assert local_time(rs, "s1", at_1730_moscow) == datetime(2027, 3, 1, 17, 30, tzinfo=MOSCOW)
    assert earned(rs, at_1730_moscow) == 50 + 100
    assert earned(rs, at_1730_moscow.astimezone(ZoneInfo("Asia/Tokyo"))) == 50 + 100
    assert earned(rs, datetime(2027, 3, 1, 17, 30, tzinfo=UTC)) == 50  # 20:30 in Moscow


def test_a_region_campaign_fires_at_a_store_of_the_region_whatever_the_till_says():
    rs = moscow_rules(EVENING)
    at = datetime(2027, 3, 1, 14, 30, tzinfo=UTC)
    assert earned(rs, at, region="") == 150
    assert earned(rs, at, region="north") == 150  # the rule set's word on the store
    # A store the rule set does not place: its receipt's own region, the programme's clock.
    assert earned(rs, at, store="s9", region="") == 50


def test_store_zone_overrides_the_programme_zone():
    doc = doc_with(time_zone="Asia/Vladivostok")
    doc["stores"] = {"s1": {"time_zone": "Europe/Moscow"}}
    rs = compile_ruleset(doc)
    assert place_of(rs, "s1").time_zone == MOSCOW
    assert place_of(rs, "s2").time_zone == ZoneInfo("Asia/Vladivostok")
    assert place_of(compile_ruleset(doc_with()), "s1").time_zone is None


def test_weekday_and_birthday_turn_at_the_stores_midnight():
    birthday = {"id": "bday", "priority": 10, "when": {"birthday_within_days": 0},
                "effect": {"type": "per_receipt", "points": 500}}
    rs = moscow_rules(birthday)
    # 22:00 UTC on 6 March is 01:00 on 7 March in Moscow: the birthday, there.
    r = receipt(line("milk", rub(1000)))
    who = member(birthday=date(1990, 3, 7))
    assert price(rs, r, who, datetime(2027, 3, 6, 22, 0, tzinfo=UTC)).earned == 550
    assert price(rs, r, who, datetime(2027, 3, 6, 20, 0, tzinfo=UTC)).earned == 50


def test_points_activate_at_the_stores_midnight_after_the_window():
    rs = moscow_rules()
    # 22:30 UTC on 1 March is 01:30 on 2 March in Moscow: day 0 is the 2nd.
    s = settle(rs, receipt(line("milk", rub(1000))), member(), datetime(2027, 3, 1, 22, 30,
                                                                        tzinfo=UTC))
    (lot,) = s.lots
    assert lot.activates_at == datetime(2027, 3, 17, tzinfo=MOSCOW)
    assert lot.activates_at.astimezone(UTC) == datetime(2027, 3, 16, 21, 0, tzinfo=UTC)


def test_lot_dates_count_whole_days_and_survive_dst():
    berlin = ZoneInfo("Europe/Berlin")
    bought = datetime(2027, 3, 20, 18, 0, tzinfo=berlin)  # DST starts on 28 March
    act, exp = lots.lot_dates(bought, 14, lots.Lifetime(days=30), berlin, UTC)
    assert act == datetime(2027, 4, 4, tzinfo=berlin) and act.utcoffset() == timedelta(hours=2)
    assert exp == datetime(2027, 5, 4, tzinfo=berlin)
    assert lots.lot_dates(bought, 0, lots.Lifetime(), berlin, UTC) == (bought, None)
    # Month-end expiry is the programme's month, not the store's.
    late_march = datetime(2027, 3, 31, 21, 30, tzinfo=UTC)  # 00:30 on 1 April in Moscow
    month = lots.Lifetime(period="month")
    assert lots.lot_dates(late_march, 0, month, UTC, MOSCOW)[1] == \
        datetime(2027, 5, 1, tzinfo=MOSCOW)
    assert lots.lot_dates(late_march, 0, month, MOSCOW, UTC)[1] == datetime(2027, 4, 1,
                                                                            tzinfo=UTC)


def test_tier_windows_are_the_programmes_months():
    doc = doc_with(time_zone="Europe/Moscow")
    doc["tiers"] = {"window": "calendar_month", "levels": [{"id": "base", "min_spend": 0}]}
    rs = compile_ruleset(doc)
    # 22:00 UTC on 31 March is already April in Moscow: the window ends with April.
    assert window_end(rs, datetime(2027, 3, 31, 22, 0, tzinfo=UTC)) == \
        datetime(2027, 5, 1, tzinfo=MOSCOW)
    zone_tiers = {"window": "calendar_month", "levels": [], "time_zone": "Europe/Moscow"}
    assert tiers.window_start(zone_tiers, datetime(2027, 3, 31, 22, 0, tzinfo=UTC)) == \
        "2027-04-01"
    assert tiers.window_start({**zone_tiers, "time_zone": None},
                              datetime(2027, 3, 31, 22, 0, tzinfo=UTC)) == "2027-03-01"


def test_the_central_reprices_on_the_stores_clock_too():
    rs = moscow_rules(EVENING)
    at = datetime(2027, 3, 1, 14, 30, tzinfo=UTC)  # 17:30 in Moscow
    lines = [line("milk", rub(1000))]
    till = settle(rs, receipt(*lines, region=""), member(), at)
    entry = {"kind": "sale", "ruleset_version": rs.version, "store": "s1",
             "at": at.isoformat(), "customer_id": "cust-1", "earned": till.earned,
             "redeemed": 0, "detail": {"settlement": till.to_dict(),
                                       "lines": [ln.to_dict() for ln in lines],
                                       "customer": member().to_dict()}}
    assert till.earned == 150
    assert repricing.check_entry(entry, rs, member(), at).ok


@pytest.mark.parametrize(("where", "value", "path"), [
    ("programme", "Mars/Olympus", "programme.time_zone"),
    ("programme", "", "programme.time_zone"),
    ("programme", 3, "programme.time_zone"),
    ("store", "Europe/Moskva", "stores.s1.time_zone"),
    ("store", "../../etc/passwd", "stores.s1.time_zone"),
])
def test_a_wrong_zone_is_refused_naming_the_field(where, value, path):
    doc = doc_with()
    if where == "programme":
        doc["programme"]["time_zone"] = value
    else:
        doc["stores"] = {"s1": {"time_zone": value}}
    with pytest.raises(RuleSetError) as e:
        compile_ruleset(doc)
    assert path in str(e.value)


def test_a_wrong_store_entry_is_refused_naming_the_field():
    doc = doc_with()
    doc["stores"] = {"s1": {"channel": "fax", "region": 5, "colour": "red"}}
    with pytest.raises(RuleSetError) as e:
        compile_ruleset(doc)
    text = str(e.value)
    assert "stores.s1.channel" in text and "stores.s1.region" in text and "colour" in text
    doc["stores"] = ["s1"]
    with pytest.raises(RuleSetError, match="stores"):
        compile_ruleset(doc)


async def test_head_office_is_told_which_field_holds_a_wrong_zone(central):
    doc = doc_with()
    doc["stores"] = {"store-42": {"time_zone": "Moscow", "region": "moscow"}}
    resp = await central.put("/api/v1/ruleset", json={"doc": doc, "actor": "test"},
                             headers=central.admin)
    assert resp.status == 422
    assert "stores.store-42.time_zone" in (await resp.json())["error"]
    doc["stores"]["store-42"]["time_zone"] = "Europe/Moscow"
    resp = await central.put("/api/v1/ruleset", json={"doc": doc, "actor": "test"},
                             headers=central.admin)
    assert resp.status == 201


def test_budget_periods_are_the_programmes_calendar(database):
    from central import campaign_budgets, db, rulesets
    from protocol.budget_periods import period_key

    new_year_moscow = datetime(2026, 12, 31, 21, 30, tzinfo=UTC)  # 00:30 on 1 Jan in Moscow
    assert period_key("month", new_year_moscow) == "month:2026-12"
    assert period_key("month", new_year_moscow, MOSCOW) == "month:2027-01"
    assert period_key("year", new_year_moscow, MOSCOW) == "year:2027"
    conn = db.connect(database)
    try:
        doc = doc_with({"id": "promo", "priority": 5,
                        "effect": {"type": "per_receipt", "points": 60},
                        "budget": {"per_customer": 100, "period": "month"}},
                       time_zone="Europe/Moscow")
        rulesets.publish(conn, doc, "test", new_year_moscow)
        (budget,) = campaign_budgets.budgets(conn).values()
        assert budget.zone == MOSCOW
        allowances = campaign_budgets.till_allowances(conn, "t0", {"promo": budget},
                                                      new_year_moscow)
        assert allowances["promo"]["period_key"] == "month:2027-01"
    finally:
        conn.close()


def test_the_daily_card_cap_counts_the_stores_day():
    from agent.offline_caps import day_bounds

    late = datetime(2027, 3, 1, 22, 30, tzinfo=UTC)  # 01:30 on 2 March in Moscow
    assert day_bounds(late, MOSCOW) == ("2027-03-01T21:00:00+00:00",
                                        "2027-03-02T21:00:00+00:00")
    assert day_bounds(late) == ("2027-03-01", "2027-03-02")  # no zone: UTC days, as before
    # Journal times are UTC ISO instants: 22:00 UTC is the Moscow day of 2 March, not 1 March.
    start, end = day_bounds(late, MOSCOW)
    assert start <= "2027-03-01T22:00:00+00:00" < end
