"""The store's VAT: which rate each line carries and which tax group of the printer it takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from agent.pos_input import DraftLine
from protocol import vat


class TaxRefused(ValueError):
    """A line the printer cannot be given: no rate, or a rate without a tax group."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoreVat:
    groups: Mapping[str, int]  # rate -> tax group 1..4 (agent.toml `tax_groups`)
    default: str | None = None  # `vat_rate`: one rate for all the store's goods

    def group(self, rate: str, what: str) -> int:
        group = self.groups.get(rate)
        if group is None:
            known = ", ".join(f"{r}={g}" for r, g in sorted(self.groups.items())) or "none"
            raise TaxRefused(422, f"{what}: VAT rate {rate} has no tax group on this till's"
                                  f" printer (tax_groups: {known}); add it to tax_groups")
        return group

    def sale_lines(self, lines: tuple[DraftLine, ...], at: datetime) -> tuple[DraftLine, ...]:
        """Each line with its rate (the POS's, or the store's one rate); refuses a line
        without one, a rate the date does not allow, or one the printer has no group for."""
        out = []
        for i, ln in enumerate(lines):
            what = f"lines[{i}] ({ln.name})"
            rate = ln.vat or self.default
            if rate is None:
                raise TaxRefused(400, f"{what} has no VAT rate: send lines[{i}].vat, or"
                                      " declare the store's one rate (vat_rate)")
            if not vat.sale_rate_allowed(rate, at):
                raise TaxRefused(400, f"{what}: VAT rate {rate} is not a rate for a sale on"
                                      f" {at.date().isoformat()}")
            self.group(rate, what)
            out.append(replace(ln, vat=rate))
        return tuple(out)

    def returned_rate(self, sold: DraftLine, index: int, sold_at: datetime) -> tuple[str, int]:
        """The rate of the sale a returned line comes from, and its tax group."""
        what = f"returned line {index} ({sold.name})"
        rate = vat.rate_of_sold_line(sold.vat, sold_at, self.default)
        if rate is None:
            raise TaxRefused(422, f"{what}: the sale stored no VAT rate and the store declares"
                                  " no one rate (vat_rate)")
        return rate, self.group(rate, what)
