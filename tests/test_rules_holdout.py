"""Control groups (protocol.rules.holdout): who is held out, and that every pricing agrees.

The share held out converges to the declared share, a customer's assignment never moves,
a held-out customer gets nothing from the campaign and the settlement says it held them out,
anonymous receipts are never held out, and the central's re-pricing (the same engine, from
the same document) agrees with the till on every receipt.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.repricing import check_entry
from protocol.rules import (
    Customer,
    Receipt,
    ReceiptLine,
    RuleSetError,
    Settlement,
    compile_ruleset,
    default_ruleset_doc,
    settle,
)
from protocol.rules import model as rules_model
from protocol.rules.holdout import held_out, holdout_point

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
IDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
              max_size=20)


def _doc(share: object = 50, salt: str = "s1") -> dict:
    doc = default_ruleset_doc()
    doc["holdout_salt"] = salt
    doc["campaigns"].append({"id": "double", "name": "10 % on shoes", "holdout": share,
                             "lines": {"categories": ["shoes"]},
                             "effect": {"type": "percent", "percent": 10}})
    doc["campaigns"].append({"id": "sale", "name": "5 % off shoes", "holdout": share,
                             "members_only": False, "lines": {"categories": ["shoes"]},
                             "effect": {"type": "discount", "percent": 5}})
    return doc


def _receipt(amount: int) -> Receipt:
    return Receipt(lines=(
        ReceiptLine(sku="shoe", qty=1000, price=amount, amount=amount, category="shoes"),
        ReceiptLine(sku="bread", qty=2000, price=5000, amount=10000, category="food"),
    ), store="s-1")


@SETTINGS
@given(share=st.integers(1, 9999), salt=IDS, campaign=IDS)
def test_the_share_held_out_converges_to_the_declared_share(share: int, salt: str,
                                                             campaign: str) -> None:
    n = 5000
    held = sum(held_out(salt, campaign, f"cust-{i}", share) for i in range(n))
    # sd of the share is at most 0.5/sqrt(5000) = 0.71 %; 4 % is over 5.6 sd
    assert abs(held * 10_000 // n - share) <= 400


@SETTINGS
@given(share=st.integers(1, 9999), salt=IDS, campaign=IDS, customer=IDS)
def test_assignment_is_stable_and_a_threshold(share: int, salt: str, campaign: str,
                                              customer: str) -> None:
    first = held_out(salt, campaign, customer, share)
    assert held_out(salt, campaign, customer, share) == first
    assert first == (holdout_point(salt, campaign, customer) < share)
    # a larger share holds out everyone a smaller one did
    if first:
        assert held_out(salt, campaign, customer, min(9999, share + 1))
    assert not held_out(salt, campaign, None, share)  # no customer, never held out
    assert not held_out(salt, campaign, "", share)


def test_parts_are_not_confused() -> None:
    points = {holdout_point(s, c, u) for s, c, u in [("ab", "c", "d"), ("a", "bc", "d"),
                                                     ("a", "b", "cd")]}
    assert len(points) == 3


@SETTINGS
@given(customer=IDS, amount=st.integers(10_000, 10_000_000), salt=IDS,
       share=st.integers(1, 9999))
def test_till_and_central_agree_on_who_is_held_out(customer: str, amount: int, salt: str,
                                                   share: int) -> None:
    doc = _doc(f"{share // 100}.{share % 100:02d}", salt)
    till_rules = compile_ruleset(doc)
    central_rules = compile_ruleset(copy.deepcopy(doc))  # the central compiles its own copy
    who = Customer(id=customer)
    s = settle(till_rules, _receipt(amount), who, NOW)
    # each campaign draws its own group, by its own id
    out = {c for c in ("double", "sale") if held_out(salt, c, customer, share)}
    assert set(s.held_out) == out
    given_by = {e.campaign for ln in s.lines for e in ln.earned} | {
        d.campaign for ln in s.lines for d in ln.discounts}
    assert given_by == {"base", "double", "sale"} - out  # held out: nothing from it
    # the journal round trip keeps it, and the central's re-pricing agrees
    assert Settlement.from_dict(s.to_dict()).held_out == s.held_out
    entry = {"ruleset_version": 1, "store": "s-1", "redeemed": 0, "earned": s.earned,
             "detail": {"settlement": s.to_dict(), "lines": [
                 {"sku": ln.sku, "qty": ln.qty, "price": p, "category": c}
                 for ln, p, c in zip(s.lines, (amount, 5000), ("shoes", "food"), strict=True)]}}
    verdict = check_entry(entry, central_rules, who, NOW)
    assert verdict.ok, verdict.message
    again = settle(central_rules, _receipt(amount), who, NOW)
    assert again.held_out == s.held_out and again.earned == s.earned


@SETTINGS
@given(amount=st.integers(100, 10_000_000))
def test_anonymous_receipts_are_never_held_out(amount: int) -> None:
    rules = compile_ruleset(_doc("99.99"))
    s = settle(rules, _receipt(amount), None, NOW)
    assert s.held_out == ()
    assert any(d.campaign == "sale" for ln in s.lines for d in ln.discounts)
    assert "held_out" not in s.to_dict()


@pytest.mark.parametrize("share, problem", [
    (0, "between 0.01 and 99.99"), (100, "between 0.01 and 99.99"),
    (-5, "between 0.01 and 99.99"), ("12.345", "at most 2 decimals"),
    (12.5, "not a float"), ("half", "decimal string"),
])
def test_a_bad_holdout_is_refused_naming_the_field(share: object, problem: str) -> None:
    with pytest.raises(RuleSetError) as e:
        compile_ruleset(_doc(share))
    assert any(path == "campaigns[1].holdout" and problem in why for path, why in e.value.errors)


def test_a_bad_salt_is_refused_naming_the_field() -> None:
    doc = _doc()
    doc["holdout_salt"] = 7
    with pytest.raises(RuleSetError) as e:
        compile_ruleset(doc)
    assert [p for p, _ in e.value.errors] == ["holdout_salt"]


def test_a_holdout_in_percent_with_decimals_is_basis_points() -> None:
    rules = compile_ruleset(_doc("12.5"))
    assert rules.campaigns[rules.by_id["double"]].holdout_bp == 1250


def _grouped(holdout_percent: int, rival_percent: int) -> rules_model.RuleSet:
    doc = default_ruleset_doc()
    doc["holdout_salt"] = "g"
    doc["campaigns"] += [
        {"id": "held", "name": "held", "group": "g", "holdout": 99,
         "effect": {"type": "percent", "percent": holdout_percent}},
        {"id": "rival", "name": "rival", "group": "g",
         "effect": {"type": "percent", "percent": rival_percent}},
    ]
    return compile_ruleset(doc)


def test_a_held_out_campaign_counts_only_where_it_would_have_won_its_group() -> None:
    who = next(Customer(id=f"c{i}") for i in range(100) if held_out("g", "held", f"c{i}", 9900))
    receipt = _receipt(100_000)
    # It would have won: held out, the customer gets the group's runner-up instead.
    s = settle(_grouped(20, 10), receipt, who, NOW)
    assert s.held_out == ("held",)
    assert {e.campaign for ln in s.lines for e in ln.earned} == {"base", "rival"}
    # It would have lost to the rival anyway: no control receipt, as no treated one.
    s = settle(_grouped(5, 10), receipt, who, NOW)
    assert s.held_out == ()
    assert {e.campaign for ln in s.lines for e in ln.earned} == {"base", "rival"}
