"""Rule-set documents to start from: the default programme and a fuller example.

default_ruleset_doc(): one unit, "points", worth 1 rouble each (whole points, rounded down);
5 % of what is paid with money comes back as points; tobacco, alcohol and gift cards are
outside the programme (by category and by flag); up to 50 % of a receipt may be paid with
points; points stay pending through a 14-day return window and then live 365 days.
"""

from __future__ import annotations

from typing import Any


def default_ruleset_doc() -> dict[str, Any]:
    return {
        "version": 1,
        "programme": {
            "units": {"points": {"decimals": 0, "worth": {"steps": 1, "kopecks": 100}}},
            "default_unit": "points",
            "rounding": "down",
            "return_window_days": 14,
            "lifetime": {"days": 365},
            "excluded": {
                "categories": ["tobacco", "alcohol", "gift_cards"],
                "flags": ["tobacco", "alcohol", "gift_card"],
            },
            "earn_on_redeemed": False,
        },
        "redemption": {
            "unit": "points",
            "max_receipt_share": 50,
            "lines": [{"match": {}, "max_line_share": 100}],
        },
        "campaigns": [
            {"id": "base", "name": "5% back in points", "priority": 0,
             "effect": {"type": "percent", "percent": 5}},
        ],
    }


def example_ruleset_doc() -> dict[str, Any]:
    """A programme with most mechanics in use; the tests' reference rule set.

    Tiers by calendar-month spend: base 3 %, silver (5,000.00 a month) 5 %, gold (20,000.00)
    7 %. One unit, points: a second (a partner's miles) is refused until the ledger keeps it.
    """
    msk = "+03:00"
    return {
        "version": 7,
        "programme": {
            "units": {
                "points": {"decimals": 0, "worth": {"steps": 1, "kopecks": 100}},
            },
            "default_unit": "points",
            "rounding": "down",
            "return_window_days": 14,
            "return_windows": [
                {"match": {"categories": ["electro"]}, "days": 30},
                {"channels": ["web", "app"], "days": 21},
            ],
            "lifetime": {"days": 365},
            "excluded": {
                "categories": ["tobacco", "alcohol", "gift_cards"],
                "flags": ["tobacco", "alcohol", "gift_card"],
            },
        },
        "tiers": {
            "window": "calendar_month",
            "levels": [
                {"id": "base", "min_spend": 0},
                {"id": "silver", "min_spend": 500_000},
                {"id": "gold", "min_spend": 2_000_000},
            ],
        },
        "redemption": {
            "unit": "points",
            "max_receipt_share": 50,
            "min_balance": 100,
            "lines": [
                {"match": {"flags": ["members_only"]}, "max_line_share": 100},
                {"match": {"categories": ["promo"]}, "max_line_share": 0},
                {"match": {}, "max_line_share": 90},
            ],
        },
        "campaigns": [
            {"id": "base", "name": "Points on every purchase", "priority": 0,
             "effect": {"type": "percent", "percent": 3,
                        "by_tier": {"silver": 5, "gold": 7}}},
            {"id": "sports-x2", "name": "Double points on sports", "priority": 50,
             "when": {"segments": ["sports_lovers"]},
             "lines": {"categories": ["sports"]},
             "effect": {"type": "multiplier", "factor": 2, "of": "base"}},
            {"id": "happy-hour", "name": "Happy hour: +10% points", "priority": 40,
             "when": {"hours": [{"from": "17:00", "to": "19:00"}],
                      "weekdays": ["mon", "tue", "wed", "thu", "fri"]},
             "lines": {"categories": ["food"]},
             "effect": {"type": "percent", "percent": 10}},
            {"id": "big-basket", "name": "500 points for receipts over 5,000.00", "priority": 30,
             "when": {"basket": {"min_amount": 500_000}},
             "effect": {"type": "per_receipt", "points": 500}},
            {"id": "coffee-10", "name": "10% off coffee", "priority": 90, "members_only": False,
             "group": "coffee",
             "lines": {"categories": ["food/coffee"]},
             "effect": {"type": "discount", "percent": 10}},
            {"id": "coffee-pts", "name": "20% back in points on coffee", "priority": 80,
             "group": "coffee",
             "lines": {"categories": ["food/coffee"]},
             "effect": {"type": "percent", "percent": 20}},
            {"id": "nike-per-100", "name": "10 points per 100.00 of Nike", "priority": 20,
             "lines": {"brands": ["nike"]},
             "effect": {"type": "per_amount", "points": 10, "per": 10_000}},
            {"id": "welcome", "name": "Welcome: 200 points on the first purchase",
             "priority": 10, "when": {"first_purchase": True},
             "effect": {"type": "per_receipt", "points": 200}, "lifetime_days": 30},
            {"id": "birthday", "name": "Birthday week: 3x points", "priority": 60,
             "group": "personal",
             "when": {"birthday_within_days": 3},
             "effect": {"type": "multiplier", "factor": 3, "of": "base"}},
            {"id": "cosmetics-to-perfume", "name": "Cosmetics buyers: perfume offer next time",
             "priority": 5, "lines": {"categories": ["beauty/cosmetics"]},
             "effect": {"type": "next_purchase_offer", "offer": "perfume-x3", "valid_days": 30}},
            {"id": "perfume-x3", "name": "Perfume: triple points (personal offer)",
             "priority": 55, "group": "personal",
             "when": {"offers": ["perfume-x3"]}, "lines": {"categories": ["beauty/perfume"]},
             "effect": {"type": "multiplier", "factor": 3, "of": "base"}},
            {"id": "chips-and-beer-free", "name": "Chips with juice: 50 points", "priority": 15,
             "when": {"requires": [{"skus": ["chips-1"]}, {"skus": ["juice-1"]}]},
             "effect": {"type": "per_receipt", "points": 50}},
            {"id": "batteries-unit", "name": "5 points per pack of batteries", "priority": 25,
             "lines": {"skus": ["batt-aa"]},
             "effect": {"type": "per_unit", "points": 5}},
            {"id": "clearance-stop", "name": "Clearance: 30% off, no points", "priority": 100,
             "members_only": False, "stop": True,
             "lines": {"flags": ["clearance"]},
             "effect": {"type": "discount", "percent": 30}},
            {"id": "march-8", "name": "8 March: 15% off flowers", "priority": 70,
             "members_only": False,
             "when": {"from": f"2025-03-07T00:00:00{msk}", "to": f"2025-03-09T00:00:00{msk}"},
             "lines": {"categories": ["flowers"]},
             "effect": {"type": "discount", "percent": 15}},
            {"id": "gold-lounge", "name": "Gold: 300.00 off receipts over 10,000.00",
             "priority": 65, "when": {"tiers": ["gold"], "basket": {"min_amount": 1_000_000}},
             "effect": {"type": "discount", "amount": 30_000}},
            {"id": "app-bonus", "name": "App orders: +2%", "priority": 3,
             "when": {"channels": ["app"]},
             "effect": {"type": "percent", "percent": 2},
             "budget": {"total": 1_000_000, "per_customer": 1000, "period": "month"}},
        ],
    }
