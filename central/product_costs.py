"""Head office's product cost feed: the cost price of each SKU, in kopecks.

Uploaded whole (PUT replaces the feed: a SKU left out has no cost from then on) as CSV
(`sku,cost` with that header) or JSON (`{"costs": [{"sku": ..., "cost": ...}, ...]}`).
Every row is checked before anything is stored, and each mistake names its row and field,
so a feed of 50,000 rows with one typo is refused with that row's number rather than
half-stored. Costs are current costs: campaign ROI (central.campaign_roi) prices the goods
of any period with the feed as it is when asked. The upload is audited as a count and a
digest of its rows (SHA-256 over the sorted `sku<TAB>cost` lines), not row by row.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central.clock import iso
from central.db import Connection, transaction
from central.errors import Refused
from protocol import bounds

COST = bounds.PRICE  # a unit's cost is bounded like a unit's price
MAX_ROWS = bounds.MAX_LIST
CSV_HEADER = ("sku", "cost")
MAX_ERRORS = 20  # named in one refusal; the rest are counted


@dataclass(frozen=True)
class Feed:
    costs: dict[str, int]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for sku in sorted(self.costs):
            h.update(f"{sku}\t{self.costs[sku]}\n".encode())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"skus": len(self.costs), "digest": self.digest}


def parse_csv(raw: bytes) -> Feed:
    """A CSV feed: a header `sku,cost`, then one SKU a row (row 1 is the first after it)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Refused(400, f"the CSV is not UTF-8 (byte {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip().lower() for h in header) != CSV_HEADER:
            raise Refused(400, "the CSV's first line must be the header 'sku,cost'")
        rows: list[tuple[str, Mapping[str, Any]]] = []
        for n, row in enumerate(reader, start=1):
            if not row or row == [""]:
                continue  # a blank line, e.g. the last one
            where = f"row {n} (line {reader.line_num})"
            if len(row) != 2:
                raise_rows([f"{where}: has {len(row)} fields, expected 2 (sku,cost)"])
            sku, cost = row[0].strip(), row[1].strip()
            value: object = int(cost) if bounds.ascii_digits(cost) and len(cost) < 16 else cost
            rows.append((where, {"sku": sku, "cost": value}))
            if len(rows) > MAX_ROWS:
                raise Refused(400, f"the feed has more than {MAX_ROWS} rows")
    except csv.Error as e:
        raise Refused(400, f"the CSV is malformed at line {reader.line_num}: {e}") from None
    return _checked(rows)


def parse_json(body: Mapping[str, Any]) -> Feed:
    """A JSON feed: {"costs": [{"sku": "A-1", "cost": 4550}, ...]}."""
    unknown = sorted(set(body) - {"costs", "actor"})
    if unknown:
        raise Refused(400, f"field {unknown[0]!r} is unknown (give 'costs')")
    items = body.get("costs")
    if not isinstance(items, list):
        raise Refused(400, "field 'costs' must be a list of {\"sku\", \"cost\"} objects")
    if len(items) > MAX_ROWS:
        raise Refused(400, f"field 'costs' has more than {MAX_ROWS} rows")
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for i, item in enumerate(items):
        where = f"costs[{i}]"
        if not isinstance(item, Mapping):
            raise_rows([f"{where}: must be an object with 'sku' and 'cost'"])
        extra = sorted(set(item) - set(CSV_HEADER))
        if extra:
            raise_rows([f"{where}.{extra[0]}: unknown field (give sku and cost)"])
        rows.append((where, item))
    return _checked(rows)


def _checked(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> Feed:
    costs: dict[str, int] = {}
    first: dict[str, str] = {}
    problems: list[str] = []
    for where, item in rows:
        sku, cost = item.get("sku"), item.get("cost")
        try:
            bounds.text(sku, "sku", required=True)
        except bounds.OutOfBounds as e:
            problems.append(f"{where}: {e}")
            continue
        if isinstance(cost, bool) or not isinstance(cost, int):
            shown = "nothing" if cost in (None, "") else repr(cost)
            problems.append(f"{where}: field 'cost' must be a whole number of kopecks,"
                            f" got {shown}")
            continue
        if not COST.holds(cost):
            problems.append(f"{where}: field 'cost' must be from 0 to {COST.hi} kopecks,"
                            f" got {cost}")
            continue
        if sku in first:
            problems.append(f"{where}: field 'sku' {sku!r} is given twice (first at"
                            f" {first[sku]})")
            continue
        first[sku] = where
        costs[sku] = cost
    if problems:
        raise_rows(problems)
    return Feed(costs)


def raise_rows(problems: list[str]) -> None:
    more = len(problems) - MAX_ERRORS
    text = "; ".join(problems[:MAX_ERRORS]) + (f"; and {more} more" if more > 0 else "")
    raise Refused(400, f"the feed is refused, nothing stored: {text}")


def current(conn: Connection) -> dict[str, Any]:
    """What the feed holds now: its count, digest, and who uploaded it when."""
    row = conn.execute("SELECT skus, digest, uploaded_at, uploaded_by FROM product_cost_feed"
                       " WHERE id = 1").fetchone()
    if row is None:
        return {"skus": 0, "digest": Feed({}).digest, "uploaded_at": None,
                "uploaded_by": None}
    return {"skus": row["skus"], "digest": row["digest"], "uploaded_at": row["uploaded_at"],
            "uploaded_by": row["uploaded_by"]}


def replace(conn: Connection, feed: Feed, actor: str, now: datetime) -> dict[str, Any]:
    """Store `feed` in place of the one before (in the caller's transaction, if any)."""
    with transaction(conn):
        conn.execute("DELETE FROM product_costs")
        conn.executemany("INSERT INTO product_costs (sku, cost) VALUES (?, ?)",
                         sorted(feed.costs.items()))
        conn.execute("DELETE FROM product_cost_feed")
        conn.execute("INSERT INTO product_cost_feed (id, skus, digest, uploaded_at,"
                     " uploaded_by) VALUES (1, ?, ?, ?, ?)",
                     (len(feed.costs), feed.digest, iso(now), actor))
    return current(conn)


def costs_of(conn: Connection, skus: Iterable[str]) -> dict[str, int]:
    """The costs the feed has for `skus` (those it has none for are absent)."""
    wanted = sorted(set(skus))
    out: dict[str, int] = {}
    for i in range(0, len(wanted), 500):  # under every database's bound-parameter limit
        part = wanted[i:i + 500]
        for row in conn.execute(
                f"SELECT sku, cost FROM product_costs WHERE sku IN ({','.join('?' * len(part))})",
                part):
            out[row["sku"]] = row["cost"]
    return out


def page(conn: Connection, after: str, limit: int) -> list[dict[str, Any]]:
    return [{"sku": r["sku"], "cost": r["cost"]} for r in conn.execute(
        "SELECT sku, cost FROM product_costs WHERE sku > ? ORDER BY sku LIMIT ?",
        (after, limit))]
