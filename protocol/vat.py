"""VAT rates of sale lines: what the POS may send, what a sale stores, what a return carries.

A rate is a short string: "22", "10", "0", "none" (without VAT), "5" and "7" (stores on the
simplified system), and "20", the general rate before 2026. A sale stores each line's rate
in the journal entry's detail; a return carries the rate of the sale it returns, so goods
sold at 20 % in 2025 go back at 20 %.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

RATES = ("22", "20", "10", "7", "5", "0", "none")
# From 2026 the general rate is 22 %; 20 % is only the rate of goods sold before then.
RATE_22_FROM = datetime(2026, 1, 1, tzinfo=UTC)
RATE_BEFORE_2026 = "20"


class VatError(ValueError):
    """A rate that is no rate, named by where it came from."""


def parse_rate(value: Any, where: str) -> str:
    """A rate as the POS or a setting gives it (22, "22", "22%", "none") -> canonical form."""
    if isinstance(value, bool):
        raise VatError(f"{where} must be one of {', '.join(RATES)}")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("%").strip()
        if text in ("without", "no vat", "без ндс"):
            text = "none"
        if text in RATES:
            return text
    raise VatError(f"{where} must be one of {', '.join(RATES)} (got {value!r})")


def sale_rate_allowed(rate: str, at: datetime) -> bool:
    """Whether a sale made at `at` may carry `rate` (20 % was replaced by 22 % in 2026)."""
    if rate == RATE_BEFORE_2026:
        return at < RATE_22_FROM
    if rate == "22":
        return at >= RATE_22_FROM
    return True


def rate_of_sold_line(stored: str | None, sold_at: datetime, default: str | None) -> str | None:
    """The rate a returned line carries: the one stored with the sale; for a sale journalled
    before rates were stored, 20 % if it was sold before 2026, else the store's one rate."""
    if stored is not None:
        return stored
    if sold_at < RATE_22_FROM:
        return RATE_BEFORE_2026
    return default


def parse_tax_groups(raw: Any, where: str = "tax_groups") -> dict[str, int]:
    """The store's map of VAT rate -> tax group 1..4 of its printer."""
    if not isinstance(raw, dict):
        raise VatError(f"{where} must be a table of VAT rate = tax group (1..4)")
    out: dict[str, int] = {}
    for key, group in raw.items():
        rate = parse_rate(key, f"{where} key {key!r}")
        if isinstance(group, bool) or not isinstance(group, int) or not 1 <= group <= 4:
            raise VatError(f"{where}[{key!r}] must be a tax group 1..4 (got {group!r})")
        if rate in out:
            raise VatError(f"{where} names rate {rate} twice")
        if group in out.values():
            # A group carries one rate in the device's table.
            raise VatError(f"{where} gives tax group {group} to two rates")
        out[rate] = group
    return out
