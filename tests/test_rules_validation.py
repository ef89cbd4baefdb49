"""Bad rule sets: every kind of mistake is refused with its path and a clear problem."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.rules import (
    RuleSetError,
    compile_ruleset,
    default_ruleset_doc,
    example_ruleset_doc,
    price,
    price_return,
    settle,
)
from tests.test_rules_support import NOON, line, member, receipt, rub


def _doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example_ruleset_doc())
    doc.update(changes)
    return doc


def _campaign(**fields: Any) -> dict[str, Any]:
    c = {"id": "x", "effect": {"type": "percent", "percent": 5}}
    c.update(fields)
    return c


def _errors(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(RuleSetError) as e:
        compile_ruleset(doc)
    assert str(e.value).startswith("invalid rule set: ")
    return dict(e.value.errors)


def _with_campaign(**fields: Any) -> dict[str, str]:
    doc = default_ruleset_doc()
    doc["campaigns"].append(_campaign(**fields))
    return _errors(doc)


def test_good_documents_compile():
    assert compile_ruleset(default_ruleset_doc()).version == 1
    assert compile_ruleset(example_ruleset_doc()).version == 7


def test_not_an_object():
    assert _errors([]) == {"": "must be an object, got a list"}  # type: ignore[arg-type]


def test_version_missing_or_bad():
    doc = default_ruleset_doc()
    del doc["version"]
    assert _errors(doc)["version"] == "is required"
    assert "at least 1" in _errors({**default_ruleset_doc(), "version": 0})["version"]


def test_float_percent_is_refused_with_its_path():
    doc = default_ruleset_doc()
    doc["campaigns"].extend([_campaign(id=f"c{i}") for i in range(3)])
    doc["campaigns"][3]["effect"]["percent"] = 2.5
    errs = _errors(doc)
    assert "not a float" in errs["campaigns[3].effect.percent"]


def test_decimal_string_percent_is_fine():
    doc = default_ruleset_doc()
    doc["campaigns"].append(_campaign(effect={"type": "percent", "percent": "2.5"}))
    compile_ruleset(doc)


def test_percent_out_of_range():
    errs = _with_campaign(effect={"type": "percent", "percent": 101})
    assert errs["campaigns[1].effect.percent"] == "percent must be between 0 and 100, got 101"


def test_too_many_decimals():
    errs = _with_campaign(effect={"type": "percent", "percent": "1.234"})
    assert "at most 2 decimals" in errs["campaigns[1].effect.percent"]


def test_typo_in_a_field_name():
    errs = _with_campaign(effect={"type": "percent", "percnt": 5})
    assert errs["campaigns[1].effect.percnt"].startswith("unknown field")
    assert errs["campaigns[1].effect.percent"] == "is required"


def test_unknown_effect_type():
    errs = _with_campaign(effect={"type": "cashback"})
    assert "must be one of" in errs["campaigns[1].effect.type"]


def test_field_that_does_not_fit_the_effect():
    errs = _with_campaign(effect={"type": "per_receipt", "points": 5, "percent": 3})
    assert errs["campaigns[1].effect.percent"] == "does not apply to a per_receipt effect"


def test_unknown_unit():
    errs = _with_campaign(effect={"type": "percent", "percent": 5, "unit": "stars"})
    assert errs["campaigns[1].effect.unit"] == "unknown unit 'stars'"


def test_unknown_tier():
    doc = _doc()
    doc["campaigns"].append(_campaign(when={"tiers": ["platinum"]}))
    doc["campaigns"].append(_campaign(id="y", effect={"type": "percent", "percent": 1,
                                                     "by_tier": {"diamond": 2}}))
    errs = _errors(doc)
    n = len(example_ruleset_doc()["campaigns"])
    assert errs[f"campaigns[{n}].when.tiers"] == "unknown tier 'platinum'"
    assert errs[f"campaigns[{n + 1}].effect.by_tier"] == "unknown tier 'diamond'"


def test_tier_without_tiers_section():
    errs = _with_campaign(when={"tiers": ["gold"]})
    assert "has no tiers" in errs["campaigns[1].when.tiers"]


def test_duplicate_campaign_ids():
    doc = default_ruleset_doc()
    doc["campaigns"].append(_campaign(id="base"))
    assert "duplicate campaign id 'base'" in _errors(doc)["campaigns[1].id"]


def test_multiplier_must_point_at_a_real_accrual():
    assert "no campaign with id 'nope'" in _with_campaign(
        effect={"type": "multiplier", "factor": 2, "of": "nope"})["campaigns[1].effect.of"]
    assert "itself" in _with_campaign(
        effect={"type": "multiplier", "factor": 2, "of": "x"})["campaigns[1].effect.of"]
    doc = default_ruleset_doc()
    doc["campaigns"] += [
        _campaign(id="d", effect={"type": "discount", "percent": 5}),
        _campaign(id="m", effect={"type": "multiplier", "factor": 2, "of": "d"}),
    ]
    assert "cannot be multiplied" in _errors(doc)["campaigns[2].effect.of"]


def test_multiplier_factor_must_multiply():
    errs = _with_campaign(effect={"type": "multiplier", "factor": 1})
    assert "factor must be between 1.01 and 100" in errs["campaigns[1].effect.factor"]


def test_discount_needs_exactly_one_of_percent_or_amount():
    errs = _with_campaign(effect={"type": "discount", "percent": 5, "amount": 100})
    assert "exactly one of percent" in errs["campaigns[1].effect"]


def test_points_only_for_members():
    errs = _with_campaign(members_only=False)
    assert "points need an account" in errs["campaigns[1].members_only"]


def test_member_conditions_on_a_campaign_for_everyone():
    errs = _with_campaign(members_only=False, when={"segments": ["vip"]},
                          effect={"type": "discount", "percent": 5})
    assert "need a member" in errs["campaigns[1].members_only"]


def test_bad_hours():
    errs = _with_campaign(when={"hours": [{"from": "25:00", "to": "7pm"}]})
    assert "HH:MM" in errs["campaigns[1].when.hours[0].from"]
    assert "HH:MM" in errs["campaigns[1].when.hours[0].to"]
    errs = _with_campaign(when={"hours": [{"from": "10:00", "to": "10:00"}]})
    assert "empty window" in errs["campaigns[1].when.hours[0]"]


def test_bad_weekday_and_channel():
    errs = _with_campaign(when={"weekdays": ["monday"], "channels": ["fax"]})
    assert "unknown day 'monday'" in errs["campaigns[1].when.weekdays"]
    assert "unknown channel 'fax'" in errs["campaigns[1].when.channels"]


def test_dates_need_an_offset_and_an_order():
    errs = _with_campaign(when={"from": "2025-03-01T00:00:00"})
    assert "UTC offset" in errs["campaigns[1].when.from"]
    errs = _with_campaign(when={"from": "2025-03-02T00:00:00+03:00",
                                "to": "2025-03-01T00:00:00+03:00"})
    assert errs["campaigns[1].when.to"] == "must be after from"
    errs = _with_campaign(when={"to": "next tuesday"})
    assert "not an ISO 8601" in errs["campaigns[1].when.to"]


def test_empty_basket_and_empty_requirement():
    errs = _with_campaign(when={"basket": {}, "requires": [{}]})
    assert "min_amount" in errs["campaigns[1].when.basket"]
    assert "requires nothing" in errs["campaigns[1].when.requires[0]"]


def test_negative_amounts():
    errs = _with_campaign(effect={"type": "per_amount", "points": -1, "per": 0})
    assert "at least 1" in errs["campaigns[1].effect.points"]
    assert "at least 1" in errs["campaigns[1].effect.per"]


def test_budget_needs_a_cap():
    errs = _with_campaign(budget={"period": "month"})
    assert errs["campaigns[1].budget"] == "give total or per_customer"
    errs = _with_campaign(budget={"total": 5, "period": "fortnight"})
    assert "must be one of" in errs["campaigns[1].budget.period"]


def test_lifetime_is_days_or_period_not_both():
    doc = default_ruleset_doc()
    doc["programme"]["lifetime"] = {"days": 365, "period": "year"}
    assert "exactly one of days" in _errors(doc)["programme.lifetime"]


def test_bad_return_window():
    doc = default_ruleset_doc()
    doc["programme"]["return_windows"] = [{"match": {"categories": ["electro"]}},
                                          {"channels": ["shop"], "days": 7}]
    errs = _errors(doc)
    assert errs["programme.return_windows[0].days"] == "is required"
    assert "unknown channel 'shop'" in errs["programme.return_windows[1].channels"]


def test_rounding_mode():
    doc = default_ruleset_doc()
    doc["programme"]["rounding"] = "banker"
    assert "must be one of down, half_up, up" in _errors(doc)["programme.rounding"]


def test_unit_worth_must_be_positive():
    doc = default_ruleset_doc()
    doc["programme"]["units"]["points"]["worth"] = {"steps": 0, "kopecks": 100}
    assert "at least 1" in _errors(doc)["programme.units.points.worth.steps"]


def test_tiers_must_rise_and_start_at_zero():
    doc = _doc()
    doc["tiers"]["levels"] = [{"id": "a", "min_spend": 10}, {"id": "b", "min_spend": 5}]
    doc["campaigns"] = doc["campaigns"][:1]
    doc["campaigns"][0]["effect"].pop("by_tier")
    errs = _errors(doc)
    assert errs["tiers.levels[0].min_spend"] == "the first level must start at 0"
    assert "greater than the level before" in errs["tiers.levels[1].min_spend"]


def test_redemption_share_above_100():
    doc = default_ruleset_doc()
    doc["redemption"]["max_receipt_share"] = 150
    assert "between 0 and 100" in _errors(doc)["redemption.max_receipt_share"]


def test_campaign_that_is_not_an_object_or_is_empty():
    doc = default_ruleset_doc()
    doc["campaigns"] += ["base2", {}]
    errs = _errors(doc)
    assert errs["campaigns[1]"] == "must be an object, got the string 'base2'"
    assert errs["campaigns[2].id"] == "is required"
    assert errs["campaigns[2].effect"] == "is required"


def test_missing_sections():
    errs = _errors({"version": 3})
    assert errs["programme"] == "is required"
    assert errs["redemption"] == "is required"


def test_empty_programme_needs_units():
    doc = default_ruleset_doc()
    doc["programme"] = {}
    assert "at least one unit" in _errors(doc)["programme.units"]


def test_selector_values_must_be_strings():
    errs = _with_campaign(lines={"skus": ["a", 5], "categories": "sports"})
    assert "non-empty string" in errs["campaigns[1].lines.skus[1]"]
    assert "list of strings" in errs["campaigns[1].lines.categories"]


def test_all_mistakes_reported_at_once():
    doc = default_ruleset_doc()
    doc["programme"]["rounding"] = "sideways"
    doc["campaigns"].append(_campaign(effect={"type": "percent", "percent": 500}))
    doc["campaigns"].append(_campaign(id="base"))
    with pytest.raises(RuleSetError) as e:
        compile_ruleset(doc)
    paths = [p for p, _ in e.value.errors]
    assert paths == ["programme.rounding", "campaigns[1].effect.percent", "campaigns[2].id"]
    assert "campaigns[1].effect.percent: percent must be between 0 and 100" in str(e.value)


# ---------------------------------------------------------------- any mistake, no crash

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**7) | st.floats(allow_nan=False)
    | st.sampled_from(["", "x", "base", "gold", "17:00", "2.5", "points", "percent", "mon"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "type", "percent", "skus", "x"]), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_damaged_document_is_refused_cleanly_or_prices_cleanly(data):
    doc = example_ruleset_doc()
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = data.draw(_json)
    try:
        rs = compile_ruleset(doc)
    except RuleSetError as e:
        assert e.errors and all(isinstance(p, str) and msg for p, msg in e.errors)
        return
    r = receipt(line("shoe", rub(1000), category="sports/shoes", brand="nike"),
                line("latte", rub(200), category="food/coffee"))
    c = member(balance=1000, tier="silver", segments=frozenset({"sports_lovers"}))
    p = price(rs, r, c, NOON)
    s = settle(rs, r, c, NOON, p.max_redeemable)
    price_return(rs, s, {}, {0: 1000})


def test_a_second_unit_is_refused_naming_the_campaign():
    """Every unit priced must reach the ledger: the ledger keeps one, so a rule set that
    would price a second is refused, rather than priced at the till and dropped."""
    doc = _doc()
    doc["programme"]["units"]["miles"] = {"decimals": 2, "worth": {"steps": 100,
                                                                   "kopecks": 100}}
    doc["campaigns"].append({"id": "miles-partner", "name": "Partner miles", "effect": {
        "type": "percent", "percent": 1, "unit": "miles"}})
    doc["campaigns"].append({"id": "miles-x2", "effect": {
        "type": "multiplier", "factor": 2, "of": "miles-partner"}})
    doc["redemption"]["unit"] = "miles"
    errs = _errors(doc)
    n = len(doc["campaigns"])
    assert "second unit 'miles'" in errs["programme.units.miles"]
    assert "campaign 'miles-partner' (Partner miles) earns 'miles'" in \
        errs[f"campaigns[{n - 2}].effect.unit"]
    assert "campaign 'miles-x2'" in errs[f"campaigns[{n - 1}].effect.unit"]
    assert "spends 'miles'" in errs["redemption.unit"]
    assert all("ledger" in v for k, v in errs.items() if "unit" in k)


def test_every_unit_a_valid_rule_set_prices_reaches_the_ledger_unit():
    """What the till journals and the central credits is the default unit's lots: a rule
    set that compiles earns nothing in any other."""
    rs = compile_ruleset(example_ruleset_doc())
    r = receipt(*(line(f"s{i}", rub(100 * (i + 1)), category=cat) for i, cat in
                  enumerate(["home", "food", "sports", "beauty/perfume", "food/coffee"])))
    s = settle(rs, r, member(tier="gold", segments=frozenset({"sports_lovers"})), NOON)
    assert set(s.earned_by_unit) <= {rs.programme.default_unit}
    assert {lot.unit for lot in s.lots} <= {rs.programme.default_unit}
    assert sum(lot.points for lot in s.lots) == s.earned
