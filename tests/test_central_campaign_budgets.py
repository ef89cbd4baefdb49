"""The central counts budgeted campaigns' grants from the journal and hands out allowances."""

from __future__ import annotations

from datetime import UTC, datetime

from central import campaign_budgets, db, deltas, ingest_log, rulesets
from protocol.budget_periods import period_key
from protocol.rules import default_ruleset_doc
from protocol.wire import pack

NOV = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DEC = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)


def setup(database, tills: int = 1):
    conn = db.connect(database)
    doc = default_ruleset_doc()
    doc["campaigns"].append({"id": "promo", "priority": 5,
                             "effect": {"type": "per_receipt", "points": 60},
                             "budget": {"total": 1000, "per_customer": 100, "period": "month"}})
    doc["campaigns"].append({"id": "launch", "priority": 4,
                             "effect": {"type": "per_receipt", "points": 10},
                             "budget": {"total": 50}})
    version = rulesets.publish(conn, doc, "test", NOV)
    for i in range(tills):
        conn.execute("INSERT INTO tills (id, name, store, public_key, enrolled_at,"
                     " current_epoch) VALUES (?, ?, 's1', ?, '', 'ep')",
                     (f"t{i}", f"t{i}", f"k{i}"))
    conn.execute("INSERT INTO customers (id, created_at) VALUES ('c1', '')")
    return conn, version


def journal_sale(conn, seq: int, customer: str | None, totals: dict[str, int], at: datetime,
                 version: int, kind: str = "sale") -> None:
    body = pack({"kind": kind, "at": at.isoformat(), "customer_id": customer,
                 "ruleset_version": version,
                 "detail": {"settlement": {"campaign_totals": totals}}})
    conn.execute("INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
                 " customer_id, body, received_at) VALUES ('t0', 'ep', ?, '', '', ?, ?, ?, ?,"
                 " '')", (seq, kind, f"r{seq}", customer, body))
    ingest_log.record(conn, [("t0", "ep", seq, seq)])  # as ingest numbers what it applied


def test_period_keys_roll_over():
    assert period_key("month", NOV) == "month:2026-11"
    assert period_key("month", DEC) == "month:2026-12"
    assert period_key("day", NOV) == "day:2026-11-23"
    assert period_key("week", NOV) == "week:2026-11-23"  # a Monday
    assert period_key("week", DEC) == "week:2026-11-30"
    assert period_key("year", DEC) == "year:2026"
    assert period_key("campaign", DEC) == "campaign"
    # Periods are UTC: 01:00 in Moscow on 1 December is still November.
    from datetime import timedelta, timezone
    msk = datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=3)))
    assert period_key("month", msk) == "month:2026-11"


def test_budgets_are_stored_at_publish_and_back_filled(database):
    conn, version = setup(database)
    got = campaign_budgets.budgets(conn)
    assert got["promo"] == campaign_budgets.Budget(1000, 100, "month")
    assert got["launch"] == campaign_budgets.Budget(50, None, "campaign")
    # The migration's back-fill reads the same from the documents themselves.
    conn.execute("DELETE FROM campaign_budgets")
    backfill = conn.dialect.script(db.MIGRATIONS[4]).split("CREATE TABLE campaign_usage")[0]
    for statement in backfill.split(";")[1:]:  # the table is there: only the INSERT
        if statement.strip():
            conn.execute(statement)
    assert campaign_budgets.budgets(conn, version) == got


def test_sales_count_in_total_and_per_customer_period_and_returns_give_nothing_back(database):
    conn, v = setup(database)
    journal_sale(conn, 1, "c1", {"base": 22, "promo": 60, "launch": 10}, NOV, v)
    journal_sale(conn, 2, "c1", {"promo": 40}, NOV, v)
    journal_sale(conn, 3, None, {"launch": 10}, NOV, v)  # anonymous: total only
    journal_sale(conn, 4, "c1", {"promo": -60}, NOV, v, kind="return")
    assert campaign_budgets.account_pending(conn, limit=2) == 2
    assert campaign_budgets.accounted_seq(conn, "t0", "ep") == 2
    assert campaign_budgets.account_pending(conn) == 2
    assert campaign_budgets.account_pending(conn) == 0  # each entry once
    assert campaign_budgets.behind(conn) == 0
    assert campaign_budgets.accounted_seq(conn, "t0", "ep") == 4
    used = dict(conn.execute("SELECT campaign_id, used FROM campaign_usage").fetchall())
    assert used == {"promo": 100, "launch": 20}  # base has no budget: not counted
    current = campaign_budgets.budgets(conn)
    assert campaign_budgets.customer_allowances(conn, "c1", current, NOV) == {"promo": 0}
    # A new month: the per-customer cap is whole again; the total is not.
    assert campaign_budgets.customer_allowances(conn, "c1", current, DEC) == {}
    caps = campaign_budgets.till_allowances(conn, "t0", current, DEC)
    assert caps["promo"] == {"till_remaining": 900, "per_customer": 100, "period": "month",
                             "period_key": "month:2026-12",
                             "lease_expires": "2026-12-01T00:45:00+00:00"}
    assert caps["launch"]["till_remaining"] == 30


def test_a_till_gets_its_share_of_what_remains(database):
    conn, v = setup(database, tills=3)
    journal_sale(conn, 1, "c1", {"launch": 10, "promo": 60}, NOV, v)
    campaign_budgets.account_pending(conn)
    caps = campaign_budgets.till_allowances(conn, "t0", campaign_budgets.budgets(conn), NOV)
    # (50 - 10) / 3 and (1000 - 60) / 3, rounded up: this till held no lease before.
    assert caps["launch"]["till_remaining"] == 14
    assert caps["promo"]["till_remaining"] == 314
    journal_sale(conn, 2, "c1", {"launch": 45}, NOV, v)  # tills overshot offline
    campaign_budgets.account_pending(conn)
    caps = campaign_budgets.till_allowances(conn, "t0", campaign_budgets.budgets(conn), NOV)
    assert caps["launch"]["till_remaining"] == 0  # never negative


def test_deltas_carry_allowances_and_the_accounted_sequence(database):
    conn, v = setup(database)
    journal_sale(conn, 1, "c1", {"promo": 60}, NOV, v)
    campaign_budgets.account_pending(conn)
    delta = deltas.customer_deltas(conn, "t0", 0, NOV)
    assert delta["budgets"]["as_of_seq"] == 1
    assert delta["budgets"]["campaigns"]["promo"]["till_remaining"] == 940
    (c1,) = delta["customers"]
    assert c1["allowances"] == {"promo": 40}
    # Accounting marked the customer changed: a till past the cursor still gets the figure.
    again = deltas.customer_deltas(conn, "t0", delta["cursor"], NOV)
    assert again["customers"] == []
    journal_sale(conn, 2, "c1", {"promo": 40}, NOV, v)
    campaign_budgets.account_pending(conn)
    (c1,) = deltas.customer_deltas(conn, "t0", delta["cursor"], NOV)["customers"]
    assert c1["allowances"] == {"promo": 0}
