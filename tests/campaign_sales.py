"""Sales in the central's journal as a till journals them (settled by the rules engine with
the newest rule set, lines, the customer as pricing saw it) and as ingest numbers them."""

from __future__ import annotations

from datetime import datetime

from central import db, ingest_log, rulesets
from central.db import Connection
from protocol import rules
from protocol.wire import pack


def line(sku: str, category: str, price: int, qty: int = 1000) -> rules.ReceiptLine:
    return rules.ReceiptLine(sku, qty, price, (qty * price + 500) // 1000, category=category)


def journal_sales(conn: Connection, till: str, sales: list[tuple[rules.Receipt,
                  rules.Customer | None]], at: datetime) -> list[rules.Settlement]:
    """Journal `sales` for `till` in one batch; returns their settlements."""
    current = rulesets.current(conn)
    rs = rules.compile_ruleset(current.doc)
    first = (conn.execute("SELECT MAX(seq) FROM journal WHERE till_id = ?",
                          (till,)).fetchone()[0] or 0) + 1
    rows, out = [], []
    for i, (receipt, customer) in enumerate(sales):
        s = rules.settle(rs, receipt, customer, at)
        out.append(s)
        body = pack({
            "kind": "sale", "at": at.isoformat(), "store": receipt.store,
            "customer_id": customer.id if customer else None,
            "ruleset_version": current.version, "earned": s.earned, "redeemed": 0,
            "detail": {"settlement": s.to_dict(),
                       "lines": [{"sku": ln.sku, "name": ln.sku, "qty": ln.qty,
                                  "price": ln.price, "category": ln.category,
                                  "brand": ln.brand, "flags": sorted(ln.flags)}
                                 for ln in receipt.lines],
                       "customer": customer.to_dict() if customer else None}})
        rows.append((till, first + i, f"{till}-r{first + i}",
                     customer.id if customer else None, body))
    with db.transaction(conn):
        conn.executemany(
            "INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
            " customer_id, body, received_at) VALUES (?, 'ep', ?, '', '', 'sale', ?, ?, ?, '')",
            rows)
        ingest_log.record(conn, [(till, "ep", first, first + len(rows) - 1)])
    return out
