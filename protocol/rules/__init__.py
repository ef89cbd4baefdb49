"""Tillpoint's rules engine: the rule-set schema and its reference evaluator.

Pure: no I/O, no clock (time comes in as `now`, a timezone-aware datetime), deterministic,
integers only (kopecks, thousandths, points in their unit's smallest step). The till runs it
to price receipts offline; the central runs the same code to validate rule sets and re-check
what tills report. See README.md in this package for the document format.
"""

from protocol.rules.birthdays import journal_view
from protocol.rules.compiler import CompiledCampaigns, compile_encoded, compile_ruleset
from protocol.rules.defaults import default_ruleset_doc, example_ruleset_doc
from protocol.rules.engine import price, settle
from protocol.rules.errors import InputError, RedemptionError, ReturnError, RuleSetError
from protocol.rules.explain import ExplainEntry, Explanation
from protocol.rules.holdout import held_out
from protocol.rules.inputs import (
    ANONYMOUS,
    Customer,
    Receipt,
    ReceiptLine,
    birthday_from_wire,
    month_day,
)
from protocol.rules.model import RuleSet
from protocol.rules.place import local_time, place_of, programme_zone, zone_named
from protocol.rules.results import (
    Discount,
    Earning,
    LineOutcome,
    Lot,
    OfferGrant,
    Pricing,
    ReceiptBonus,
    ReturnLine,
    ReturnOutcome,
    Settlement,
)
from protocol.rules.returns import money_refunded, price_return
from protocol.rules.tiers import resolve_tier, tier_for_spend, window_end

__all__ = [
    "ANONYMOUS",
    "CompiledCampaigns",
    "Customer",
    "Discount",
    "Earning",
    "ExplainEntry",
    "Explanation",
    "InputError",
    "LineOutcome",
    "Lot",
    "OfferGrant",
    "Pricing",
    "Receipt",
    "ReceiptBonus",
    "ReceiptLine",
    "RedemptionError",
    "ReturnError",
    "ReturnLine",
    "ReturnOutcome",
    "RuleSet",
    "RuleSetError",
    "Settlement",
    "birthday_from_wire",
    "compile_encoded",
    "compile_ruleset",
    "default_ruleset_doc",
    "example_ruleset_doc",
    "held_out",
    "journal_view",
    "local_time",
    "money_refunded",
    "month_day",
    "place_of",
    "price",
    "price_return",
    "programme_zone",
    "resolve_tier",
    "settle",
    "tier_for_spend",
    "window_end",
    "zone_named",
]
