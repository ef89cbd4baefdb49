"""Refunds the way the customer paid: card first, across partial returns, to the kopeck.

The property test prints every sale and every return of random return sequences on the
simulator's device (in process, through the very frames the agent's driver sends), and
checks that what the fiscal document registers is what the customer gets back, payment by
payment, in both ways of printing points.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.devices.printer import FiscalLine, FiscalReceipt, ShtrihPrinter
from agent.fiscal_returns import return_line, return_receipt
from agent.pos_input import DraftLine
from hardware_sim.fiscal_memory import FiscalStore
from hardware_sim.printer_paper import PaperRoll
from hardware_sim.shtrih_device import ShtrihDevice
from protocol import payments as pay
from protocol import rules

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RULES = rules.compile_ruleset(rules.default_ruleset_doc())
CARD = {"rrn": "123456789012", "approval_code": "A1B2C3", "terminal_id": "T0001"}


class Device:
    """The simulator's Shtrih-M device, driven by the agent's own frames."""

    def __init__(self, directory: Path, points_mode: str) -> None:
        store = FiscalStore(directory)
        memory = store.load()
        self.memory = memory
        self.device = ShtrihDevice(memory, PaperRoll(directory / "paper"),
                                   save=lambda: None, clock=lambda: NOW.replace(tzinfo=None),
                                   monotonic=lambda: 0.0)
        self.printer = ShtrihPrinter("unused", points_mode=points_mode)  # type: ignore[arg-type]
        self.run(self.printer_frames_open_shift())

    def printer_frames_open_shift(self) -> list[bytes]:
        from agent.devices import shtrih_commands as cmd
        return [cmd.encode_simple(cmd.OPEN_SHIFT, 1)]

    def run(self, frames: list[bytes]) -> None:
        for frame in frames:
            body = frame[2:-1]  # STX LEN [body] LRC
            reply = self.device.execute(body)
            code = 2 if body[0] == 0xFF else 1
            assert reply[code] == 0, f"device refused {body[:code].hex()}: {reply[code]:#x}"

    def print(self, receipt: FiscalReceipt) -> dict:
        self.printer._check_payments(receipt)
        self.run([step.frame for step in self.printer._plan(receipt)])
        return self.memory.documents[-1].to_json()


def draft(i: int, qty: int, price: int) -> DraftLine:
    return DraftLine(sku=f"s{i}", name=f"Item {i}", qty=qty, price=price, category="food",
                     vat="22")


@st.composite
def stories(draw):
    n = draw(st.integers(1, 4))
    lines = tuple(draft(i, draw(st.one_of(st.integers(1, 5).map(lambda k: k * 1000),
                                          st.integers(1, 3000))),
                        draw(st.integers(1, 200_000)))
                  for i in range(n))
    balance = draw(st.integers(0, 5000))
    share = draw(st.integers(0, 100))
    card_share = draw(st.integers(0, 100))
    two_cards = draw(st.booleans())
    steps = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 100)),
                          min_size=1, max_size=8))
    finish = draw(st.booleans())
    mode = draw(st.sampled_from(["discount", "payment"]))
    return lines, balance, share, card_share, two_cards, steps, finish, mode


def sale(lines: tuple[DraftLine, ...], balance: int, share: int, card_share: int,
         two_cards: bool) -> tuple[rules.Settlement, pay.Payments]:
    receipt = rules.Receipt(lines=tuple(
        rules.ReceiptLine(sku=ln.sku, qty=ln.qty, price=ln.price, amount=ln.amount,
                          category=ln.category) for ln in lines), store="s1")
    customer = rules.Customer(id="c1", balance=balance)
    priced = rules.price(RULES, receipt, customer, NOW)
    redeem = priced.max_redeemable * share // 100
    settled = rules.settle(RULES, receipt, customer, NOW, redeem)
    paid = settled.paid_money
    card = paid * card_share // 100
    cards = []
    if card and two_cards and card > 1:
        cards = [{"amount": card // 2, **CARD}, {"amount": card - card // 2, **CARD}]
    elif card:
        cards = [{"amount": card, **CARD}]
    split = pay.split_from_pos({"cards": cards}, paid, settled.redeemed, settled.redeemed_money)
    return settled, split


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(stories())
def test_every_return_registers_what_it_refunds_and_all_of_them_the_sale(tmp_path_factory,
                                                                         story):
    lines, balance, share, card_share, two_cards, steps, finish, mode = story
    device = Device(tmp_path_factory.mktemp("fm"), mode)
    settled, split = sale(lines, balance, share, card_share, two_cards)

    sold = device.print(FiscalReceipt(
        kind="sale",
        lines=tuple(FiscalLine(text=ln.name, qty=ln.qty, price=ln.price, tax=1,
                               points_discount=out.redeemed_money, discount=out.discount)
                    for ln, out in zip(lines, settled.lines, strict=True)),
        cash=split.cash, card=split.card))
    points_paid = settled.redeemed_money if mode == "payment" else 0
    assert sold["total"] == split.money + points_paid and sold["change"] == 0

    returned: dict[int, int] = {}
    given_back = {"cash": 0, "cards": [0] * len(split.cards), "points": 0}
    plan = [(i, max(1, lines[i].qty * pct // 100)) for i, pct in steps]
    if finish:
        plan += [(i, lines[i].qty) for i in range(len(lines))]
    for idx, want in plan:
        q = min(want, lines[idx].qty - returned.get(idx, 0))
        if q <= 0:
            continue
        outcome = rules.price_return(RULES, settled, returned, {idx: q})
        refund = pay.refund(split, rules.money_refunded(settled, returned), outcome.money,
                            outcome.refund_money)
        doc = device.print(return_receipt(list(lines), outcome, {idx: 1}, refund))
        # To the kopeck, part by part: cash as cash, card as type 2, points as their own.
        points_back = outcome.refund_money if mode == "payment" else 0
        assert doc["receipt_type"] == 2
        assert doc["total"] == refund.money + points_back
        assert doc["payments"][0] == refund.cash and doc["payments"][1] == refund.card
        assert doc["payments"][3] == points_back and doc["change"] == 0
        assert refund.money == outcome.money
        returned[idx] = returned.get(idx, 0) + q
        given_back["cash"] += refund.cash
        given_back["cards"] = [a + b for a, b in
                               zip(given_back["cards"], refund.cards, strict=True)]
        given_back["points"] += outcome.refund
        # Card money never comes back as cash: cash only once the cards are whole again.
        if given_back["cash"]:
            assert given_back["cards"] == [c.amount for c in split.cards]
    if all(returned.get(i, 0) == ln.qty for i, ln in enumerate(lines)):
        assert given_back == {"cash": split.cash, "cards": [c.amount for c in split.cards],
                              "points": settled.redeemed}


def test_a_partial_line_that_rounds_below_its_share_prints_its_share():
    # A returned part whose cumulative share of the line (3335) is a kopeck above what its
    # quantity at the sold price prints (3334): it is printed at the smallest price that
    # covers it, and the receipt totals the refund, not a kopeck less.
    sold = DraftLine("s", "Cheese", 3000, 3334)
    printed = return_line(sold, rules.ReturnLine(0, 1000, (), 0, 0, 3335), 1)
    assert (printed.price, printed.total - printed.discount) == (3335, 3335)
    # With points: the discount takes the points' share, the rest is money.
    printed = return_line(sold, rules.ReturnLine(0, 1000, (), 100, 100, 3000), 1)
    assert printed.price == 3334 and printed.points_discount == 100
    assert printed.total - printed.discount - printed.points_discount == 3000


@pytest.mark.parametrize(("raw", "error"), [
    ({"cards": [{"amount": 100, "rrn": "1", "approval_code": "2"}]},
     r"payments.cards\[0\].terminal_id must be"),
    ({"cards": [{"amount": 0, **CARD}]}, r"payments.cards\[0\].amount must be more than 0"),
    ({"cards": [{"amount": 2000, **CARD}]}, "add up to 2000, more than the 1000 to pay"),
    ({"cash": 100, "cards": [{"amount": 500, **CARD}]}, "add up to 600, but 1000 is to pay"),
    ({"cash": -1}, r"payments.cash must be a non-negative integer"),
    ({"cheque": 1}, r"unknown fields \['cheque'\]"),
    ([], "payments must be an object"),
])
def test_a_split_is_checked_where_it_enters_naming_the_field(raw, error):
    with pytest.raises(pay.PaymentError, match=error):
        pay.split_from_pos(raw, 1000, 0, 0)


def test_refunds_go_to_the_cards_first_then_cash():
    split = pay.split_from_pos({"cards": [{"amount": 300, **CARD}, {"amount": 200, **CARD}]},
                               1000, 0, 0)
    assert split.cash == 500
    assert pay.refund(split, 0, 250) == pay.Refund(0, (250, 0))
    assert pay.refund(split, 250, 400) == pay.Refund(150, (50, 200))
    assert pay.refund(split, 650, 350) == pay.Refund(350, (0, 0))
    with pytest.raises(pay.PaymentError, match="would exceed the 1000 paid"):
        pay.refund(split, 650, 351)
