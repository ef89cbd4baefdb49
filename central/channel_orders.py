"""Orders from the web shop and the app: priced, confirmed and returned as a till's sales.

Why every order is an entry in the journal of its channel's virtual till (central.channels),
not rows written beside the journal: everything the central does with sales follows the
journal, in the ingest sequence (central.ingest_log), and would otherwise need a second
source, a second cursor and a second set of bugs in each follower:

- the ledger (central.settlement) earns, spends and takes back through the very code that
  settles a till's batch: lots, the soonest-expiring-first redemption, debts, tier spend,
  purchase counts, the customer marked changed for the tills' deltas;
- returns (central.returns) bound a return by the central's record of its sale and what
  earlier returns took, whichever till or channel takes it: a web order can be returned at
  a till (the till asks the central for the sale as for any other) and the other way round;
- the followers (KPIs, campaign budgets and figures, fraud rules, messages, segments) and
  the customer's history see orders as they see receipts, with the channel's store, at no
  cost and with no change to any of them;
- the journal's hash chain and append-only storage hold orders as well as receipts.

What differs from a till is that the central priced the order itself, with the newest rule
set and its own record of the customer, in the transaction that journals it: so its points
are credited at once with the rule set's dates (central.credits.confirm, the dates from
protocol.lots through the engine) instead of waiting, provisional, for re-pricing, which
passes virtual tills by (there is nothing a till could have got wrong); and no presence
proof is asked for, since the channel signed its customer in itself.

Idempotent by the channel's own ids: a confirm is keyed by its order id, a return by order
and return id. The first answer is kept with a hash of the request; a repeat with the same
body gets that answer and moves nothing, another body gets 409. Each channel's requests
are applied one at a time (a lock on its virtual till, which its journal needs anyway), so
two confirms of one order arriving at two central processes at once move points once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from central import credits, ingest, ingest_log, ledger, offer_grants, returns, rulesets, tiers
from central.channels import Channel
from central.clock import iso, parse_iso
from central.db import Connection, transaction
from central.errors import Refused
from protocol import bounds, lots, rules
from protocol import payments as pay
from protocol.batches import Batch
from protocol.journal import JournalEntry, genesis_hash, new_receipt_id

MAX_LINES = 500
ORDER_ID = bounds.IntRange(1, 64, "characters")  # length of an order or return id


# -- input ---------------------------------------------------------------------------------

def _field(body: Mapping[str, Any], name: str, kind: type, *, required: bool = True,
           default: Any = None, within: bounds.IntRange | None = None) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise Refused(400, f"field {name!r} is required")
        return default
    value = body[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise Refused(400, f"field {name!r} must be of type {kind.__name__}")
    if within is not None:
        within.check(value, name)
    elif kind is str:
        bounds.text(value, name)
    return value


def check_id(value: str, name: str) -> str:
    """An order or return id as the channel names it: 1..64 printable characters."""
    bounds.text(value, name, required=True, max_len=ORDER_ID.hi)
    if not value.strip():
        raise Refused(400, f"field {name!r} must not be blank")
    return value


def order_lines(body: Mapping[str, Any]) -> tuple[rules.ReceiptLine, ...]:
    """`lines`: [{"sku", "qty" (thousandths), "price" (kopecks a unit), "category"?,
    "brand"?, "flags"?}], each field checked and named (`lines[2].qty`)."""
    raw = _field(body, "lines", list)
    if not raw:
        raise Refused(400, "field 'lines' must hold at least one line")
    if len(raw) > MAX_LINES:
        raise Refused(400, f"field 'lines' holds more than {MAX_LINES} lines")
    out = []
    for i, ln in enumerate(raw):
        where = f"lines[{i}]"
        if not isinstance(ln, dict):
            raise Refused(400, f"field {where!r} must be an object")
        unknown = set(ln) - {"sku", "qty", "price", "category", "brand", "flags"}
        if unknown:
            raise Refused(400, f"field {where!r} has unknown fields {sorted(unknown)}")
        sku = ln.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise Refused(400, f"field '{where}.sku' must be a non-blank string")
        bounds.text(sku, f"{where}.sku")
        qty = _line_int(ln, "qty", where, bounds.QTY)
        price = _line_int(ln, "price", where, bounds.PRICE)
        flags = ln.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise Refused(400, f"field '{where}.flags' must be a list of strings")
        for j, f in enumerate(flags):
            bounds.text(f, f"{where}.flags[{j}]")
        category = ln.get("category", "")
        brand = ln.get("brand", "")
        for name, value in (("category", category), ("brand", brand)):
            if not isinstance(value, str):
                raise Refused(400, f"field '{where}.{name}' must be of type str")
            bounds.text(value, f"{where}.{name}")
        # Rounded half up to the kopeck, as the fiscal printer does and re-pricing reads.
        amount = (qty * price + 500) // 1000
        bounds.MONEY.check(amount, f"{where} amount (qty × price)")
        out.append(rules.ReceiptLine(sku=sku, qty=qty, price=price, amount=amount,
                                     category=category, brand=brand,
                                     flags=frozenset(flags)))
    bounds.MONEY.check(sum(ln.amount for ln in out), "lines' total")
    return tuple(out)


def _line_int(ln: Mapping[str, Any], name: str, where: str, within: bounds.IntRange) -> int:
    value = ln.get(name)
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise Refused(400, f"field '{where}.{name}' must be an integer ({within.unit})")
    return within.check(value, f"{where}.{name}")


def _customer_id(body: Mapping[str, Any]) -> str | None:
    return _field(body, "customer_id", str, required=False)


def _redeem(body: Mapping[str, Any]) -> int:
    return _field(body, "redeem", int, required=False, default=0, within=bounds.POINTS)


# -- the rules, as the channel's customer meets them ---------------------------------------

_compiled: dict[str, rules.RuleSet] = {}


def newest_ruleset(conn: Connection) -> rules.RuleSet:
    """The newest rule set, compiled once per document (by its hash, not its version:
    versions repeat across databases)."""
    text = conn.execute("SELECT doc FROM rulesets ORDER BY version DESC LIMIT 1"
                        ).fetchone()["doc"]
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest not in _compiled:
        _compiled.clear()  # one is enough: the newest
        _compiled[digest] = rules.compile_ruleset(json.loads(text))
    return _compiled[digest]


def customer_view(conn: Connection, customer_id: str | None, now: datetime) -> rules.Customer:
    """The customer as the central holds them now, in the engine's terms: what a till would
    have been sent in a delta, and the balance as of now."""
    if customer_id is None:
        return rules.ANONYMOUS
    row = conn.execute(
        "SELECT id, tier, segments, birthday, offers, purchases, window_start, window_spend,"
        " granted_offers FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise Refused(404, "field 'customer_id': no such customer")
    tier, spend = tiers.effective(rulesets.current_tiers(conn), row["tier"],
                                  row["window_start"], row["window_spend"], now)
    birthday = (rules.birthday_from_wire(rules.month_day(date.fromisoformat(row["birthday"])))
                if row["birthday"] else None)
    return rules.Customer(
        id=row["id"], balance=ledger.balance(conn, row["id"], now).available, tier=tier,
        segments=frozenset(json.loads(row["segments"])), birthday=birthday,
        purchase_count=row["purchases"], qualifying_spend=spend,
        activated_offers=frozenset(json.loads(row["offers"]))
        | offer_grants.live(row["granted_offers"], now))


def _receipt(channel: Channel, lines: tuple[rules.ReceiptLine, ...]) -> rules.Receipt:
    # The channel's kind is the rules' channel; a store the rule set declares with a channel
    # of its own keeps that one (protocol.rules.place.placed).
    return rules.Receipt(lines=lines, store=channel.store, channel=channel.kind)


def price(conn: Connection, channel: Channel, body: Mapping[str, Any],
          now: datetime) -> dict[str, Any]:
    """What the order would earn and cost, the most points it may spend and why; with
    `redeem`, the settlement for that spend. Moves nothing."""
    lines = order_lines(body)
    redeem = _redeem(body)
    rs = newest_ruleset(conn)
    customer = customer_view(conn, _customer_id(body), now)
    receipt = _receipt(channel, lines)
    pricing = rules.price(rs, receipt, customer, now)
    settled = _settle(rs, receipt, customer, now, redeem)
    return {**_settlement_view(settled), "max_redeemable": pricing.max_redeemable,
            "redeem_reason": pricing.redeem_reason,
            "balance": customer.balance if customer.is_member else None}


def _settle(rs: rules.RuleSet, receipt: rules.Receipt, customer: rules.Customer,
            now: datetime, redeem: int) -> rules.Settlement:
    if redeem and not customer.is_member:
        raise Refused(400, "field 'redeem': only a member spends points (give 'customer_id')")
    try:
        return rules.settle(rs, receipt, customer, now, redeem)
    except rules.RedemptionError as e:
        raise Refused(409, f"field 'redeem': {e}") from None
    except rules.InputError as e:
        raise Refused(400, f"field 'lines': {e}") from None


def _settlement_view(s: rules.Settlement) -> dict[str, Any]:
    return {
        "ruleset_version": s.ruleset_version, "customer_id": s.customer_id,
        "lines": [{"index": ln.index, "sku": ln.sku, "qty": ln.qty, "amount": ln.amount,
                   "discount": ln.discount, "redeemed": ln.redeemed,
                   "redeemed_money": ln.redeemed_money, "paid": ln.paid,
                   "earned": ln.earned_in(s.unit), "return_days": ln.return_days}
                  for ln in s.lines],
        "total_amount": s.total_amount, "discount": s.discount, "redeemed": s.redeemed,
        "redeemed_money": s.redeemed_money, "to_pay": s.paid_money, "earned": s.earned,
        "lots": [{"points": lot.points, "activates_at": iso(lot.activates_at),
                  "expires_at": iso(lot.expires_at) if lot.expires_at else None}
                 for lot in s.lots if lot.unit == s.unit and lot.points > 0],
        "campaigns": sorted(s.campaign_totals),
    }


# -- idempotency ---------------------------------------------------------------------------

def _body_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def _repeat(conn: Connection, channel: Channel, key: str, digest: str) -> dict | None:
    """The answer already given to this request, or None if it is new; 409 if the same
    id came with another body."""
    row = conn.execute("SELECT body_hash, answer FROM channel_requests"
                       " WHERE channel_id = ? AND request_key = ?",
                       (channel.id, key)).fetchone()
    if row is None:
        return None
    if row["body_hash"] != digest:
        raise Refused(409, f"{key.split(':')[0]} {key.split(':', 1)[1]!r} was already made"
                           " with another body; a repeat must send the same body")
    return json.loads(row["answer"])


def _keep(conn: Connection, channel: Channel, key: str, order_id: str, digest: str,
          receipt_id: str, answer: dict, now: datetime) -> None:
    conn.execute(
        "INSERT INTO channel_requests (channel_id, request_key, order_id, body_hash,"
        " receipt_id, answer, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (channel.id, key, order_id, digest, receipt_id, json.dumps(answer), iso(now)))


# -- the virtual till's journal ------------------------------------------------------------

def _journal(conn: Connection, channel: Channel, draft: JournalEntry,
             now: datetime) -> ingest_log.Range:
    """Append `draft` to the channel's journal and apply it as ingest applies a till's
    batch; returns its range for the ingest sequence (recorded last, before COMMIT)."""
    row = conn.execute("SELECT acked_seq, last_hash FROM till_epochs"
                       " WHERE till_id = ? AND epoch = ?",
                       (channel.till_id, channel.epoch)).fetchone()
    seq, prev = (row[0] + 1, row[1]) if row else (1, genesis_hash(channel.epoch))
    entry = replace(draft, seq=seq, epoch=channel.epoch, prev_hash=prev)
    raw = entry.encoded_body()
    entry = replace(entry, hash=hashlib.sha256(raw).hexdigest())
    batch = Batch(channel.till_id, channel.epoch, (entry,), iso(now), (raw,))
    ingest.lock_batches(conn, [batch])
    try:
        ack = ingest.apply(conn, batch, now)
    except ingest.BatchRefused as e:  # the central's own entry: a bug, not the caller's
        raise RuntimeError(f"channel {channel.id}: its own entry was refused: {e}") from e
    assert ack.applied == 1
    return ack.range(channel.till_id)


def _lock(conn: Connection, channel: Channel, customer_id: str | None) -> None:
    """Tills, then customers (central.ingest.lock_batches' order): one request of a channel
    at a time, and the customer's lots still while they are read and spent."""
    conn.dialect.lock(conn, f"till:{channel.till_id}")
    if customer_id is not None:
        ledger.lock_customers(conn, [customer_id])


# -- confirm -------------------------------------------------------------------------------

def confirm(conn: Connection, channel: Channel, order_id: str, body: Mapping[str, Any],
            now: datetime) -> dict[str, Any]:
    """Journal the order as a sale: points spent from the customer's lots, points earned
    as lots with the rule set's dates. The same order id answers as it did the first time."""
    check_id(order_id, "order_id")
    lines = order_lines(body)
    redeem = _redeem(body)
    customer_id = _customer_id(body)
    key, digest = f"order:{order_id}", _body_hash(body)
    with transaction(conn):
        _lock(conn, channel, customer_id)
        if (answer := _repeat(conn, channel, key, digest)) is not None:
            return answer
        rs = newest_ruleset(conn)
        customer = customer_view(conn, customer_id, now)
        receipt = _receipt(channel, lines)
        settled = _settle(rs, receipt, customer, now, redeem)
        paid = settled.paid_money
        # Paid online by card; a till returning the order in a store refunds from this split.
        split = pay.Payments(0, (pay.CardPayment(paid, "", "", ""),) if paid else (),
                             settled.redeemed, settled.redeemed_money)
        earned = [lot for lot in settled.lots if lot.unit == settled.unit and lot.points > 0]
        receipt_id = new_receipt_id(now)
        draft = JournalEntry(
            seq=0, epoch="", prev_hash="", kind="sale", receipt_id=receipt_id, at=iso(now),
            store=channel.store, customer_id=customer.id, ruleset_version=rs.version,
            total=paid, fiscal_doc=0, earned=sum(lot.points for lot in earned),
            redeemed=settled.redeemed,
            lots=[{"points": lot.points, "activates": iso(lot.activates_at),
                   "expires": iso(lot.expires_at) if lot.expires_at else credits.FAR}
                  for lot in earned],
            detail={"settlement": settled.to_dict(),
                    "lines": [ln.to_dict() for ln in lines],
                    **({"customer": rules.journal_view(customer, rs, channel.store, now)}
                       if customer.is_member else {}),
                    "payments": split.to_dict(),
                    "order": {"channel": channel.id, "order_id": order_id}})
        journalled = _journal(conn, channel, draft, now)
        if earned:
            # Priced here, now: the central's own lots replace the provisional one at once.
            credits.confirm(conn, channel.till_id, receipt_id, earned, now, held=False)
        answer = {"order_id": order_id, "receipt_id": receipt_id, "status": "confirmed",
                  **_settlement_view(settled)}
        if customer.is_member:
            answer["balance"] = ledger.balance(conn, customer.id, now).to_dict()
        _keep(conn, channel, key, order_id, digest, receipt_id, answer, now)
        ingest_log.record(conn, [journalled])  # last, before COMMIT (central.ingest_log)
    return answer


# -- return --------------------------------------------------------------------------------

def returned_lines(body: Mapping[str, Any]) -> dict[int, int]:
    """`lines`: [{"index": line of the order, "qty": thousandths}], each line once."""
    raw = _field(body, "lines", list)
    if not raw:
        raise Refused(400, "field 'lines' must hold at least one line to return")
    out: dict[int, int] = {}
    for i, ln in enumerate(raw[:MAX_LINES + 1]):
        where = f"lines[{i}]"
        if not isinstance(ln, dict) or set(ln) - {"index", "qty"}:
            raise Refused(400, f"field {where!r} must be an object of 'index' and 'qty'")
        idx = _line_int(ln, "index", where, bounds.IntRange(0, MAX_LINES - 1, "line"))
        qty = _line_int(ln, "qty", where, bounds.QTY)
        if idx in out:
            raise Refused(400, f"field '{where}.index': line {idx} is named twice")
        out[idx] = qty
    return out


def return_order(conn: Connection, channel: Channel, order_id: str, return_id: str,
                 body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Take back part or all of an order: its earned points in proportion, its spent points
    given back, bounded by what was sold and returned before (central.returns)."""
    check_id(order_id, "order_id")
    check_id(return_id, "return_id")
    returning = returned_lines(body)
    key, digest = f"return:{order_id}/{return_id}", _body_hash(body)
    with transaction(conn):
        conn.dialect.lock(conn, f"till:{channel.till_id}")
        if (answer := _repeat(conn, channel, key, digest)) is not None:
            return answer
        receipt_id = _receipt_of(conn, channel, order_id)
        found = returns.sale(conn, receipt_id)
        assert found is not None  # journalled with the order
        sale = found[1]
        if sale.customer_id is not None:
            ledger.lock_customers(conn, [sale.customer_id])
        # A lease as a till takes one: refused while a till returns this order, and beyond
        # what was sold less what any till or this channel returned before.
        lease = returns.reserve(conn, channel.till_id, receipt_id, returning, now)
        settled = rules.Settlement.from_dict(sale.detail["settlement"])
        before = returns.returned(conn, receipt_id)
        rs = newest_ruleset(conn)
        sold_at = parse_iso(sale.at)
        zone = rules.place_of(rs, sale.store).time_zone or UTC
        late = {i for i in returning
                if now >= lots.activation(sold_at, settled.lines[i].return_days, zone)}
        try:
            outcome = rules.price_return(rs, settled, before, returning, past_window=late)
        except rules.ReturnError as e:
            raise Refused(409, f"field 'lines': {e}") from None
        return_receipt = new_receipt_id(now)
        draft = JournalEntry(
            seq=0, epoch="", prev_hash="", kind="return", receipt_id=return_receipt,
            at=iso(now), store=sale.store, customer_id=sale.customer_id,
            ruleset_version=sale.ruleset_version, total=outcome.money, fiscal_doc=0,
            clawback=outcome.clawback, refund=outcome.refund, original_receipt_id=receipt_id,
            detail={"return": outcome.to_dict(),
                    "lines": {str(k): v for k, v in sorted(returning.items())},
                    "lease": lease["lease"],
                    "order": {"channel": channel.id, "order_id": order_id,
                              "return_id": return_id}})
        journalled = _journal(conn, channel, draft, now)
        answer = {"order_id": order_id, "return_id": return_id, "receipt_id": return_receipt,
                  "money": outcome.money, "clawback": outcome.clawback,
                  "refund": outcome.refund, "complete": outcome.complete,
                  "returned": {str(k): v for k, v in sorted(outcome.returned_after.items())},
                  "points_after_window": outcome.points_after_window}
        if sale.customer_id is not None:
            answer["balance"] = ledger.balance(conn, sale.customer_id, now).to_dict()
        _keep(conn, channel, key, order_id, digest, return_receipt, answer, now)
        ingest_log.record(conn, [journalled])
    return answer


def _receipt_of(conn: Connection, channel: Channel, order_id: str) -> str:
    """The receipt of this channel's order; another channel's orders are not found."""
    row = conn.execute("SELECT receipt_id FROM channel_requests WHERE channel_id = ?"
                       " AND request_key = ?", (channel.id, f"order:{order_id}")).fetchone()
    if row is None:
        raise Refused(404, f"field 'order_id': this channel has no order {order_id!r}")
    return row["receipt_id"]


def order(conn: Connection, channel: Channel, order_id: str) -> dict[str, Any]:
    """The order as confirmed, with its returns in order."""
    check_id(order_id, "order_id")
    _receipt_of(conn, channel, order_id)
    rows = conn.execute("SELECT request_key, answer FROM channel_requests"
                        " WHERE channel_id = ? AND order_id = ? ORDER BY at, request_key",
                        (channel.id, order_id)).fetchall()
    confirmed = next(json.loads(r["answer"]) for r in rows
                     if r["request_key"] == f"order:{order_id}")
    return {**confirmed, "returns": [json.loads(r["answer"]) for r in rows
                                     if r["request_key"].startswith("return:")]}
