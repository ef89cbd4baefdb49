"""The fiscal receipt of a return: each line as it was sold, each refund part as its type.

What the printer registers must equal what the customer gets back, payment by payment, to
the kopeck, in every sequence of partial returns. A returned line gives back a cumulative
part of what money and points paid for it (protocol.rules.returns); the printer prints
quantity x price rounded half up, which for part of a line can come out a kopeck below
that part. The line is then printed at the smallest unit price that covers it, and the
difference is a discount, so the receipt's total is exactly the refund.
"""

from __future__ import annotations

from agent.devices.printer import FiscalLine, FiscalReceipt
from agent.pos_input import DraftLine
from protocol import rules
from protocol.payments import Refund


def line_total(qty: int, price: int) -> int:
    return (qty * price + 500) // 1000  # as the device rounds a line


def return_line(sold: DraftLine, rl: rules.ReturnLine, tax: int) -> FiscalLine:
    """A returned line: its price, less what points and instant discounts had paid of it."""
    back = rl.money + rl.refund_money  # what this line gives back, in money and in points
    price = sold.price
    if line_total(rl.qty, price) < back:
        # The smallest price whose line total covers it: (q * p + 500) // 1000 >= back.
        price = -(-(back * 1000 - 500) // rl.qty)
    total = line_total(rl.qty, price)
    return FiscalLine(text=sold.name, qty=rl.qty, price=price, tax=tax,
                      points_discount=rl.refund_money, discount=total - back)


def return_receipt(sold: list[DraftLine], outcome: rules.ReturnOutcome, taxes: dict[int, int],
                   refund: Refund, text_lines: tuple[str, ...] = ()) -> FiscalReceipt:
    """The return's fiscal receipt: cash and card given back as their own payment types
    (points as the printer's points mode shows them: a discount or a payment type)."""
    return FiscalReceipt(
        kind="return",
        lines=tuple(return_line(sold[rl.index], rl, taxes[rl.index]) for rl in outcome.lines),
        cash=refund.cash, card=refund.card, text_lines=text_lines,
    )
