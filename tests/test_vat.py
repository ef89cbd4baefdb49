"""VAT on every line: the POS's rate, the store's tax groups, the sale's rate on its return."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent import journal
from agent.config import AgentConfig
from agent.pos_input import BadRequest, DraftLine, parse_lines
from agent.store import open_store
from agent.taxes import StoreVat, TaxRefused
from protocol import vat
from tillpoint.store_harness import ApiError, StoreHarness

MILK = {"sku": "1", "name": "Milk", "qty": 2000, "price": 8990, "category": "dairy",
        "vat": "10"}
SHOES = {"sku": "2", "name": "Shoes", "qty": 1000, "price": 500000, "category": "sports",
         "vat": "22"}
JAN_2026 = datetime(2026, 1, 10, tzinfo=UTC)


def test_rates_are_read_in_every_usual_spelling_and_refused_naming_the_field():
    assert [vat.parse_rate(v, "x") for v in (22, "10%", " 0 ", "None", "без НДС")] == [
        "22", "10", "0", "none", "none"]
    for bad in (18, "twenty", True, None, 22.0):
        with pytest.raises(vat.VatError, match=r"lines\[3\]\.vat"):
            vat.parse_rate(bad, "lines[3].vat")
    with pytest.raises(BadRequest, match=r"lines\[1\]\.vat"):
        parse_lines([MILK, {**SHOES, "vat": 18}])


def test_a_line_without_a_rate_is_refused_by_name_unless_the_store_has_one_rate():
    lines = parse_lines([MILK, {**SHOES, "vat": None}])
    with pytest.raises(TaxRefused, match=r"lines\[1\] \(Shoes\) has no VAT rate") as e:
        StoreVat({"22": 1, "10": 2}).sale_lines(lines, JAN_2026)
    assert e.value.status == 400
    got = StoreVat({"22": 1, "10": 2}, default="22").sale_lines(lines, JAN_2026)
    assert [ln.vat for ln in got] == ["10", "22"]


def test_a_rate_without_a_tax_group_is_refused_naming_the_setting():
    lines = parse_lines([{**MILK, "vat": "5"}])
    with pytest.raises(TaxRefused, match=r"VAT rate 5 has no tax group.*tax_groups") as e:
        StoreVat({"22": 1, "10": 2}).sale_lines(lines, JAN_2026)
    assert e.value.status == 422


def test_twenty_percent_is_the_rate_of_goods_sold_before_2026_only():
    with pytest.raises(TaxRefused, match="not a rate for a sale on 2026-01-10"):
        StoreVat({"20": 1}).sale_lines(parse_lines([{**MILK, "vat": "20"}]), JAN_2026)
    with pytest.raises(TaxRefused, match="not a rate for a sale on 2025-12-31"):
        StoreVat({"22": 1}).sale_lines(parse_lines([{**MILK, "vat": "22"}]),
                                       datetime(2025, 12, 31, 23, tzinfo=UTC))
    store = StoreVat({"22": 1, "20": 3}, default="22")
    old = DraftLine("1", "Milk", 1000, 100)  # journalled before sales stored their rate
    assert store.returned_rate(old, 0, datetime(2025, 12, 1, tzinfo=UTC)) == ("20", 3)
    assert store.returned_rate(old, 0, JAN_2026) == ("22", 1)
    assert store.returned_rate(DraftLine("1", "Milk", 1000, 100, vat="20"), 0,
                               JAN_2026) == ("20", 3)
    with pytest.raises(TaxRefused, match=r"returned line 0 \(Milk\): VAT rate 20 has no"):
        StoreVat({"22": 1}).returned_rate(old, 0, datetime(2025, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(("settings", "error"), [
    ({"tax_groups": {"22": 5}}, r"tax_groups\['22'\] must be a tax group 1\.\.4"),
    ({"tax_groups": {"18": 1}}, r"tax_groups key '18' must be one of"),
    ({"tax_groups": {"22": 1, "10": 1}}, "gives tax group 1 to two rates"),
    ({"tax_groups": "22=1,10"}, "tax_groups must be RATE=GROUP pairs"),
    ({"vat_rate": "twenty"}, r"vat_rate must be one of"),
    ({"tax_groups": "22=1", "vat_rate": "10"}, "vat_rate 10 has no tax group"),
])
def test_store_settings_are_checked_where_they_enter(tmp_path: Path, settings, error):
    with pytest.raises(ValueError, match=error):
        AgentConfig.load(tmp_path, settings)


def test_store_settings_from_the_command_line(tmp_path: Path):
    cfg = AgentConfig.load(tmp_path, {"tax_groups": "22=2, 10=1, none=4", "vat_rate": "none"})
    assert cfg.tax_groups == {"22": 2, "10": 1, "none": 4} and cfg.vat_rate == "none"


async def test_every_line_reaches_the_printer_with_its_tax_group_and_a_return_with_the_sales(
        tmp_path: Path):
    async with StoreHarness(tmp_path) as store:
        await store.start_central()
        till = await store.add_till("till-1", agent_args=("--tax-groups", "22=1,10=2,0=3"))
        sale = await store.pos(till, "POST", "/pos/v1/receipts",
                               {"lines": [MILK, SHOES], "payment": "cash"})
        with pytest.raises(ApiError) as e:
            await store.pos(till, "POST", "/pos/v1/receipts",
                            {"lines": [MILK, {**SHOES, "vat": None}]})
        assert e.value.status == 400
        assert "lines[1] (Shoes) has no VAT rate" in e.value.body["error"]
        with pytest.raises(ApiError) as e:
            await store.pos(till, "POST", "/pos/v1/receipts",
                            {"lines": [{**MILK, "vat": "none"}]})
        assert e.value.status == 422 and "VAT rate none has no tax group" in e.value.body["error"]
        await store.pos(till, "POST", "/pos/v1/returns", {
            "receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})

        docs = [d for d in (await store.control(till, "GET", "/printer/documents"))["documents"]
                if d["kind"] == "receipt"]
        assert len(docs) == 2
        sold, returned = docs
        assert [ln["taxes"] for ln in sold["lines"]] == [[2, 0, 0, 0], [1, 0, 0, 0]]
        assert sold["tax_totals"] == {"1": 500000, "2": 17980}
        assert returned["receipt_type"] == 2
        assert [ln["taxes"] for ln in returned["lines"]] == [[2, 0, 0, 0]]
        assert returned["tax_totals"] == {"2": 8990}
        # The rates are stored with the sale, and the return carries the sale's.
        db = open_store(till.state / "agent.db")
        try:
            entries = journal.entries_from(db, 1, 10)
        finally:
            db.close()
        assert [ln["vat"] for ln in entries[0].detail["lines"]] == ["10", "22"]
        assert entries[1].detail["vat"] == {"0": "10"}
