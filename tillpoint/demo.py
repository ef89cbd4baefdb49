"""`tillpoint demo`: a store on this machine plays a scripted day, then reconciles.

Everything runs as it would in a store: a central, a simulated printer and card reader per
till, an agent per till; the day is played through the POS API and the simulator's control
interface, and at the end the central's ledger is checked against every till's journal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness, Till

# (sku, name, unit price in kopecks, category, weight goods sold by the kilogram, VAT rate)
CATALOGUE = [
    ("4600001", "Milk 3.2% 1 l", 8990, "dairy", False, "10"),
    ("4600002", "Kefir 1 l", 9450, "dairy", False, "10"),
    ("4600003", "Bread, rye", 5900, "bakery", False, "10"),
    ("4600004", "Apples, kg", 14990, "produce", True, "10"),
    ("4600005", "Coffee beans 1 kg", 159900, "grocery/coffee", False, "22"),
    ("4600006", "Running shoes", 599000, "sports/shoes", False, "22"),
    ("4600007", "Shampoo 400 ml", 34900, "cosmetics", False, "22"),
    ("4600008", "Cigarettes", 21900, "tobacco", False, "22"),
    ("4600009", "Cheese, kg", 89900, "dairy/cheese", True, "10"),
    ("4600010", "Chocolate 100 g", 12900, "grocery/sweets", False, "22"),
]


def ean13(body12: str) -> str:
    """Complete 12 digits with the EAN-13 check digit, as printed loyalty cards carry."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body12))
    return body12 + str((10 - total % 10) % 10)


def card_number(i: int) -> str:
    return ean13(f"2990{i:08d}")


def basket(rng: random.Random) -> list[dict[str, Any]]:
    lines = []
    for sku, name, price, category, by_weight, vat in rng.sample(CATALOGUE, rng.randint(1, 5)):
        qty = rng.choice([250, 500, 750, 1250]) if by_weight else 1000 * rng.randint(1, 3)
        lines.append({"sku": sku, "name": name, "qty": qty, "price": price,
                      "category": category, "vat": vat})
    return lines


class Day:
    def __init__(self, store: StoreHarness, rng: random.Random, members: int) -> None:
        self.store = store
        self.rng = rng
        self.cards = [card_number(i + 1) for i in range(members)]
        self.sales: list[tuple[Till, dict, list[dict]]] = []
        self.stats = {"receipts": 0, "member_receipts": 0, "returns": 0, "redemptions": 0,
                      "returns_at_another_till": 0, "app_codes": 0}
        self.served: set[str] = set()

    async def enrol_customers(self) -> None:
        for i, number in enumerate(self.cards):
            await self.store.office("POST", "/api/v1/customers", {
                "card_number": number, "name": f"Customer {i + 1}",
                "segments": ["sports"] if i % 3 == 0 else [],
                "welcome_bonus": 500,
            })

    async def identify_at_reader(self, till: Till, number: str) -> dict:
        """The customer shows the card at the reader; the POS asks who it was."""
        await self.store.control(till, "POST", "/reader/present", {"barcode": number})

        async def identified() -> dict | None:
            try:
                return await self.store.pos(till, "POST", "/pos/v1/identify", {})
            except ApiError as e:
                if e.status == 404 and "no card presented" in str(e.body):
                    return None
                raise

        return await wait_for(identified, "the card to reach the agent", timeout=10)

    async def sale(self, n: int) -> None:
        till = self.store.tills[n % len(self.store.tills)]
        lines = basket(self.rng)
        customer_id = None
        at_reader = False
        if self.rng.random() < 0.6:
            number = self.rng.choice(self.cards)
            at_reader = bool(n % 2)
            if not at_reader:
                try:
                    who = await self.store.pos(till, "POST", "/pos/v1/identify",
                                               {"card_number": number})
                except ApiError as e:
                    if e.status != 429:
                        raise
                    # Typed numbers are limited per till: as the answer says, the cashier
                    # asks for the card at the reader instead.
                    at_reader = True
            if at_reader:  # the card at the reader: the customer is present, may spend
                who = await self.identify_at_reader(till, number)
            customer_id = who["customer_id"]
        priced = await self.store.pos(till, "POST", "/pos/v1/price",
                                      {"customer_id": customer_id, "lines": lines})
        redeem = 0
        if customer_id and n % 7 == 3 and priced["max_redeemable"] > 0:
            redeem = min(priced["max_redeemable"], self.rng.randint(50, 300))
            if not at_reader:
                # A typed number earns but does not spend: the customer shows the app's code.
                await self.store.present(till, customer_id)
                self.stats["app_codes"] += 1
        done = await self.store.pos(till, "POST", "/pos/v1/receipts", {
            "customer_id": customer_id, "lines": lines, "redeem": redeem,
            "payments": self.payments(n, priced, redeem)})
        self.stats["receipts"] += 1
        if customer_id:
            self.stats["member_receipts"] += 1
            self.served.add(customer_id)
        if redeem:
            self.stats["redemptions"] += 1
        self.sales.append((till, done, lines))

    def payments(self, n: int, priced: dict, redeem: int) -> dict:
        """Cash, a bank card (with the terminal's reference), or some of each."""
        # What is left to pay once points (1.00 each in the demo's programme) have paid.
        to_pay = priced["total"] - priced["discount"] - redeem * 100
        how = self.rng.choice(["cash", "card", "split"])
        card = to_pay if how == "card" else to_pay // 2 if how == "split" else 0
        if card <= 0:
            return {"cash": to_pay}
        return {"cards": [{"amount": card, "rrn": f"{612000000000 + n}",
                           "approval_code": f"{self.rng.randrange(16**6):06X}",
                           "terminal_id": "T-0001"}]}

    async def partial_return(self) -> None:
        """A customer brings back part of an earlier purchase, every other time to another
        till than the one that sold it (the central prices it from its copy of the sale)."""
        # Every other return is of a receipt partly paid with points, so points come back.
        redeemed = [s for s in self.sales[-40:] if s[1]["redeemed"]]
        pool = redeemed if redeemed and self.stats["returns"] % 2 else self.sales[-20:]
        till, sale, lines = self.rng.choice(pool)
        index = self.rng.randrange(len(lines))
        qty = lines[index]["qty"]
        back = qty // 2 if qty >= 2000 and qty % 2000 == 0 else qty
        tills = self.store.tills
        elsewhere = len(tills) > 1 and self.stats["returns"] % 2 == 0
        if elsewhere:
            await self.store.wait_synced()  # the central has the sale to price it from
            till = tills[(tills.index(till) + 1) % len(tills)]
        try:
            await self.store.pos(till, "POST", "/pos/v1/returns", {
                "receipt_id": sale["receipt_id"], "lines": [{"line": index, "qty": back}]})
        except ApiError as e:
            if e.status != 409:  # that line is already back: the customer keeps the rest
                raise
            return
        self.stats["returns"] += 1
        self.stats["returns_at_another_till"] += elsewhere


async def reconcile(store: StoreHarness) -> dict[str, Any]:
    """Compare the central's copy of each till's journal and its ledger with the tills."""
    from agent import journal as till_journal
    from agent.store import open_store

    totals = {"earned": 0, "redeemed": 0, "clawback": 0, "refund": 0}
    entries_match = True
    for till in store.tills:
        db = open_store(till.state / "agent.db")
        try:
            local = till_journal.entries_from(db, 1, 10**9)
        finally:
            db.close()
        held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
        entries_match &= [(e.seq, e.hash) for e in local] == [(h["seq"], h["hash"]) for h in held]
        for e in local:
            if e.customer_id:
                totals["earned"] += e.earned
                totals["redeemed"] += e.redeemed
                totals["clawback"] += e.clawback
                totals["refund"] += e.refund
    ledger = (await store.office("GET", "/api/v1/summary"))["ledger"]
    ledger_totals = {"earned": ledger.get("earn", 0), "redeemed": -ledger.get("redeem", 0),
                     "clawback": -ledger.get("clawback", 0), "refund": ledger.get("refund", 0)}
    return {"totals": totals, "ledger": ledger_totals,
            "matches": entries_match and totals == ledger_totals}


async def play(workdir: Path, receipts: int, tills: int, members: int, seed: int) -> dict:
    started = time.monotonic()
    rng = random.Random(seed)
    async with StoreHarness(workdir) as store:
        await store.start_central()
        for k in range(tills):
            await store.add_till(f"till-{k + 1}")
        day = Day(store, rng, members)
        await day.enrol_customers()
        for n in range(receipts):
            await day.sale(n)
            if n % 25 == 24:
                await day.partial_return()
        if day.stats["returns"] == 0 and day.sales:
            await day.partial_return()
        await store.wait_synced()
        check = await reconcile(store)
        # every redemption proved the customer present; the central found each proof good
        presence_alerts = len((await store.office("GET", "/api/v1/alerts?kind=presence"))[
            "alerts"])
    return {
        "receipts": day.stats["receipts"],
        "members": len(day.served),
        "member_receipts": day.stats["member_receipts"],
        "non_member_receipts": day.stats["receipts"] - day.stats["member_receipts"],
        "redemptions": day.stats["redemptions"],
        "redemptions_by_app_code": day.stats["app_codes"],
        "presence_alerts": presence_alerts,
        "returns": day.stats["returns"],
        "returns_at_another_till": day.stats["returns_at_another_till"],
        "points_earned": check["totals"]["earned"],
        "points_redeemed": check["totals"]["redeemed"],
        "points_clawed_back": check["totals"]["clawback"],
        "points_refunded": check["totals"]["refund"],
        "ledger_matches_journals": check["matches"],
        "tills": tills,
        "seconds": round(time.monotonic() - started, 1),
    }


def build_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a demo store: central, devices, tills, a day of sales")
    p.add_argument("--receipts", type=int, default=100, help="sales to play (%(default)s)")
    p.add_argument("--tills", type=int, default=2, help="tills in the store (%(default)s)")
    p.add_argument("--members", type=int, default=20, help="loyalty members (%(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the day's script")
    p.add_argument("--dir", type=Path, help="keep the store's files here (default: temporary)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.receipts < 1 or args.tills < 1 or args.members < 1:
        print("--receipts, --tills and --members must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tillpoint-demo-") as tmp:
        workdir = args.dir or Path(tmp)
        try:
            summary = asyncio.run(play(workdir, args.receipts, args.tills, args.members,
                                       args.seed))
        except KeyboardInterrupt:
            print("demo interrupted; every process it started was stopped", file=sys.stderr)
            return 130
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key.replace('_', ' '):>24}: {value}")
    return 0 if summary["ledger_matches_journals"] else 1
