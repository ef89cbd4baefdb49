"""price_return: what a (partial) return takes back and gives back, from the receipt's own terms.

Every figure of a line (points earned per campaign, points spent, money paid) is returned in
proportion to the quantity, as a cumulative floor: a return from `before` to `after` gives
part(after) - part(before) with part(q) = floor(figure * q / qty). Returns in any number of
steps therefore add up to exactly the line's figure when the line is all back, and never more.
A receipt bonus is not split: it is taken back whole by the return that makes the receipt
stop qualifying (basket below its threshold, a required item gone, or nothing left).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from protocol.rules import model as m
from protocol.rules.arith import cumulative_part, is_int
from protocol.rules.errors import ReturnError
from protocol.rules.results import (
    Earning,
    LineOutcome,
    ReceiptBonus,
    ReturnLine,
    ReturnOutcome,
    Settlement,
)


def _check(original: Settlement, qtys: Mapping[int, int], what: str) -> None:
    n = len(original.lines)
    for idx, q in qtys.items():
        if not is_int(idx) or not 0 <= idx < n:
            raise ReturnError(f"{what}: no line {idx!r} on the receipt (it has {n} lines)")
        if not is_int(q) or q < 0:
            raise ReturnError(f"{what}: quantity for line {idx} must be a non-negative integer")


def price_return(
    ruleset: m.RuleSet, original: Settlement, returned_before: Mapping[int, int],
    returning: Mapping[int, int], balance: int | None = None,
    past_window: Collection[int] = (),
) -> ReturnOutcome:
    """Price returning `returning` (line index -> thousandths) after `returned_before`.

    `ruleset` is the current one; the original's own figures decide everything, so a later
    change of rules never changes what a return of an old receipt gives. Lines in
    `past_window` come back after their return window: under the programme's
    `after_return_window: keep` their earned points (and a receipt bonus that only such
    lines break) stay with the customer. With `balance`
    (available points in the redemption unit) the outcome says how much of the clawback the
    balance cannot cover (shortfall); recording it as a debt is the ledger's job.
    """
    _check(original, returned_before, "returned before")
    _check(original, returning, "returning")
    keep = ruleset.programme.after_return_window == "keep"
    late = {i for i in returning if returning[i] and i in past_window}
    after: dict[int, int] = {i: q for i, q in returned_before.items() if q}
    lines: list[ReturnLine] = []
    by_unit: dict[str, int] = {}
    refund = refund_money = money = 0
    for idx in sorted(returning):
        q = returning[idx]
        if q == 0:
            continue
        line = original.lines[idx]
        b = returned_before.get(idx, 0)
        a = b + q
        if a > line.qty:
            raise ReturnError(
                f"line {idx} ({line.sku}): returning {q} after {b} would exceed"
                f" the {line.qty} bought")
        after[idx] = a
        claw = []
        for e in () if keep and idx in late else line.earned:
            p = cumulative_part(e.points, a, line.qty) - cumulative_part(e.points, b, line.qty)
            if p:
                claw.append(Earning(e.campaign, e.unit, p))
                by_unit[e.unit] = by_unit.get(e.unit, 0) + p
        r = _step(line.redeemed, b, a, line.qty)
        rm = _step(line.redeemed_money, b, a, line.qty)
        mo = _step(line.paid, b, a, line.qty)
        refund += r
        refund_money += rm
        money += mo
        lines.append(ReturnLine(idx, q, tuple(claw), r, rm, mo))
    taken: list[Earning] = []
    # A bonus stays when every line this return brings back is past its window and kept.
    moving = {i for i, q in returning.items() if q}
    for bonus in () if keep and moving and moving <= late else original.receipt_bonuses:
        held = _holds(bonus, original.lines, returned_before)
        if held and not _holds(bonus, original.lines, after):
            taken.append(Earning(bonus.campaign, bonus.unit, bonus.points))
            by_unit[bonus.unit] = by_unit.get(bonus.unit, 0) + bonus.points
    clawback = by_unit.get(original.unit, 0)
    shortfall = 0
    if balance is not None:
        owed = by_unit.get(original.redeem_unit, 0)
        shortfall = max(0, owed - refund - max(balance, 0))
    return ReturnOutcome(
        unit=original.unit, redeem_unit=original.redeem_unit, lines=tuple(lines),
        clawback=clawback, clawback_by_unit=dict(sorted(by_unit.items())), refund=refund,
        refund_money=refund_money, money=money, bonuses_taken=tuple(taken),
        returned_after=after,
        complete=all(after.get(x.index, 0) == x.qty for x in original.lines),
        shortfall=shortfall,
        points_after_window=("" if not late else "kept" if keep else "taken back"),
    )


def money_refunded(original: Settlement, returned: Mapping[int, int]) -> int:
    """The money all returns of `returned` (line -> thousandths) gave back together: each
    line's cumulative part, exactly what the returns' `money` figures add up to."""
    return sum(cumulative_part(line.paid, returned.get(line.index, 0), line.qty)
               for line in original.lines if returned.get(line.index, 0))


def _step(total: int, before: int, after: int, qty: int) -> int:
    return cumulative_part(total, after, qty) - cumulative_part(total, before, qty)


def _holds(
    bonus: ReceiptBonus, lines: tuple[LineOutcome, ...], returned: Mapping[int, int],
) -> bool:
    """Whether the receipt, less what has been returned, still earns the bonus."""
    def kept_qty(i: int) -> int:
        return lines[i].qty - returned.get(i, 0)

    scope = bonus.scope or tuple(range(len(lines)))
    if not any(kept_qty(i) > 0 for i in scope):
        return False
    if bonus.min_amount is not None:
        kept = sum(
            lines[i].amount - cumulative_part(lines[i].amount, returned.get(i, 0), lines[i].qty)
            for i in scope
        )
        if kept < bonus.min_amount:
            return False
    if bonus.min_qty is not None and sum(kept_qty(i) for i in scope) < bonus.min_qty:
        return False
    return all(any(kept_qty(i) > 0 for i in group) for group in bonus.requires)
