"""The POS API in-process, for aiohttp_client: a real store on a temporary SQLite file, the
default rule set, and a printer double that registers every receipt it is given.

The double stands in for the Shtrih-M driver only; the journal, the customers, the rules
and the API are the real ones. Whole-process tests (tests/test_end_to_end.py) use the
simulator instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from aiohttp import web

from agent import customers
from agent.checkout import Checkout
from agent.devices.printer import FiscalReceipt, PrinterState
from agent.pos_api import LastCard, Till, make_app
from agent.pos_auth import PosSecret, write_pos_secret
from agent.rules_cache import RulesCache
from agent.store import open_store
from agent.taxes import StoreVat
from protocol.card_keys import CardKey, CardKeyring
from protocol.cards import card_token
from protocol.rules import default_ruleset_doc
from protocol.wire import pack

CARD_SECRET = b"pos-rig-card-secret"
CASHIER = "cashier-7"


class RigCardKeys:
    """One card key: the rig's tokens are made under CARD_SECRET."""

    def tokens(self, number: str) -> list[tuple[int, str]]:
        return [(1, card_token(CARD_SECRET, number))]


@dataclass
class PaperPrinter:
    """Registers receipts as fiscal documents, numbered from 1; never runs out of paper."""

    documents: list[FiscalReceipt] = field(default_factory=list)
    shift_closed: int = 0

    async def last_fiscal_document(self) -> int:
        return len(self.documents) + self.shift_closed

    async def print_receipt(self, r: FiscalReceipt) -> int:
        self.documents.append(r)
        return await self.last_fiscal_document()

    async def ready_for_receipt(self) -> int:
        return await self.last_fiscal_document()  # a shift always open, its report not counted

    async def registered_receipt(self, after: int, kind: str) -> int | None:
        last = await self.last_fiscal_document()
        return last if last > after else None

    async def document_open(self) -> bool:
        return False

    async def cancel_open_document(self) -> None:
        pass

    async def continue_printing(self) -> None:
        pass

    async def close_shift(self) -> int:
        self.shift_closed += 1
        return await self.last_fiscal_document()

    def state(self) -> PrinterState:
        return PrinterState(connected=True)


class Rig:
    """One till's POS API with what tests need to reach behind it."""

    def __init__(self, tmp: Path, clock: Any = None) -> None:
        self.dir = tmp
        self.db: sqlite_utils.Database = open_store(tmp / "agent.db")
        self.clock = clock or (lambda: datetime.now(UTC))
        self.db.execute(
            "INSERT INTO rulesets (version, activates_at, doc, received_at) VALUES (1, ?, ?, ?)",
            ["2020-01-01T00:00:00+00:00", pack(default_ruleset_doc()),
             "2020-01-01T00:00:00+00:00"])
        self.printer = PaperPrinter()
        self.checkout = Checkout(self.db, self.printer, RulesCache(self.db),  # type: ignore[arg-type]
                                 "s1", self.clock,
                                 vat=StoreVat({"22": 1, "10": 2, "0": 3, "none": 4}, "22"))
        self.last_card = LastCard()
        self.secret_path = tmp / "pos-secret"
        write_pos_secret(self.secret_path)
        self.refreshes = 0

    @property
    def secret(self) -> str:
        return self.secret_path.read_text().strip()

    @property
    def auth(self) -> dict[str, str]:
        # and who is at the till: every receipt and return names its cashier
        return {"Authorization": f"Bearer {self.secret}", "Cashier-Id": CASHIER}

    async def refresh_customers(self) -> None:
        self.refreshes += 1  # the central has nothing new in these tests

    def status(self) -> dict[str, Any]:
        return {"till_id": "till-test", "journal": {"last_seq": self.last_seq()}}

    async def close_shift(self) -> int:
        return await self.printer.close_shift()

    def last_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()[0]

    def add_customer(self, customer_id: str, card: str, available: int = 1000) -> str:
        customers.apply_deltas(self.db, {
            "customers": [{"id": customer_id, "available": available, "pending": 0,
                           "debt": 0, "cards": [card_token(CARD_SECRET, card)]}],
            "cursor": 1, "epoch": None, "acked_seq": 0})
        return customer_id

    def app_keys(self) -> CardKeyring:
        """The ring the rig's card tokens and app codes come from."""
        at = datetime(2020, 1, 1, tzinfo=UTC)
        return CardKeyring([CardKey(1, CARD_SECRET, at, at.replace(year=2100))])

    def app(self) -> web.Application:
        till = Till(self.checkout, self.last_card, RigCardKeys(), self.refresh_customers,
                    self.status, self.close_shift, app_keys=self.app_keys)
        return make_app(till, PosSecret(self.secret_path))
