"""Tier windows at the central: up at once, down only when the window turns over."""

from __future__ import annotations

from datetime import UTC, datetime

from central import tiers

MONTHLY = {"window": "calendar_month", "levels": [
    {"id": "base", "min_spend": 0}, {"id": "silver", "min_spend": 500_000},
    {"id": "gold", "min_spend": 2_000_000}]}


def at(day: int, month: int = 3) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


def test_spend_over_the_threshold_upgrades_at_once():
    tier, start, spend = tiers.after_sale(MONTHLY, "base", None, 0, 300_000, at(2))
    assert (tier, start, spend) == ("base", "2026-03-01", 300_000)
    tier, start, spend = tiers.after_sale(MONTHLY, tier, start, spend, 250_000, at(5))
    assert (tier, spend) == ("silver", 550_000)


def test_downgrade_waits_for_the_end_of_the_window():
    # Silver reached in March with 550,000: April begins at silver, with its own spend at 0.
    assert tiers.effective(MONTHLY, "silver", "2026-03-01", 550_000, at(10, 4)) == ("silver", 0)
    # March's spend was below silver: at April's start the tier falls to what it earned.
    assert tiers.effective(MONTHLY, "silver", "2026-03-01", 100_000, at(1, 4)) == ("base", 0)
    # Nothing bought for two months: base.
    assert tiers.effective(MONTHLY, "gold", "2026-03-01", 9_000_000, at(1, 5)) == ("base", 0)
    # Within the window, a gold customer stays gold even after returns bring spend down.
    tier, _, spend = tiers.after_sale(MONTHLY, "gold", "2026-03-01", 2_100_000, -1_000_000,
                                      at(20))
    assert (tier, spend) == ("gold", 1_100_000)


def test_rolling_windows_are_consecutive_blocks_of_days():
    rolling = {"window": "rolling", "window_days": 90, "levels": MONTHLY["levels"]}
    start = tiers.window_start(rolling, at(15))
    assert start is not None
    assert tiers.window_start(rolling, at(16)) == start
    prev = tiers.previous_window_start(rolling, start)
    assert (datetime.fromisoformat(start) - datetime.fromisoformat(prev)).days == 90


def test_without_tiers_nothing_is_tracked():
    assert tiers.after_sale(None, None, None, 0, 100, at(1)) == (None, None, 0)
    assert tiers.effective(None, "vip", None, 0, at(1)) == ("vip", 0)


def test_rollover_marks_customers_changed_and_materialises_the_new_tier(database):
    from central import customers, db, rulesets
    from protocol.card_keys import CardKeyring, new_key
    from protocol.rules import default_ruleset_doc

    keys = CardKeyring([new_key(1, at(1))])

    conn = db.connect(database)
    try:
        doc = default_ruleset_doc()
        doc["tiers"] = MONTHLY
        rulesets.publish(conn, doc, "test", at(1))
        created = [customers.create(conn, keys, at(1), card_number=f"29900000000{i}2")
                   for i in range(3)]
        spends = [600_000, 100_000, 0]
        for c, spend in zip(created, spends, strict=True):
            conn.execute("UPDATE customers SET tier = 'silver', window_start = '2026-03-01',"
                         " window_spend = ? WHERE id = ?", (spend, c["id"]))
        before = conn.execute("SELECT MAX(change_seq) FROM customers").fetchone()[0]
        assert customers.roll_tier_windows(conn, at(2)) == 0  # March is not over
        assert customers.roll_tier_windows(conn, at(1, 4)) == 3
        rows = conn.execute("SELECT tier, window_start, window_spend, change_seq FROM customers"
                            " ORDER BY window_spend DESC, id").fetchall()
        tiers_now = sorted(r["tier"] for r in rows)
        assert tiers_now == ["base", "base", "silver"]
        assert all(r["window_start"] == "2026-04-01" and r["window_spend"] == 0 for r in rows)
        assert all(r["change_seq"] > before for r in rows)
        assert customers.roll_tier_windows(conn, at(2, 4)) == 0  # done once
    finally:
        conn.close()
