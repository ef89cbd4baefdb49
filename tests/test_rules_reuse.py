"""Compiling a new rule-set version from its encoded campaigns, reusing those an earlier
version carried in the same bytes (protocol.rules.compile_encoded): the same rule set as
compiling the whole document, for a fraction of the work."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.rules import customer, receipt, ruleset_doc
from protocol.rules import RuleSetError, compile_encoded, compile_ruleset, price
from protocol.rules import compiler as compiler_module
from protocol.wire import pack, unpack, unpack_in_steps
from tests.test_rules_support import NOON

CAMPAIGNS = ("doc", "campaigns")
NOW = NOON.replace(month=6)  # bench.rules' campaigns run through 2025


def encoded(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the agent decodes a signed body: campaigns left as their bytes."""
    body = pack({"version": 1, "activates_at": "2025-01-01T00:00:00+00:00", "doc": doc})
    return unpack_in_steps(body, encoded=CAMPAIGNS)["doc"]


def priced(rs: Any) -> dict[str, Any]:
    return price(rs, receipt(), customer(60), NOW).to_dict()


def test_unchanged_campaigns_are_reused_and_the_rest_compiled(monkeypatch) -> None:
    doc = ruleset_doc(60, seed=3)
    first, known = compile_encoded(encoded(doc), unpack)
    doc["campaigns"][5]["priority"] = 999_999
    compiled = []
    real = compiler_module._campaign
    monkeypatch.setattr(compiler_module, "_campaign",
                        lambda r, c, *a: compiled.append(c["id"]) or real(r, c, *a))
    second, _ = compile_encoded(encoded(doc), unpack, known)
    assert compiled == [doc["campaigns"][5]["id"]]
    whole = compile_ruleset(doc)
    assert second.campaigns == whole.campaigns and dict(second.by_id) == dict(whole.by_id)
    assert priced(second) == priced(whole)
    shared = {id(c) for c in first.campaigns} & {id(c) for c in second.campaigns}
    assert len(shared) >= 40  # the same objects, not copies (multipliers are re-resolved)


def test_a_changed_programme_compiles_every_campaign_again(monkeypatch) -> None:
    doc = ruleset_doc(20, seed=4)
    _, known = compile_encoded(encoded(doc), unpack)
    doc["programme"]["return_window_days"] = 30
    compiled = []
    real = compiler_module._campaign
    monkeypatch.setattr(compiler_module, "_campaign",
                        lambda r, c, *a: compiled.append(1) or real(r, c, *a))
    again, _ = compile_encoded(encoded(doc), unpack, known)
    assert len(compiled) == len(doc["campaigns"])
    assert again.campaigns == compile_ruleset(doc).campaigns


def test_a_bad_encoded_campaign_is_refused_naming_it() -> None:
    doc = ruleset_doc(10, seed=5)
    _, known = compile_encoded(encoded(doc), unpack)
    doc["campaigns"][4]["priority"] = "high"
    with pytest.raises(RuleSetError, match=r"campaigns\[4\]\.priority"):
        compile_encoded(encoded(doc), unpack, known)
    with pytest.raises(RuleSetError, match=r"campaigns\[4\]\.priority"):
        compile_ruleset(doc)


def test_a_campaign_that_is_no_map_is_refused() -> None:
    doc = ruleset_doc(5, seed=6)
    doc["campaigns"][2] = b"not a campaign"
    with pytest.raises(RuleSetError, match=r"campaigns\[2\]"):
        compile_encoded(encoded(doc), unpack)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(2, 40),
       changes=st.lists(st.tuples(st.integers(0, 39), st.sampled_from(
           ["priority", "drop", "copy", "percent", "stop"])), max_size=6))
def test_reusing_gives_the_rule_set_compiling_the_whole_document_gives(
        seed: int, size: int, changes: list[tuple[int, str]]) -> None:
    doc = ruleset_doc(size, seed)
    _, known = compile_encoded(encoded(doc), unpack)
    new = copy.deepcopy(doc)
    for at, how in changes:
        campaigns = new["campaigns"]
        c = campaigns[at % len(campaigns)]
        if how == "priority":
            c["priority"] = (c.get("priority", 0) + 7) % 1000
        elif how == "drop" and len(campaigns) > 1 and c["id"] != "base":
            campaigns.remove(c)
        elif how == "copy":
            campaigns.append({**copy.deepcopy(c), "id": f"{c['id']}-copy{len(campaigns)}"})
        elif how == "percent":
            c["effect"] = {"type": "percent", "percent": 4}
        elif how == "stop":
            c["stop"] = not c.get("stop", False)
    try:
        whole = compile_ruleset(new)
    except RuleSetError as e:
        with pytest.raises(RuleSetError) as again:
            compile_encoded(encoded(new), unpack, known)
        assert again.value.errors == e.errors
        return
    reused, _ = compile_encoded(encoded(new), unpack, known)
    assert reused.campaigns == whole.campaigns
    assert dict(reused.by_id) == dict(whole.by_id)
    assert (reused.programme, reused.tiers, reused.redemption) == (
        whole.programme, whole.tiers, whole.redemption)
    assert priced(reused) == priced(whole)
