"""What the POS sends, checked before anything is priced or printed: clear errors naming the
field for impossible baskets. The bounds are protocol.bounds': a line's quantity and price,
and what a line and the receipt come to, so nothing reaches the fiscal printer that its
registers or the journal could not hold (a refused receipt leaves nothing pending)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import bounds, cashiers, vat

MAX_LINES = 500
MAX_QTY = bounds.MAX_QTY  # thousandths: a million units
MAX_PRICE = bounds.MAX_PRICE  # kopecks: ten million roubles a unit
MAX_FLAGS = 50


class BadRequest(ValueError):
    pass


def checked(value: Any, field: str, *, max_len: int = bounds.MAX_TEXT) -> str:
    """A string of the POS's: valid Unicode, no control characters, bounded; BadRequest."""
    try:
        return bounds.text(value, field, max_len=max_len)
    except bounds.OutOfBounds as e:
        raise BadRequest(str(e)) from None


@dataclass(frozen=True)
class DraftLine:
    sku: str
    name: str
    qty: int  # thousandths
    price: int  # kopecks per unit
    category: str = ""
    brand: str = ""
    flags: tuple[str, ...] = ()
    vat: str | None = None  # VAT rate (protocol.vat); the store's one rate if it declares one

    @property
    def amount(self) -> int:
        # Rounded half up to the kopeck, exactly as the fiscal printer rounds a line.
        return (self.qty * self.price + 500) // 1000

    def to_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "name": self.name, "qty": self.qty, "price": self.price,
                "category": self.category, "brand": self.brand, "flags": list(self.flags),
                "vat": self.vat}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DraftLine:
        """A line as a sale stored it (sales stored before VAT have no "vat")."""
        return cls(sku=d["sku"], name=d["name"], qty=d["qty"], price=d["price"],
                   category=d.get("category", ""), brand=d.get("brand", ""),
                   flags=tuple(d.get("flags", ())), vat=d.get("vat"))


def _int(obj: dict, key: str, where: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{where}.{key} must be an integer")
    if not lo <= value <= hi:
        raise BadRequest(f"{where}.{key} must be between {lo} and {hi}")
    return value


def _str(obj: dict, key: str, where: str, required: bool = False,
         controls: bool = False) -> str:
    """`controls`: control characters are let through (an item's name from the POS's own
    database; the receipt printer's text layer makes them harmless), the rest holds."""
    value = obj.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"{where}.{key} must be a{' non-empty' if required else ''} string")
    if controls and len(value) <= bounds.MAX_TEXT and bounds.valid_unicode(value):
        return value
    return checked(value, f"{where}.{key}")


def _vat(obj: dict, where: str) -> str | None:
    if obj.get("vat") is None:
        return None  # the checkout refuses it unless the store declares one rate
    try:
        return vat.parse_rate(obj["vat"], f"{where}.vat")
    except vat.VatError as e:
        raise BadRequest(str(e)) from None


def parse_lines(raw: Any) -> tuple[DraftLine, ...]:
    if not isinstance(raw, list) or not raw:
        raise BadRequest("lines must be a non-empty list")
    if len(raw) > MAX_LINES:
        raise BadRequest(f"a receipt has at most {MAX_LINES} lines")
    lines = []
    for i, item in enumerate(raw):
        where = f"lines[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        flags = item.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise BadRequest(f"{where}.flags must be a list of strings")
        if len(flags) > MAX_FLAGS:
            raise BadRequest(f"{where}.flags must hold at most {MAX_FLAGS} flags")
        for j, flag in enumerate(flags):
            checked(flag, f"{where}.flags[{j}]")
        lines.append(DraftLine(
            sku=_str(item, "sku", where, required=True),
            name=_str(item, "name", where, controls=True) or _str(item, "sku", where),
            qty=_int(item, "qty", where, 1, MAX_QTY),
            price=_int(item, "price", where, 0, MAX_PRICE),
            category=_str(item, "category", where),
            brand=_str(item, "brand", where),
            flags=tuple(flags),
            vat=_vat(item, where),
        ))
        if lines[-1].amount > bounds.MAX_MONEY:
            raise BadRequest(f"{where} comes to {lines[-1].amount} kopecks (qty x price), more"
                             f" than a receipt may hold ({bounds.MAX_MONEY})")
    total = sum(ln.amount for ln in lines)
    if total > bounds.MAX_MONEY:
        raise BadRequest(f"lines come to {total} kopecks, more than a receipt may hold"
                         f" ({bounds.MAX_MONEY})")
    return tuple(lines)


def parse_return_lines(raw: Any, bought: int) -> dict[int, int]:
    """{line index: quantity in thousandths} from [{"line": i, "qty": q}, ...]."""
    if not isinstance(raw, list) or not raw:
        raise BadRequest("lines must be a non-empty list of {line, qty}")
    out: dict[int, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise BadRequest(f"lines[{i}] must be an object")
        index = _int(item, "line", f"lines[{i}]", 0, bought - 1)
        out[index] = out.get(index, 0) + _int(item, "qty", f"lines[{i}]", 1, MAX_QTY)
    return out


CASHIER_HEADER = "Cashier-Id"


def parse_cashier(header: str | None, body: dict[str, Any]) -> str:
    """Who is at the till: the body's `cashier`, or the `Cashier-Id` header; required on
    every receipt and return, and journalled with it."""
    value = body.get("cashier", header)
    if value is None:
        raise BadRequest("cashier is required: the id of the cashier at the till (body field"
                         f" 'cashier' or header '{CASHIER_HEADER}')")
    if header is not None and "cashier" in body and header != body["cashier"]:
        raise BadRequest(f"cashier: the body and the {CASHIER_HEADER} header name different"
                         " cashiers")
    try:
        return cashiers.check(value)
    except cashiers.BadCashier as e:
        raise BadRequest(f"cashier {e}") from None
