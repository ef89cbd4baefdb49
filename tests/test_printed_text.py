"""Text from the POS reaches the paper without control characters: no line can be forged.

An item name is the POS's (and so anyone's who can edit the catalogue): a newline in it would
print a line of its own — a fake total, a fake "paid by card" — and ESC would start a printer
command. The driver turns every control character into a space before it sends the text.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from agent.devices.shtrih_commands import LINE_WIDTHS, encode_text, printable
from tillpoint.store_harness import StoreHarness

C0 = "".join(chr(c) for c in range(0x20))
C1 = "".join(chr(c) for c in range(0x80, 0xA0))
CONTROLS = C0 + "\x7f" + C1 + "\u2028\u2029"
FORGED = "ИТОГ                        =0.01"


@given(st.text(alphabet=st.sampled_from(CONTROLS + "abcЖЁ =.0123456789"), max_size=80),
       st.sampled_from(LINE_WIDTHS))
def test_encoded_text_has_no_control_bytes(text: str, width: int) -> None:
    raw = encode_text(text, width)
    assert len(raw) == width
    body = raw.rstrip(b"\x00")
    assert all(b >= 0x20 and b != 0x7F for b in body), body
    decoded = body.decode("cp1251")
    assert not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in decoded)


@given(st.text(max_size=60))
def test_printable_keeps_length_and_every_printable_character(text: str) -> None:
    out = printable(text)
    assert len(out) == len(text)
    for a, b in zip(text, out, strict=True):
        assert b == a or (b == " " and unicodedata.category(a) in ("Cc", "Zl", "Zp"))


async def test_an_item_name_cannot_forge_a_line_on_the_paper(store: StoreHarness) -> None:
    till = store.tills[0]
    names = [f"Socks\n{FORGED}", f"Socks\r{FORGED}", f"Socks\x1b@\x1bd\x05{FORGED}",
             f"Socks\x85{FORGED}", f"Socks\u2028{FORGED}", f"Socks\x0c\x0b\x00{FORGED}"]
    lines = [{"sku": str(300 + i), "name": name, "qty": 1000, "price": 1500,
              "category": "sports", "vat": "22"} for i, name in enumerate(names)]
    sold = await store.pos(till, "POST", "/pos/v1/receipts", {"lines": lines})
    doc = await store.control(till, "GET", f"/printer/documents/{sold['fiscal_doc']}")
    paper = next(p["text"] for p in (await store.control(till, "GET", "/printer/paper"))["paper"]
                 if p["file"] == doc["paper_file"])
    printed = paper.split("\n")
    assert not any(unicodedata.category(ch) == "Cc" for line in printed for ch in line)
    # The forged total never starts a line: it stays inside its item's line, after "Socks".
    assert not [line for line in printed if line.startswith("ИТОГ") and "=0.01" in line]
    assert sum(line.startswith("Socks") for line in printed) == len(names)
    assert [ln["text"].startswith("Socks ") for ln in doc["lines"]] == [True] * len(names)
