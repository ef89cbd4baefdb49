"""A message as a line on the customer's next fiscal receipt: the central queues it in the
customer's delta, a till prints it (wrapped to the paper) and journals that it did, the
central records the print and no till gets the line again."""

from __future__ import annotations

from datetime import UTC, datetime

from agent import customers, journal
from agent.checkout import MESSAGE_WIDTH, message_text
from central import deltas, message_triggers, messages
from central.clock import utcnow
from central.message_channels import Channels
from central.message_sender import Sender
from central.messages import Draft
from protocol.journal import JournalEntry, new_receipt_id
from tests.message_rigs import new_customer
from tests.pos_rig import Rig
from tests.sync_fixtures import LocalTill, enrol, live_central

__all__ = ["live_central"]

SOCKS = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000, "vat": "22"}


async def test_a_line_goes_to_tills_until_one_prints_it(live_central, tmp_path):
    central = live_central

    till = LocalTill(await enrol(central, "s1"), tmp_path / "till.db")
    try:
        cid = new_customer(central.db, central.secrets.card_keys, utcnow(), name="Ann")
        messages.save_settings(central.db, {"quiet_from": "00:00", "quiet_to": "00:00"}, "t",
                               utcnow())
        key = f"activated:{cid}:2026-11-23"
        assert messages.enqueue(central.db, Draft(key, "activated", cid, "service", {
            "points": 120, "day": "2026-11-23"}), utcnow())
        await Sender(Channels()).step(central.db, utcnow())  # no other channel is needed
        [row] = messages.listing(central.db, {}, None, 10)
        assert (row["channel"], row["status"]) == ("receipt", "sent")
        page = deltas.customer_deltas(central.db, till.ident.till_id, 0, utcnow())
        [ann] = [c for c in page["customers"] if c["id"] == cid]
        assert ann["receipt_lines"] == [{"key": key,
                                         "text": "Ann, 120 баллов стали доступны."}]
        # The till prints it on Ann's receipt and says so in the entry's detail.
        at = datetime.now(UTC)
        with till.db.atomic():
            journal.append(till.db, JournalEntry(
                seq=0, epoch="", prev_hash="", kind="sale", receipt_id=new_receipt_id(at),
                at=at.isoformat(timespec="seconds"), store="s1", customer_id=cid,
                ruleset_version=1, total=1000, fiscal_doc=0,
                detail={"messages_printed": [key]}))
        assert await till.sync.push() == 1
        while message_triggers.follow_receipts(central.db, utcnow()):
            pass
        printed = central.db.execute("SELECT till_id, printed_at FROM message_receipt_lines"
                                     ).fetchone()
        assert printed["till_id"] == till.ident.till_id and printed["printed_at"]
        page = deltas.customer_deltas(central.db, till.ident.till_id, page["cursor"],
                                      utcnow())
        [ann] = [c for c in page["customers"] if c["id"] == cid]
        assert "receipt_lines" not in ann
    finally:
        await till.close()


async def test_a_till_prints_the_lines_on_the_next_receipt_once(rig: Rig):
    cid = rig.add_customer("cus_ann", "2990000000019")
    long = "Ann, " + "your points are waiting for you " * 5

    customers.apply_deltas(rig.db, {
        "customers": [{"id": cid, "available": 0, "pending": 0, "debt": 0,
                       "cards": [], "receipt_lines": [{"key": "k1", "text": "Hello, Ann"},
                                                      {"key": "k2", "text": long}]}],
        "cursor": 2, "epoch": None, "acked_seq": 0})
    for _ in range(2):  # the central has not heard of the first print yet
        resp = await rig.client.post("/pos/v1/receipts", headers=rig.auth,
                                     json={"customer_id": cid, "lines": [SOCKS]})
        assert resp.status in (200, 201), await resp.text()
    first, second = rig.printer.documents
    assert first.text_lines[-5:] == ("Hello, Ann", *message_text(long))
    assert all(len(line) <= MESSAGE_WIDTH for line in first.text_lines)
    assert first.text_lines[-1].endswith("...")
    assert "Hello, Ann" not in second.text_lines
    entries = journal.entries_from(rig.db, 1, 10)
    assert entries[0].detail["messages_printed"] == ["k1", "k2"]
    assert "messages_printed" not in entries[1].detail


def test_a_message_is_wrapped_to_the_paper_and_kept_short():
    assert message_text("short") == ["short"]
    lines = message_text("word " * 100)
    assert len(lines) == 4 and all(len(x) <= MESSAGE_WIDTH for x in lines)
    assert lines[-1].endswith("...")
