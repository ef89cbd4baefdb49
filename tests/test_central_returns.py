"""The central's leases on returns: one open per receipt, confirmed by the journal entry,
released by a cancel or a timeout; what is back counted whichever till took it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central import db, returns
from central.clock import iso
from central.errors import Refused
from protocol.journal import JournalEntry

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LINES = [{"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "vat": "10"}]


@pytest.fixture
def conn(database):
    c = db.connect(database)
    yield c
    c.close()


def entry(kind: str, receipt_id: str, detail: dict, original: str | None = None) -> JournalEntry:
    return JournalEntry(seq=1, epoch="e", prev_hash="", kind=kind, receipt_id=receipt_id,
                        at=iso(T0), store="s1", customer_id=None, ruleset_version=1,
                        total=45000, fiscal_doc=1, original_receipt_id=original,
                        detail=detail)


def journal_sale(conn, till: str = "t1") -> None:
    e = entry("sale", "sale-1", {"lines": LINES, "settlement": {}, "payments": {"cash": 45000}})
    conn.execute("INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
                 " body, received_at) VALUES (?, 'e', 1, 'h', '', 'sale', ?, ?, ?)",
                 (till, e.receipt_id, e.encoded_body(), iso(T0)))


def test_one_lease_at_a_time_confirmed_by_the_entry_or_freed_by_cancel_or_time(conn):
    journal_sale(conn)
    first = returns.reserve(conn, "t2", "sale-1", {0: 1000}, T0)
    assert first["sold_by"] == "t1" and first["returned"] == {}
    assert first["sale"]["lines"] == LINES and first["sale"]["payments"] == {"cash": 45000}
    with pytest.raises(Refused, match="being returned at another till right now") as e:
        returns.reserve(conn, "t3", "sale-1", {0: 1000}, T0)
    assert e.value.status == 409
    # The cashier cancels: the quantity is free again, for another till at once.
    assert returns.release(conn, "t2", first["lease"])
    assert not returns.release(conn, "t2", first["lease"])  # once
    second = returns.reserve(conn, "t3", "sale-1", {0: 2000}, T0)
    # Nothing heard of it for longer than a lease: it times out, the next till may go on.
    later = T0 + timedelta(seconds=returns.LEASE_S)
    third = returns.reserve(conn, "t2", "sale-1", {0: 2000}, later)
    assert not returns.release(conn, "t3", second["lease"])  # gone by timeout
    # The entry confirms its lease and counts what came back.
    returns.record(conn, "t2", [entry("return", "ret-1", {"lines": {"0": 2000},
                                                          "lease": third["lease"]},
                                      original="sale-1")], later)
    assert returns.returned(conn, "sale-1") == {0: 2000}
    status = conn.execute("SELECT status FROM return_leases WHERE id = ?",
                          (third["lease"],)).fetchone()[0]
    assert status == "confirmed"
    fourth = returns.reserve(conn, "t1", "sale-1", {0: 1000}, later)
    assert fourth["returned"] == {"0": 2000}
    returns.release(conn, "t1", fourth["lease"])
    with pytest.raises(Refused, match="returning 2000 after 2000 would exceed the 3000"):
        returns.reserve(conn, "t1", "sale-1", {0: 2000}, later)


def test_a_sale_the_central_does_not_hold_and_a_line_it_does_not_have_are_refused(conn):
    with pytest.raises(Refused, match="holds no sale with this receipt id") as e:
        returns.reserve(conn, "t1", "nope", {0: 1000}, T0)
    assert e.value.status == 404
    journal_sale(conn)
    with pytest.raises(Refused, match="no line 3 on the receipt"):
        returns.reserve(conn, "t1", "sale-1", {3: 1000}, T0)


def test_returns_beyond_the_sale_raise_an_alert(conn):
    journal_sale(conn)
    returns.record(conn, "t1", [entry("return", "r1", {"lines": {"0": 3000}}, "sale-1"),
                                entry("return", "r2", {"lines": {"0": 1000}}, "sale-1")], T0)
    alerts = conn.execute("SELECT kind, message FROM alerts").fetchall()
    assert [a["kind"] for a in alerts] == ["over-return"]
