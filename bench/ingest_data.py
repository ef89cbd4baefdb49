"""Journals of simulated tills for the ingest benchmark: real entries, real chains, real keys.

Each entry carries what a real till journals: the rules engine's settlement of a basket
(with its explanation) and the lines. Settlements are computed for a few dozen baskets and
reused, so building 50,000 entries takes seconds; the central hashes and stores every
entry's full content all the same.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import deliveries, ledger, rulesets
from central.clock import iso
from central.db import Connection, transaction
from protocol.batches import Batch, encode_batch
from protocol.journal import JournalEntry, genesis_hash, new_receipt_id
from protocol.rules import Customer, Receipt, ReceiptLine, compile_ruleset, settle
from protocol.rules.defaults import default_ruleset_doc
from protocol.signing import public_key_hex

# The balance every till saw for every member (templates are settled with it).
VIEW_BALANCE = 10_000
CATEGORIES = ("dairy", "bakery", "produce", "grocery/coffee", "sports/shoes", "cosmetics")


@dataclasses.dataclass(frozen=True)
class Template:
    """A priced basket: what a till journals for it, with and without points spent."""

    total: int
    earned_lots: list[dict[str, Any]]
    detail: dict[str, Any]
    redeemed: int


def templates(rng: random.Random, now: datetime, count: int = 40) -> list[Template]:
    rs = compile_ruleset({**default_ruleset_doc(), "version": 1})
    out = []
    for i in range(count):
        lines = []
        for k in range(rng.randint(1, 6)):
            price = rng.randint(30, 3000) * 100
            qty = 1000 * rng.randint(1, 3)
            lines.append({"sku": f"46{i:03d}{k}", "name": f"Item {i}-{k}", "qty": qty,
                          "price": price, "category": rng.choice(CATEGORIES), "brand": "",
                          "flags": []})
        receipt = Receipt(lines=tuple(
            ReceiptLine(sku=ln["sku"], qty=ln["qty"], price=ln["price"],
                        amount=(ln["qty"] * ln["price"] + 500) // 1000,
                        category=ln["category"]) for ln in lines), store="s1")
        redeem = rng.choice([0, 0, 0, 50, 100])
        s = settle(rs, receipt, Customer(id="c", balance=VIEW_BALANCE), now, redeem)
        lots = [{"points": lot.points, "activates": lot.activates_at.isoformat(),
                 "expires": lot.expires_at.isoformat() if lot.expires_at else
                 "9999-12-31T00:00:00+00:00"} for lot in s.lots if lot.points > 0]
        out.append(Template(total=s.paid_money, earned_lots=lots, redeemed=s.redeemed,
                            detail={"settlement": s.to_dict(), "lines": lines}))
    return out


@dataclasses.dataclass
class SimTill:
    till_id: str
    key: Ed25519PrivateKey
    epoch: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    entries: list[JournalEntry] = dataclasses.field(default_factory=list)

    def append(self, t: Template, customer_id: str | None, at: datetime) -> None:
        prev = self.entries[-1].hash if self.entries else genesis_hash(self.epoch)
        member = customer_id is not None
        lots = t.earned_lots if member else []
        # A member's entry carries the view of the customer the till priced with, as the
        # agent journals it: re-pricing at the central checks it against what it sent.
        detail = {**t.detail, "customer": {"id": customer_id, "balance": VIEW_BALANCE}} \
            if member else t.detail
        e = JournalEntry(
            seq=len(self.entries) + 1, epoch=self.epoch, prev_hash=prev, kind="sale",
            receipt_id=new_receipt_id(at), at=at.isoformat(timespec="seconds"), store="s1",
            customer_id=customer_id, ruleset_version=1, total=t.total,
            fiscal_doc=len(self.entries) + 1, earned=sum(lot["points"] for lot in lots),
            redeemed=t.redeemed if member else 0, lots=lots, detail=detail)
        self.entries.append(dataclasses.replace(e, hash=e.compute_hash()))

    def batches(self, size: int, sent_at: datetime) -> list[bytes]:
        return [encode_batch(self.key, Batch(self.till_id, self.epoch,
                                             tuple(self.entries[i:i + size]),
                                             sent_at.isoformat(timespec="seconds")))
                for i in range(0, len(self.entries), size)]


def fill(till: SimTill, rng: random.Random, tpls: list[Template], customers: list[str],
         receipts: int, start: datetime, span: timedelta, members: float = 0.6) -> None:
    step = span / max(1, receipts)
    for i in range(receipts):
        cid = rng.choice(customers) if rng.random() < members else None
        till.append(rng.choice(tpls), cid, start + step * i)


def delivered_views(till: SimTill) -> list[dict[str, Any]]:
    """The views of its members the till priced with, as a customer delta delivered them
    (central.deliveries records them; re-pricing honours only those)."""
    members = sorted({e.customer_id for e in till.entries if e.customer_id is not None})
    return [{"id": c, "available": VIEW_BALANCE, "pending": 0} for c in members]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def prepare(conn: Connection, tills: int, per_till: int, batch: int, customers: int,
            rng: random.Random) -> tuple[list[list[bytes]], datetime]:
    """A central's database with `tills` enrolled tills and `customers` members, and each
    till's journal of `per_till` receipts cut into signed batches of `batch` entries (in
    order), with the views its members were priced with recorded as delivered. Returns the
    batches per till and the time they are sent at."""
    sims, ids = _enrol(conn, tills, customers, rng)
    at = now()
    tpls = templates(rng, at - timedelta(hours=1))
    rounds: list[list[bytes]] = []
    for sim in sims:
        fill(sim, rng, tpls, ids, per_till, at - timedelta(hours=1), timedelta(hours=1))
        rounds.append(sim.batches(batch, at))
    with transaction(conn):
        for sim in sims:
            deliveries.record_views(conn, sim.till_id, delivered_views(sim),
                                    at - timedelta(days=1))
    return rounds, at


def _enrol(conn: Connection, tills: int, customers: int, rng: random.Random) -> tuple[
        list[SimTill], list[str]]:
    at = now()
    sims = []
    delivered = at - timedelta(days=1)
    rulesets.ensure_default(conn, delivered)  # the tills priced with it (version 1)
    with transaction(conn):
        for i in range(tills):
            key = Ed25519PrivateKey.generate()
            sim = SimTill(f"till_{i:05d}", key)
            # As central.tills.enrol leaves it, its key found sound.
            conn.execute("INSERT INTO tills (id, name, store, public_key, enrolled_at,"
                         " sound_key) VALUES (?, ?, ?, ?, ?, ?)",
                         (sim.till_id, f"till {i}", "s1", public_key_hex(key), iso(at),
                          public_key_hex(key)))
            deliveries.record_ruleset(conn, sim.till_id, 1, delivered)
            sims.append(sim)
        ids = [f"cus_{i:08d}" for i in range(customers)]
        conn.executemany("INSERT INTO customers (id, created_at) VALUES (?, ?)",
                         [(c, iso(at)) for c in ids])
        for c in ids:
            if rng.random() < 0.9:  # most members hold a welcome bonus; a few spend into debt
                ledger.earn(conn, c, 500, at - timedelta(days=30), at + timedelta(days=300),
                            at - timedelta(days=30), ledger.Source(reason="welcome"),
                            kind="bonus")
    return sims, ids
