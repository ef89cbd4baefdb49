"""Integer arithmetic the engine needs: rounding division, exact splits, decimal parsing.

Money is kopecks, quantity is thousandths, points are integer steps of their unit. Every split
of a total over lines hands out exactly the total (largest remainder), so the parts always add
up, and every share of a total for a partial return is a cumulative floor, so the parts of a
return in several steps add up to the share of the whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ROUNDING_MODES = ("down", "half_up", "up")

_DECIMAL = re.compile(r"^(\d+)(?:\.(\d+))?$")


def div_round(num: int, den: int, mode: str = "down") -> int:
    """num/den rounded as the programme says; num >= 0, den > 0."""
    if mode == "down":
        return num // den
    if mode == "up":
        return -(-num // den)
    return (2 * num + den) // (2 * den)  # half_up


def allocate(total: int, weights: Sequence[int], ranks: Sequence[int]) -> list[int]:
    """Split `total` over `weights` in proportion, in integers that add up to `total`.

    Each part is the floor of its exact share; the units left over go to the largest
    remainders. Ties go to the lowest of `ranks` (distinct non-negative ints ranking what each
    line is, not where it sits), so the outcome does not depend on the order of lines. No
    part exceeds its weight when total <= sum(weights).
    """
    n = len(weights)
    wsum = sum(weights)
    if total <= 0 or wsum <= 0:
        return [0] * n
    parts = [total * w // wsum for w in weights]
    left = total - sum(parts)
    if left:
        # one int per part orders by remainder, then by rank: a plain sort, no tuples
        span = max(ranks) + 1
        order_key = [(total * w % wsum) * span + (span - 1 - r)
                     for w, r in zip(weights, ranks, strict=True)]
        order = sorted(range(n), key=order_key.__getitem__, reverse=True)
        for i in order[:left]:
            parts[i] += 1
    return parts


def cumulative_part(total: int, done: int, whole: int) -> int:
    """floor(total * done / whole): the share of `total` that belongs to `done` of `whole`.

    A step from `before` to `after` takes part(after) - part(before); the steps of a complete
    return therefore add up to exactly `total`.
    """
    if whole <= 0:
        return 0
    return total * done // whole


def parse_scaled(value: object, digits: int) -> int | None:
    """An int or a decimal string ("2.5") as an integer scaled by 10**digits; None if invalid.

    Floats are refused on purpose: a rule set must say exactly what it means.
    """
    scale = 10**digits
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * scale
    if isinstance(value, str):
        m = _DECIMAL.match(value.strip())
        if not m:
            return None
        frac = m.group(2) or ""
        if len(frac) > digits:
            return None
        return int(m.group(1)) * scale + int(frac.ljust(digits, "0") or "0")
    return None


def is_int(value: object) -> bool:
    """A real int (bool is an int subclass in Python and is not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool)
