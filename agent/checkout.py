"""A checkout at this till: price, confirm (print, then journal), return, reconcile.

A receipt is printed in two phases around the journal. First the shift is opened if it is
closed (the shift-open report is a fiscal document and takes a number: docs/spec/shtrih-m.md),
then a `pending` row records what is about to be printed and the printer's last fiscal
document number as it stands after that; then the printer prints;
then one transaction journals the entry and drops the pending row. A crash anywhere in
between leaves a pending row that `reconcile` settles against the printer: a receipt the
printer registered is journalled once, an open one is cancelled, one never started is
dropped. "Registered" is judged by the type of each document after that number (`FF0A`), so a
shift report is never taken for the receipt. So there are no points without a fiscal receipt
and no fiscal receipt without its entry, and nothing twice.

The POS may send an idempotency key with a receipt or a return (`agent.pos_requests`): it is
stored with the pending row, in the same transaction, and follows the receipt to done or
cancelled, so a retry learns the outcome instead of printing or crediting twice.

A full disk never loses a printed receipt: the journal write that fails after printing leaves
the pending row, the printer's number is held in memory, and the answer names the disk
(507). Every later receipt is refused for the same reason until the held receipt is
journalled, which is tried again on each request and by a job (`retry_held`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import sqlite3
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import sqlite_utils

from agent import campaign_allowances, customers, journal, offline_caps, pos_requests
from agent.central_client import CentralError
from agent.devices.printer import FiscalLine, FiscalReceipt, PrinterError, ShtrihPrinter
from agent.failpoints import failpoint
from agent.fiscal_returns import return_receipt
from agent.pos_input import DraftLine
from agent.pos_requests import PosRequest
from agent.presence import CheckoutPresence
from agent.returns_desk import ReturnsDesk
from agent.rules_cache import RulesCache
from agent.taxes import StoreVat, TaxRefused
from protocol import lots, rules
from protocol import payments as pay
from protocol.journal import JournalEntry, new_receipt_id
from protocol.wire import pack, unpack

log = logging.getLogger(__name__)


PRESENCE_REQUIRED = (
    "spending points needs the customer present at this checkout: present the card at the"
    " reader, or enter the one-time code from the customer's app (or one sent by SMS); a typed"
    " card number or customer id earns points but does not spend them")


class CheckoutError(Exception):
    """A checkout that cannot go ahead, with the HTTP status and a message for the cashier."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


class DiskFull(CheckoutError):
    """The till's disk is full: 507 (Insufficient Storage), naming the directory."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(507, message, **extra)


def disk_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.DatabaseError):
        return (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "disk is full" in str(exc))
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


@dataclass(frozen=True)
class Outcome:
    receipt_id: str
    fiscal_doc: int
    seq: int
    kind: str
    total: int
    earned: int = 0
    redeemed: int = 0
    clawback: int = 0
    refund: int = 0
    balance: dict[str, int] | None = None
    # A return: what goes back to each payment (card first, to the card it came from)
    payments: dict[str, Any] | None = None
    points_after_window: str = ""  # "", "taken back" or "kept" (goods back after the window)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _receipt(lines: tuple[DraftLine, ...], store: str) -> rules.Receipt:
    return rules.Receipt(
        lines=tuple(
            rules.ReceiptLine(sku=ln.sku, qty=ln.qty, price=ln.price, amount=ln.amount,
                              category=ln.category, brand=ln.brand, flags=frozenset(ln.flags))
            for ln in lines
        ),
        store=store,
    )


@dataclass(frozen=True)
class SoldReceipt:
    """A sale as a return works from it: this till's record, or the central's copy."""

    receipt_id: str
    store: str
    customer_id: str | None
    ruleset_version: int
    at: str
    settlement: rules.Settlement
    lines: list[DraftLine]
    returned: dict[int, int]
    payments: pay.Payments

    @classmethod
    def from_central(cls, answer: dict[str, Any]) -> SoldReceipt:
        sale = answer["sale"]
        settlement = rules.Settlement.from_dict(sale["settlement"])
        return cls(
            receipt_id=sale["receipt_id"], store=sale["store"], customer_id=sale["customer_id"],
            ruleset_version=sale["ruleset_version"], at=sale["at"], settlement=settlement,
            lines=[DraftLine.from_dict(d) for d in sale["lines"]],
            returned={int(k): v for k, v in answer["returned"].items()},
            payments=_stored_split(sale.get("payments"), settlement))


def _stored_split(stored: Any, settlement: rules.Settlement) -> pay.Payments:
    if stored is not None:
        return pay.Payments.from_dict(stored)
    # Journalled before splits were kept: such sales were refunded in cash.
    return pay.Payments(cash=settlement.paid_money, points=settlement.redeemed,
                        points_money=settlement.redeemed_money)


class Checkout:
    def __init__(self, db: sqlite_utils.Database, printer: ShtrihPrinter, rules_cache: RulesCache,
                 store: str, clock: Callable[[], datetime],
                 on_journal: Callable[[], None] = lambda: None,
                 vat: StoreVat | None = None, central: ReturnsDesk | None = None) -> None:
        self.db = db
        self.printer = printer
        self.rules = rules_cache
        self.store = store
        self.clock = clock
        self.on_journal = on_journal  # wakes the sync client
        self.vat = vat or StoreVat({})
        self.central = central  # None: returns of this till's own sales only
        self.allowances = campaign_allowances.Allowances(db)
        # Whether the customer is present at this checkout, which spending points needs.
        self.presence = CheckoutPresence()
        # One receipt at a time: a till has one printer and one journal tail.
        self.lock = asyncio.Lock()
        # Printed receipts whose journal write failed on a full disk: receipt id -> fiscal
        # document. Their pending rows stay; after a restart reconcile finds them again.
        self.held: dict[str, int] = {}

    # -- customers ----------------------------------------------------------------------

    def customer(self, customer_id: str | None, now: datetime | None = None,
                 zone: tzinfo | None = None, store_zone: tzinfo | None = None,
                 ) -> tuple[rules.Customer, offline_caps.Allowance]:
        """The customer as the rules see them, with what the offline caps allow them;
        `zone` is the programme's (rules.programme_zone), for per-customer budget periods,
        `store_zone` the store's (rules.place_of), whose days the daily card cap counts."""
        now = now or self.clock()
        if customer_id is None:
            return (rules.Customer(allowances=self.allowances.for_customer(None, now, zone)),
                    offline_caps.Allowance(None, None))
        found = customers.view(self.db, customer_id, now)
        if found is None:
            raise CheckoutError(404, "customer is not known to this till")
        if (block := customers.blocked(self.db, customer_id)) is not None:
            # A blocked customer neither earns nor spends here: the POS sells without them.
            raise CheckoutError(403, block.message(), blocked=True, reason=block.reason)
        allowed = offline_caps.allowance(
            offline_caps.load(self.db),
            offline_caps.usage(self.db, customer_id, now, store_zone))
        return rules.Customer(id=found.id, balance=max(0, found.available), tier=found.tier,
                              segments=found.segments, birthday=found.birthday,
                              purchase_count=found.purchases,
                              qualifying_spend=found.qualifying_spend,
                              activated_offers=found.offers,
                              redeem_allowance=allowed.points,
                              allowances=self.allowances.for_customer(customer_id, now,
                                                                        zone)), allowed

    def balance(self, customer_id: str | None) -> dict[str, int] | None:
        found = customers.view(self.db, customer_id, self.clock()) if customer_id else None
        if found is None:
            return None
        return {"available": found.available, "pending": found.pending}

    # -- pricing ------------------------------------------------------------------------

    def price(self, lines: tuple[DraftLine, ...], customer_id: str | None) -> dict[str, Any]:
        now = self.clock()
        version, rs = self.rules.get(now=now)  # the version in effect now
        customer, allowed = self.customer(
            customer_id, now, rules.programme_zone(rs), rules.place_of(rs, self.store).time_zone)
        pricing = rules.price(rs, _receipt(lines, self.store), customer, now).to_dict()
        if allowed.reason and pricing["max_redeemable"] == allowed.points:
            # The engine only knows "the till's offline limit"; the cashier is told which.
            pricing["redeem_reason"] = f"up to {allowed.points}: limited by {allowed.reason}"
        return {"ruleset_version": version, "total": sum(ln.amount for ln in lines),
                **pricing}

    # -- confirm ------------------------------------------------------------------------

    async def confirm(self, lines: tuple[DraftLine, ...], customer_id: str | None, redeem: int,
                      payment: str, payments: Any = None,
                      request: PosRequest | None = None, cashier: str | None = None,
                      ) -> Outcome:
        """`payments` is the POS's split ({"cash", "cards": [...]}); without it, `payment`
        says the whole was paid in cash or by a card (no terminal reference kept)."""
        async with self.lock:
            replayed = self._replay(request)
            if replayed is not None:
                return replayed
            self._refuse_if_pending()
            now = self.clock()
            version, rs = self.rules.get(now=now)
            try:
                lines = self.vat.sale_lines(lines, now)
            except TaxRefused as e:
                raise CheckoutError(e.status, str(e)) from None
            receipt = _receipt(lines, self.store)
            customer, allowed = self.customer(
                customer_id, now, rules.programme_zone(rs),
                rules.place_of(rs, self.store).time_zone)
            if redeem and customer_id is None:
                raise CheckoutError(409, "only members can pay with points")
            present = self.presence.of(customer_id)
            if redeem and present is None:
                raise CheckoutError(403, PRESENCE_REQUIRED, presence_required=True)
            if allowed.points is not None and redeem > allowed.points:
                raise CheckoutError(409, f"redemption refused: {allowed.reason}",
                                    max_redeemable=allowed.points)
            try:
                settlement = rules.settle(rs, receipt, customer, now, redeem)
            except rules.RedemptionError as e:
                raise CheckoutError(409, f"redemption refused: {e}") from None
            paid = settlement.paid_money
            try:
                split = (pay.split_from_pos(payments, paid, settlement.redeemed,
                                            settlement.redeemed_money)
                         if payments is not None else
                         _whole(payment, paid, settlement.redeemed, settlement.redeemed_money))
            except pay.PaymentError as e:
                raise CheckoutError(400, str(e)) from None
            # Lines the central asked to print for this customer (central.messages)
            messages = (customers.receipt_lines(self.db, customer_id, now)
                        if customer_id else [])
            fiscal = FiscalReceipt(
                kind="sale",
                lines=tuple(
                    FiscalLine(text=ln.name, qty=ln.qty, price=ln.price,
                               tax=self.vat.groups[ln.vat or ""],
                               points_discount=out.redeemed_money, discount=out.discount)
                    for ln, out in zip(lines, settlement.lines, strict=True)
                ),
                cash=split.cash,
                card=split.card,
                text_lines=self._loyalty_lines(customer_id, settlement.earned,
                                               settlement.redeemed, 0, 0)
                + tuple(line for _, text in messages for line in message_text(text)),
            )
            receipt_id = new_receipt_id(now)
            lots = _journal_lots(settlement)
            draft = JournalEntry(
                seq=0, epoch="", prev_hash="", kind="sale", receipt_id=receipt_id,
                at=now.isoformat(timespec="seconds"), store=self.store,
                customer_id=customer_id, ruleset_version=version, total=paid, fiscal_doc=0,
                earned=sum(lot["points"] for lot in lots), redeemed=settlement.redeemed,
                lots=lots,
                # What the rules were given, too: the central re-prices the receipt from
                # exactly what this till knew of the customer (profile, allowances).
                detail={"settlement": settlement.to_dict(),
                        "lines": [ln.to_dict() for ln in lines],
                        # what pricing used of the customer, nothing personal (152-FZ)
                        "customer": rules.journal_view(customer, rs, self.store, now),
                        "payments": split.to_dict(),
                        # which of them this receipt carries: no till prints them again
                        **({"messages_printed": [key for key, _ in messages]}
                           if messages else {})},
                cashier=cashier,
                presence=present.proof if present else None,
            )
            try:
                done = await self._print_and_journal(draft, fiscal, request)
            except CheckoutError as e:
                if "pending_receipt_id" in e.extra:  # it may be on paper: it took it
                    self.presence.forget()
                raise  # refused before printing: the customer is still there
            # The identification ties to this receipt: the next one needs its own.
            self.presence.forget()
            return done

    # -- returns ------------------------------------------------------------------------

    async def return_goods(self, receipt_id: str, returning: dict[int, int],
                           request: PosRequest | None = None,
                           cashier: str | None = None) -> Outcome:
        async with self.lock:
            replayed = self._replay(request)
            if replayed is not None:
                return replayed
            self._refuse_if_pending()
            sale, lease = await self._sale_to_return(receipt_id, returning)
            try:
                draft, fiscal = self._price_return(sale, returning, lease)
                draft = replace(draft, cashier=cashier)
                done = await self._print_and_journal(draft, fiscal, request)
            except CheckoutError as e:
                if lease and "pending_receipt_id" not in e.extra:
                    await self._release(lease)  # nothing printed: the quantity is free
                raise
            return done

    async def _sale_to_return(self, receipt_id: str,
                              returning: dict[int, int]) -> tuple[SoldReceipt, str | None]:
        """The sale as the central has it, with a lease on this return; offline (or a sale
        of this till the central has not received yet), this till's own record."""
        local = self._own_sale(receipt_id)
        if self.central is None:
            if local is None:
                raise CheckoutError(404, "no sale with this receipt id at this till")
            return local, None
        try:
            answer = await self.central.reserve(receipt_id, returning)
        except CentralError as e:
            if e.status == 404 and local is not None:
                return local, None  # ours, not yet at the central: nobody else can return it
            if e.status == 404:
                raise CheckoutError(404, "no sale with this receipt id in the chain") from None
            if e.status in (409, 422):  # held by another till, or more than is left
                raise CheckoutError(409, str(e).removeprefix(f"central answered {e.status}: "),
                                    ) from None
            if local is None:
                raise CheckoutError(
                    503, "the central cannot be reached: a sale made at another till can be"
                         f" returned only while this till is online ({e})") from None
            log.warning("return of %s taken offline: %s", receipt_id, e)
            return local, None
        try:
            sale = SoldReceipt.from_central(answer)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # ValueError covers PaymentError and bad dates; nothing was printed.
            lease = answer.get("lease") if isinstance(answer, dict) else None
            if isinstance(lease, str):
                await self._release(lease)
            raise CheckoutError(502, f"the central's copy of the sale cannot be read:"
                                     f" {type(e).__name__}: {e}") from None
        if local is not None:
            # Another till may have taken part of it back: keep this till's record up to
            # date, for returns it takes offline later.
            merged = {i: max(local.returned.get(i, 0), q) for i, q in
                      {**local.returned, **sale.returned}.items()}
            self.db.execute("UPDATE receipts SET returned = ? WHERE receipt_id = ?",
                            [json.dumps({str(k): v for k, v in sorted(merged.items())}),
                             receipt_id])
            sale = replace(sale, returned=merged)
        return sale, answer["lease"]

    def _own_sale(self, receipt_id: str) -> SoldReceipt | None:
        row = self.db.execute(
            "SELECT customer_id, ruleset_version, settlement, lines, returned, at, payments"
            " FROM receipts WHERE receipt_id = ?", [receipt_id]).fetchone()
        if row is None:
            return None
        customer_id, version, settlement_blob, lines_blob, returned_json, at, payments_blob = row
        settlement = rules.Settlement.from_dict(unpack(settlement_blob))
        return SoldReceipt(
            receipt_id=receipt_id, store=self.store, customer_id=customer_id,
            ruleset_version=version, at=at,
            settlement=settlement, lines=[DraftLine.from_dict(d) for d in unpack(lines_blob)],
            returned={int(k): v for k, v in json.loads(returned_json).items()},
            payments=_stored_split(unpack(payments_blob) if payments_blob else None,
                                   settlement))

    def _price_return(self, sale: SoldReceipt, returning: dict[int, int], lease: str | None,
                      ) -> tuple[JournalEntry, FiscalReceipt]:
        settlement, before, split = sale.settlement, sale.returned, sale.payments
        now = self.clock()
        sold_at = datetime.fromisoformat(sale.at)
        # The programme's current rules say what a late return does to points; the sale's
        # own figures say everything else (price_return), wherever it was sold.
        _, rs = self.rules.get(now=now)
        # Past the window when the sale's points would have activated: whole days of the
        # selling store's wall clock (protocol.lots), as the law counts returns.
        zone = rules.place_of(rs, sale.store).time_zone or sold_at.tzinfo or UTC
        late = {i for i in returning
                if i < len(settlement.lines)
                and now >= lots.activation(sold_at, settlement.lines[i].return_days, zone)}
        try:
            outcome = rules.price_return(rs, settlement, before, returning, past_window=late)
            refund = pay.refund(split, rules.money_refunded(settlement, before),
                                outcome.money, outcome.refund_money)
        except (rules.ReturnError, pay.PaymentError) as e:
            raise CheckoutError(409, f"return refused: {e}") from None
        try:
            # A return carries the rate of the sale it returns, not today's.
            rates = {rl.index: self.vat.returned_rate(sale.lines[rl.index], rl.index, sold_at)
                     for rl in outcome.lines}
        except TaxRefused as e:
            raise CheckoutError(e.status, str(e)) from None
        fiscal = return_receipt(
            sale.lines, outcome, {i: g for i, (_, g) in rates.items()}, refund,
            self._loyalty_lines(sale.customer_id, 0, 0, outcome.clawback, outcome.refund))
        detail: dict[str, Any] = {
            "return": outcome.to_dict(),
            "lines": {str(k): v for k, v in sorted(returning.items())},
            "vat": {str(k): rate for k, (rate, _) in sorted(rates.items())},
            "refund": refund.to_dict(),
            # What the cashier gives back, with each card's terminal reference: the answer
            # to the POS, and to a retry of it, comes from the journal entry.
            "given_back": _refund_view(split, refund, outcome.refund)}
        if lease:
            detail["lease"] = lease  # the central confirms it with this entry
        draft = JournalEntry(
            seq=0, epoch="", prev_hash="", kind="return", receipt_id=new_receipt_id(now),
            at=now.isoformat(timespec="seconds"), store=self.store,
            customer_id=sale.customer_id, ruleset_version=sale.ruleset_version,
            total=outcome.money, fiscal_doc=0, clawback=outcome.clawback,
            refund=outcome.refund, original_receipt_id=sale.receipt_id, detail=detail)
        return draft, fiscal

    async def _release(self, lease: str) -> None:
        if self.central is not None:
            await self.central.release(lease)

    # -- the two phases -----------------------------------------------------------------

    def _replay(self, request: PosRequest | None) -> Outcome | None:
        """What became of an operation the POS sent before under the same key: its Outcome
        if done; refused, saying so, if pending or cancelled; None if the key is new."""
        if request is None:
            return None
        known = pos_requests.lookup(self.db, request)
        if known is None:
            return None
        if not known.same_body:
            raise CheckoutError(422, "this idempotency key was sent before with another request:"
                                " use a new key for a new receipt", receipt_id=known.receipt_id)
        if known.state == "done":
            return Outcome(**known.result)
        if known.state == "cancelled":
            raise CheckoutError(
                409, f"receipt {known.receipt_id} was cancelled ({known.result.get('how')}):"
                " nothing is on a fiscal receipt and no points moved; send it again with a new"
                " idempotency key", state="cancelled", receipt_id=known.receipt_id)
        if known.receipt_id in self.held:
            self._journal_held()  # space may be back: then it is done now
            return self._replay(request)
        reason = self.printer.state().last_error or "resume or cancel it"
        raise CheckoutError(503, f"receipt {known.receipt_id} is not finished: {reason}",
                            state="pending", pending_receipt_id=known.receipt_id)

    def _disk(self) -> str:
        """The directory the till's database lives in, to name it to the cashier."""
        for _, name, path in self.db.execute("PRAGMA database_list").fetchall():
            if name == "main" and path:
                return os.path.dirname(path)
        return "the agent's state directory"

    def _journal_held(self) -> None:
        """Journal the printed receipts a full disk held back; DiskFull if it still is."""
        for receipt_id, fiscal_doc in list(self.held.items()):
            self._journal_pending(receipt_id, fiscal_doc)

    async def retry_held(self) -> int:
        """For a job: journal what a full disk held back, if there is space now."""
        if not self.held:
            return 0
        async with self.lock:
            before = len(self.held)
            with contextlib.suppress(DiskFull):
                self._journal_held()
            return before - len(self.held)

    def _refuse_if_pending(self) -> None:
        self._journal_held()
        row = self.db.execute("SELECT receipt_id FROM pending LIMIT 1").fetchone()
        if row:
            raise CheckoutError(
                409, "an earlier receipt is not finished: fix the printer, then resume or"
                " cancel it", pending_receipt_id=row[0])

    def _loyalty_lines(self, customer_id: str | None, earned: int, redeemed: int,
                       clawback: int, refund: int) -> tuple[str, ...]:
        if customer_id is None:
            return ()
        bal = self.balance(customer_id) or {"available": 0, "pending": 0}
        available = bal["available"] - redeemed + refund
        pending = bal["pending"] + earned - clawback
        out = []
        if earned:
            out.append(f"Points earned: {earned}")
        if redeemed:
            out.append(f"Points spent: {redeemed}")
        if clawback:
            out.append(f"Points taken back: {clawback}")
        if refund:
            out.append(f"Points returned: {refund}")
        out.append(f"Balance: {available} (+{max(0, pending)} pending)")
        return tuple(out)

    async def _print_and_journal(self, draft: JournalEntry, fiscal: FiscalReceipt,
                                 request: PosRequest | None = None) -> Outcome:
        try:
            # After the shift is open: its report moves the number on and is no receipt.
            before = await self.printer.ready_for_receipt()
        except PrinterError as e:
            raise CheckoutError(503, f"printer: {e.message}") from None
        try:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO pending (receipt_id, kind, created_at, fiscal_before, entry,"
                    " fiscal) VALUES (?, ?, ?, ?, ?, ?)",
                    [draft.receipt_id, draft.kind, draft.at, before, pack(draft.to_wire()),
                     pack(_fiscal_to_wire(fiscal))],
                )
                if request is not None:
                    pos_requests.record_pending(self.db, request, draft.receipt_id, draft.at)
        except sqlite3.DatabaseError as e:
            if not disk_full(e):
                raise
            raise DiskFull(f"the till's disk is full ({self._disk()}): free space there;"
                           " nothing was printed") from None
        failpoint("before_print")
        try:
            doc = await self.printer.print_receipt(fiscal)
        except PrinterError as e:
            log.warning("receipt %s not printed: %s", draft.receipt_id, e.message)
            state = await self._after_print_failure(draft.receipt_id, draft.kind, before)
            if isinstance(state, Outcome):
                return state
            extra = {"pending_receipt_id": draft.receipt_id} if state else {}
            raise CheckoutError(503, f"printer: {e.message}", **extra) from None
        failpoint("after_print")
        return self._journal_pending(draft.receipt_id, doc)

    def _journal_pending(self, receipt_id: str, fiscal_doc: int) -> Outcome:
        """Journal a printed receipt; on a full disk hold it (DiskFull, 507) for later."""
        try:
            outcome = self._journal_printed(receipt_id, fiscal_doc)
        except sqlite3.DatabaseError as e:
            if not disk_full(e):
                raise
            self.held[receipt_id] = fiscal_doc
            log.error("receipt %s printed as fiscal document %d, not journalled: disk full",
                      receipt_id, fiscal_doc)
            raise DiskFull(
                f"the till's disk is full ({self._disk()}): receipt {receipt_id} is printed"
                f" (fiscal document {fiscal_doc}) and is journalled as soon as there is space"
                " again; free space there before the next receipt",
                state="pending", pending_receipt_id=receipt_id, fiscal_doc=fiscal_doc,
            ) from None
        self.held.pop(receipt_id, None)
        self.on_journal()
        return outcome

    def _journal_printed(self, receipt_id: str, fiscal_doc: int) -> Outcome:
        row = self.db.execute("SELECT entry FROM pending WHERE receipt_id = ?",
                              [receipt_id]).fetchone()
        # Our own draft, written a moment ago: it gets its sequence number in append().
        draft = JournalEntry(**{**unpack(row[0]), "fiscal_doc": fiscal_doc})
        with self.db.atomic():
            entry = journal.append(self.db, draft)
            # With the entry, so a crash can never leave a grant uncounted or counted twice.
            self.allowances.record(entry)
            if entry.kind == "sale":
                self.db.execute(
                    "INSERT INTO receipts (receipt_id, seq, customer_id, fiscal_doc, at,"
                    " ruleset_version, lines, settlement, payments)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [entry.receipt_id, entry.seq, entry.customer_id, fiscal_doc, entry.at,
                     entry.ruleset_version, pack(entry.detail["lines"]),
                     pack(entry.detail["settlement"]), pack(entry.detail["payments"])],
                )
            else:
                original = entry.original_receipt_id
                row = self.db.execute("SELECT returned FROM receipts WHERE receipt_id = ?",
                                      [original]).fetchone()
                if row is not None:  # a sale of this till (another till's is the central's)
                    returned = json.loads(row[0])
                    for k, qty in entry.detail["lines"].items():
                        returned[k] = returned.get(k, 0) + qty
                    self.db.execute("UPDATE receipts SET returned = ? WHERE receipt_id = ?",
                                    [json.dumps(returned), original])
            self.db.execute("DELETE FROM pending WHERE receipt_id = ?", [receipt_id])
            back = entry.detail.get("return", {}) if entry.kind == "return" else {}
            outcome = Outcome(entry.receipt_id, fiscal_doc, entry.seq, entry.kind, entry.total,
                              entry.earned, entry.redeemed, entry.clawback, entry.refund,
                              self.balance(entry.customer_id),
                              payments=entry.detail.get("given_back"),
                              points_after_window=back.get("points_after_window", ""))
            # With the entry: a retry under the POS's key gets exactly this answer.
            pos_requests.settle(self.db, receipt_id, "done", outcome.to_dict())
        log.info("receipt %s journalled as entry %d, fiscal document %d", receipt_id,
                 entry.seq, fiscal_doc)
        return outcome

    def _drop_pending(self, receipt_id: str, how: str) -> None:
        """The receipt is on no fiscal document: forget it, and tell its key so."""
        with self.db.atomic():
            self.db.execute("DELETE FROM pending WHERE receipt_id = ?", [receipt_id])
            pos_requests.settle(self.db, receipt_id, "cancelled", {"how": how})

    # -- recovery -----------------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        return [{"receipt_id": r[0], "kind": r[1], "created_at": r[2]} for r in self.db.execute(
            "SELECT receipt_id, kind, created_at FROM pending ORDER BY created_at")]

    async def resume(self, receipt_id: str) -> Outcome:
        """Finish a receipt the printer stopped on (paper replaced, contact back)."""
        async with self.lock:
            row = self.db.execute("SELECT fiscal FROM pending WHERE receipt_id = ?",
                                  [receipt_id]).fetchone()
            if row is None:
                raise CheckoutError(404, "no unfinished receipt with this id")
            try:
                # A new roll is in: let the printer print what it held, then finish.
                await self.printer.continue_printing()
                doc = await self.printer.print_receipt(_fiscal_from_wire(unpack(row[0])))
            except PrinterError as e:
                raise CheckoutError(503, f"printer: {e.message}",
                                    pending_receipt_id=receipt_id) from None
            return self._journal_pending(receipt_id, doc)

    async def reconcile(self) -> list[str]:
        """Settle every pending receipt against the printer; returns what was done.

        Run at start-up and after contact with the printer comes back, when nobody can
        finish the receipt any more; while the agent stays in contact, an unfinished
        receipt waits for the cashier to resume or cancel it.
        """
        done: list[str] = []
        async with self.lock:
            for receipt_id, kind, before in self.db.execute(
                "SELECT receipt_id, kind, fiscal_before FROM pending ORDER BY created_at"
            ).fetchall():
                try:
                    outcome = await self._settle(receipt_id, kind, before)
                except DiskFull:
                    outcome = "printed; held until the disk has space to journal it"
                done.append(f"{receipt_id}: {outcome}")
        for line in done:
            log.warning("reconciled %s", line)
        return done

    async def cancel(self, receipt_id: str) -> str:
        """The cashier gives up on an unfinished receipt (one the printer did register is
        journalled instead: it is on paper and fiscal memory, so it happened)."""
        async with self.lock:
            row = self.db.execute("SELECT kind, fiscal_before FROM pending WHERE receipt_id = ?",
                                  [receipt_id]).fetchone()
            if row is None:
                raise CheckoutError(404, "no unfinished receipt with this id")
            try:
                return await self._settle(receipt_id, row[0], row[1])
            except PrinterError as e:
                raise CheckoutError(503, f"printer: {e.message}",
                                    pending_receipt_id=receipt_id) from None

    async def _settle(self, receipt_id: str, kind: str, before: int) -> str:
        """One pending receipt against the printer; the caller holds the lock."""
        number = await self.printer.registered_receipt(before, _kind(kind))
        if number is not None:
            # The printer registered it (nothing else prints while a row is pending):
            # journal it under the number the printer gave it.
            self._journal_pending(receipt_id, number)
            return f"printed as document {number}, journalled"
        if await self.printer.document_open():
            await self.printer.cancel_open_document()
            outcome = "open on the printer, cancelled"
        else:
            outcome = "never printed, dropped"
        lease = self._pending_lease(receipt_id)
        self._drop_pending(receipt_id, outcome)
        if lease:
            await self._release(lease)
        return outcome

    def _pending_lease(self, receipt_id: str) -> str | None:
        row = self.db.execute("SELECT entry FROM pending WHERE receipt_id = ?",
                              [receipt_id]).fetchone()
        lease = unpack(row[0]).get("detail", {}).get("lease") if row else None
        return lease if isinstance(lease, str) else None

    async def _after_print_failure(self, receipt_id: str, kind: str,
                                   before: int) -> Outcome | bool:
        """After a failed print: the Outcome if the printer registered the receipt after
        all; False if nothing reached the paper (the pending row is dropped); True if it
        stays pending, open on the printer or unknown, for the cashier to resume or cancel."""
        try:
            number = await self.printer.registered_receipt(before, _kind(kind))
            if number is not None:
                return self._journal_pending(receipt_id, number)
            if await self.printer.document_open():
                return True
        except PrinterError:
            return True
        self._drop_pending(receipt_id, "never printed, dropped")
        return False


# The narrowest paper a Shtrih-M prints on (shtrih_commands.LINE_WIDTHS): a line is cut
# at the printer's width, so a message is wrapped to this, and kept short.
MESSAGE_WIDTH = 32
MESSAGE_LINES = 4


def message_text(text: str) -> list[str]:
    """A message as receipt lines: wrapped at words, at most MESSAGE_LINES of them."""
    lines = textwrap.wrap(" ".join(text.split()), MESSAGE_WIDTH)
    if len(lines) > MESSAGE_LINES:
        lines = lines[:MESSAGE_LINES]
        lines[-1] = lines[-1][:MESSAGE_WIDTH - 3] + "..."
    return lines


def _kind(kind: str) -> Literal["sale", "return"]:
    return "return" if kind == "return" else "sale"


# Points that never expire are kept by the ledger as expiring at the end of time.
NEVER = "9999-12-31T00:00:00+00:00"


def _journal_lots(settlement: rules.Settlement) -> list[dict[str, Any]]:
    """The lots the central's ledger keeps: those of the programme's points unit."""
    return [
        {"points": lot.points, "activates": lot.activates_at.isoformat(),
         "expires": lot.expires_at.isoformat() if lot.expires_at else NEVER}
        for lot in settlement.lots if lot.unit == settlement.unit and lot.points > 0
    ]


def _whole(payment: str, paid: int, points: int, points_money: int) -> pay.Payments:
    """The split of a sale the POS paid wholly one way (the older `payment` field)."""
    if payment == "card":
        return pay.Payments(0, (pay.CardPayment(paid, "", "", ""),) if paid else (),
                            points, points_money)
    return pay.Payments(paid, (), points, points_money)


def _refund_view(split: pay.Payments, refund: pay.Refund, points: int) -> dict[str, Any]:
    """What the cashier gives back: cash, each card with the terminal reference to refund
    it against, and points."""
    return {"cash": refund.cash,
            "cards": [{**card.to_dict(), "amount": amount}
                      for card, amount in zip(split.cards, refund.cards, strict=True) if amount],
            "points": points}


def _fiscal_to_wire(r: FiscalReceipt) -> dict[str, Any]:
    return {"kind": r.kind, "cash": r.cash, "card": r.card, "text_lines": list(r.text_lines),
            "lines": [asdict(ln) for ln in r.lines]}


def _fiscal_from_wire(d: dict[str, Any]) -> FiscalReceipt:
    return FiscalReceipt(kind=d["kind"], cash=d["cash"], card=d["card"],
                         text_lines=tuple(d["text_lines"]),
                         lines=tuple(FiscalLine(**ln) for ln in d["lines"]))
