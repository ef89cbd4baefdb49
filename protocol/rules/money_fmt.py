"""Formatting integers for people: 123456 kopecks -> "1234.56", 1500 thousandths -> "1.5"."""

from __future__ import annotations


def fmt_money(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    k = abs(kopecks)
    return f"{sign}{k // 100}.{k % 100:02d}"


def fmt_qty(thousandths: int) -> str:
    whole, frac = divmod(thousandths, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)


def fmt_points(steps: int, decimals: int) -> str:
    if decimals == 0:
        return str(steps)
    sign = "-" if steps < 0 else ""
    whole, frac = divmod(abs(steps), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"
