"""What a journalled sale says of the customer's birthday: which windows it fell within.

A journal entry is hash-chained and kept for good, on the till and at the central, so it
must hold nothing personal (152-FZ): not the birthday, but what pricing used of it, "within
3 days of the birthday" for each window the rule set's campaigns name. The central re-prices
with the birthday it sent the till (central.repricing), so a till cannot claim a window.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from protocol.rules.conditions import days_from_birthday
from protocol.rules.inputs import Customer
from protocol.rules.model import RuleSet
from protocol.rules.place import local_time


def birthday_windows(ruleset: RuleSet) -> frozenset[int]:
    """Every birthday window (days either side) a campaign of the rule set asks about."""
    return frozenset(c.when.birthday_within_days for c in ruleset.campaigns
                     if c.when.birthday_within_days is not None)


def journal_view(customer: Customer, ruleset: RuleSet, store: str, now: datetime,
                 ) -> dict[str, Any]:
    """The customer as a sale's journal entry records them: the birthday replaced by the
    windows it was within on the store's day of the sale."""
    if customer.birthday is None:
        return replace(customer, birthday_within=None).to_dict()
    today = local_time(ruleset, store, now).date()
    away = days_from_birthday(customer.birthday, today)
    within = frozenset(w for w in birthday_windows(ruleset) if away <= w)
    return replace(customer, birthday=None, birthday_within=within).to_dict()
