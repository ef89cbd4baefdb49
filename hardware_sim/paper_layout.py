"""What the printer puts on paper for each operation, as lines of a fixed width. Pure."""

from __future__ import annotations

from hardware_sim.fiscal_memory import FiscalDocument, ReceiptEntry

HEADER = "TILLPOINT SIMULATED SHTRIH-M"
RECEIPT_TITLES = {
    0: "КАССОВЫЙ ЧЕК / ПРИХОД",
    1: "КАССОВЫЙ ЧЕК / РАСХОД",
    2: "КАССОВЫЙ ЧЕК / ВОЗВРАТ ПРИХОДА",
    3: "КАССОВЫЙ ЧЕК / ВОЗВРАТ РАСХОДА",
}
PAYMENT_NAMES = ("НАЛИЧНЫМИ", "ОПЛАТА ТИП 2", "ОПЛАТА ТИП 3", "ОПЛАТА ТИП 4")


def money(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    kopecks = abs(kopecks)
    return f"{sign}{kopecks // 100}.{kopecks % 100:02d}"


def quantity(thousandths: int) -> str:
    return f"{thousandths // 1000}.{thousandths % 1000:03d}"


def wrap(text: str, width: int) -> list[str]:
    if not text:
        return [""]
    return [text[i : i + width] for i in range(0, len(text), width)]


def two_columns(left: str, right: str, width: int) -> str:
    gap = width - len(left) - len(right)
    if gap < 1:
        return (left[: max(0, width - len(right) - 1)] + " " + right)[:width]
    return left + " " * gap + right


def centre(text: str, width: int) -> str:
    return text[:width].center(width).rstrip()


def receipt_header(receipt_type: int, shift: int, when: str, width: int) -> list[str]:
    return [
        centre(HEADER, width),
        centre(RECEIPT_TITLES.get(receipt_type, "КАССОВЫЙ ЧЕК"), width),
        two_columns(f"СМЕНА {shift}", when, width),
        "-" * width,
    ]


def entry_lines(entry: ReceiptEntry, width: int) -> list[str]:
    if entry.kind == "text":
        return wrap(entry.text, width)
    if entry.kind == "discount":
        return [two_columns(f"СКИДКА {entry.text}".rstrip(), money(-entry.amount), width)]
    title = wrap(entry.text or ("ВОЗВРАТ" if entry.kind == "return" else "ТОВАР"), width)
    calc = f"{quantity(entry.quantity)} x {money(entry.price)}"
    return [*title, two_columns(calc, f"={money(entry.amount)}", width)]


def receipt_footer(doc: FiscalDocument, width: int) -> list[str]:
    lines = ["-" * width]
    if doc.discount_percent:
        lines.append(two_columns("ПОДЫТОГ", f"={money(doc.subtotal)}", width))
        pct = f"{doc.discount_percent / 100:.2f}%"
        lines.append(two_columns(f"СКИДКА {pct}", money(doc.total - doc.subtotal), width))
    lines.append(two_columns("ИТОГ", f"={money(doc.total)}", width))
    for name, amount in zip(PAYMENT_NAMES, doc.payments, strict=True):
        if amount:
            lines.append(two_columns(name, f"={money(amount)}", width))
    if doc.change:
        lines.append(two_columns("СДАЧА", f"={money(doc.change)}", width))
    for group, amount in doc.tax_totals().items():
        if group != "0":
            lines.append(two_columns(f"СУММА ПО НАЛОГ. ГРУППЕ {group}", f"={money(amount)}",
                                     width))
    if doc.text:
        lines.extend(wrap(doc.text, width))
    lines.append(two_columns("ФД №", str(doc.number), width))
    lines.append(two_columns("ФП", f"{doc.fiscal_sign:010d}", width))
    return lines


def cancelled_footer(width: int) -> list[str]:
    return [
        "-" * width,
        centre("ЧЕК АННУЛИРОВАН", width),
        centre("(без фискального номера)", width),
    ]


def shift_open_report(doc: FiscalDocument, when: str, width: int) -> list[str]:
    return [
        centre(HEADER, width),
        centre("ОТЧЕТ ОБ ОТКРЫТИИ СМЕНЫ", width),
        two_columns(f"СМЕНА {doc.shift_number}", when, width),
        "-" * width,
        two_columns("ФД №", str(doc.number), width),
        two_columns("ФП", f"{doc.fiscal_sign:010d}", width),
    ]


def x_report(shift: int, when: str, receipts: int, sales: int, returns: int,
             width: int) -> list[str]:
    """The X report: the shift's totals so far; not a fiscal document, so no number."""
    return [
        centre(HEADER, width),
        centre("ОТЧЕТ БЕЗ ГАШЕНИЯ (X)", width),
        two_columns(f"СМЕНА {shift}", when, width),
        "-" * width,
        two_columns("ЧЕКОВ ЗА СМЕНУ", str(receipts), width),
        two_columns("ПРИХОД", f"={money(sales)}", width),
        two_columns("ВОЗВРАТ ПРИХОДА", f"={money(returns)}", width),
        centre("НЕФИСКАЛЬНЫЙ ДОКУМЕНТ", width),
    ]


def shift_report(
    doc: FiscalDocument, when: str, receipts: int, sales: int, returns: int, width: int
) -> list[str]:
    return [
        centre(HEADER, width),
        centre("ОТЧЕТ О ЗАКРЫТИИ СМЕНЫ (Z)", width),
        two_columns(f"СМЕНА {doc.shift_number}", when, width),
        "-" * width,
        two_columns("ЧЕКОВ ЗА СМЕНУ", str(receipts), width),
        two_columns("ПРИХОД", f"={money(sales)}", width),
        two_columns("ВОЗВРАТ ПРИХОДА", f"={money(returns)}", width),
        "-" * width,
        two_columns("ФД №", str(doc.number), width),
        two_columns("ФП", f"{doc.fiscal_sign:010d}", width),
    ]
