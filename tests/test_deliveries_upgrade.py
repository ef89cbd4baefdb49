"""Tills that synced before the central recorded what it delivered (migration 12) are not
quarantined by the upgrade; and a till's `have=N` earns it no rule set it was not sent.

The old database is the real old schema: migrations 1 to 11 (never edited once landed),
given the data of a central that served a till, in the tables and columns that schema has.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from central import db, deliveries, repricing
from central.app import make_app
from central.card_keys import default_key_file
from central.clock import iso, parse_iso
from central.db import Connection
from central.db_sqlite import SQLiteConnection
from central.web_common import DB, SECRETS
from protocol import rules
from protocol.request_auth import sign_request
from tests.databases import postgres_schema
from tests.test_central_sync_api import balance, enrolled_till, new_customer, send
from tests.test_till_takeover import LINES, kinds, pull, ruleset, sale, sent_view
from tests.till_double import TestTill

BEFORE_DELIVERIES = 11  # the schema before till_rulesets and till_views (migration 12)
# Rows the old migrations themselves wrote: their values are carried over, not the rows.
SEEDED = {"counters": "name", "repricing": "name", "budget_accounting": "name"}


def old_schema_tables(directory: Path) -> dict[str, list[str]]:
    """The tables of the old schema, in the order they were created, with their columns."""
    ref = SQLiteConnection(directory / "schema-reference.db")
    try:
        db.migrate(ref, upto=BEFORE_DELIVERIES)
        return {name: [c[1] for c in ref.execute(f"PRAGMA table_info({name})")]
                for (name,) in ref.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")}
    finally:
        ref.close()


def as_an_old_central_left_it(src: Connection, dst: Connection, directory: Path) -> None:
    """`dst` at the old schema, holding `src`'s data in what that schema has: the database a
    central from before migration 12 would have left after doing what `src`'s did."""
    db.migrate(dst, upto=BEFORE_DELIVERIES)
    with dst.transaction():
        for table, old_columns in old_schema_tables(directory).items():
            rows = src.execute(f"SELECT * FROM {table}").fetchall()
            if not rows:
                continue
            present = set(rows[0].keys())  # a row's `in` looks at its values
            columns = [c for c in old_columns if c in present]
            names = ", ".join(columns)
            if table in SEEDED:
                key = SEEDED[table]
                if columns == [key]:
                    continue
                for r in rows:
                    dst.execute(f"UPDATE {table} SET "
                                + ", ".join(f"{c} = ?" for c in columns if c != key)
                                + f" WHERE {key} = ?",
                                [r[c] for c in columns if c != key] + [r[key]])
                continue
            dst.executemany(f"INSERT INTO {table} ({names}) VALUES"
                            f" ({', '.join('?' * len(columns))})",
                            [[r[c] for c in columns] for r in rows])
            # An identity column given its values: its sequence goes on after them.
            if dst.dialect.name == "postgresql" and isinstance(rows[0]["id"] if "id" in present
                                                               else None, int):
                dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                            f" (SELECT MAX(id) FROM {table}))")
        # Everything the old central held had been re-priced (its followers' place).
        if dst.dialect.name == "sqlite":
            for follower in ("repricing", "budget_accounting"):
                dst.execute(f"UPDATE {follower} SET last_rowid ="
                            " (SELECT COALESCE(MAX(rowid), 0) FROM journal)")


@pytest.fixture
def old_database(database: Path | str, tmp_path: Path) -> Iterator[Path | str]:
    """Where the old central's data is put for the upgrade: of the same kind as `database`."""
    if isinstance(database, str):
        with postgres_schema() as url:
            yield url
    else:
        yield tmp_path / "upgraded" / "central.db"


def unmigrated(target: Path | str) -> Connection:
    if isinstance(target, str):
        from central.db_postgres import PostgresConnection

        return PostgresConnection(target)
    return SQLiteConnection(target)


async def upgraded(aiohttp_client, central, clock, tmp_path: Path, target: Path | str):
    """The central started again, as this release, on what the old central left: its data
    directory (secrets), its card keys, its database at the old schema."""
    data_dir = tmp_path / "upgraded"
    shutil.copytree(tmp_path / "central", data_dir)
    for leftover in data_dir.glob("central.db*"):
        leftover.unlink()
    old = unmigrated(target)
    try:
        as_an_old_central_left_it(central.db, old, tmp_path)
        assert old.dialect.schema_version(old) == BEFORE_DELIVERIES
    finally:
        old.close()
    app = make_app(data_dir, clock, reprice_every=None,
                   card_keys_file=default_key_file(tmp_path / "central"),
                   database=target if isinstance(target, str) else None)
    client = await aiohttp_client(app)
    client.db = app[DB]
    client.secrets = app[SECRETS]
    client.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    return client


async def pull_ruleset(central, till: TestTill, clock, have: int) -> int:
    """The till's signed rule-set pull naming the version it holds; the answer's status."""
    path = f"/sync/v1/ruleset?have={have}"
    headers = sign_request(till.key, till.till_id, "GET", path, b"",
                           int(clock().timestamp()))
    resp = await central.get(path, headers=headers)
    return resp.status


async def pull_customers(central, till: TestTill, clock, since: int) -> dict:
    path = f"/sync/v1/customers?since={since}"
    headers = sign_request(till.key, till.till_id, "GET", path, b"",
                           int(clock().timestamp()))
    resp = await central.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def delivered(central, till: TestTill) -> list[int]:
    return [r[0] for r in central.db.execute(
        "SELECT version FROM till_rulesets WHERE till_id = ? ORDER BY version",
        (till.till_id,))]


async def test_a_till_that_synced_before_deliveries_were_recorded_is_credited_after_it(
        aiohttp_client, central, clock, tmp_path: Path, old_database: Path | str):
    # Before: the till pulled the rule set and its customers, and sold; nothing of what it
    # was sent was recorded (the old schema has no place for it).
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    delta = await pull(central, till, clock)
    seen = sent_view(delta, cid)
    sale(till, central, seen, at=clock())
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 1

    new = await upgraded(aiohttp_client, central, clock, tmp_path, old_database)
    recorded_from = new.db.execute("SELECT deliveries_recorded_from FROM tills WHERE id = ?",
                                   (till.till_id,)).fetchone()[0]
    assert recorded_from is not None
    assert delivered(new, till) == [1]  # the newest, which it holds

    # A member sale, sent and re-priced before the till pulls anything: credited.
    clock.advance(minutes=5)
    second = sale(till, new, seen, at=clock())
    assert (await send(new, till.batch(2, 2))).status == 200
    assert repricing.reprice_pending(new.db, clock()) == 1
    assert not {"repricing-mismatch", "till-quarantined"} & set(kinds(new))
    assert await balance(new, cid) == {"available": 1000, "pending": 2 * second.earned,
                                       "debt": 0}

    # Its next pulls: 304 for the rule set it holds, and its customers sent again from its
    # own cursor (every customer was marked changed), now recorded.
    assert await pull_ruleset(new, till, clock, have=1) == 304
    again = await pull_customers(new, till, clock, since=delta["cursor"])
    assert cid in [c["id"] for c in again["customers"]]
    assert new.db.execute("SELECT COUNT(*) FROM till_views WHERE till_id = ?",
                          (till.till_id,)).fetchone()[0] >= 1

    # After the grace, the till is held to what was recorded, as any till: the view it was
    # sent is honoured, a balance it was never sent is not.
    clock.now = parse_iso(recorded_from) + deliveries.LEGACY_GRACE + timedelta(minutes=10)
    fresh = sent_view(await pull_customers(new, till, clock, since=0), cid)
    sale(till, new, fresh, at=clock())
    assert (await send(new, till.batch(3, 3))).status == 200
    assert repricing.reprice_pending(new.db, clock()) == 1
    assert "till-quarantined" not in kinds(new)
    sale(till, new, dataclasses.replace(fresh, balance=90_000), at=clock(),
         claim_redeemed=50_000)
    assert (await send(new, till.batch(4, 4))).status == 200
    repricing.reprice_pending(new.db, clock())
    assert "till-quarantined" in kinds(new)

    # A till enrolled after the upgrade was never on the old central: no grace for it.
    other = await enrolled_till(new)
    assert new.db.execute("SELECT deliveries_recorded_from FROM tills WHERE id = ?",
                          (other.till_id,)).fetchone()[0] is None


async def test_have_n_records_the_newest_only_and_recognises_no_older_version(central, clock):
    """A till that names the newest version gets 304 and that version recorded; naming any
    version gets it nothing older: an old generous rule set stays unrecognised."""
    doc = (await (await central.get("/api/v1/ruleset", headers=central.admin)).json())["doc"]
    resp = await central.put("/api/v1/ruleset", json={"doc": doc, "actor": "marketing"},
                             headers=central.admin)
    assert (await resp.json())["version"] == 2
    cid = await new_customer(central, bonus=1000)

    till = await enrolled_till(central)  # never sent version 1
    assert await pull_ruleset(central, till, clock, have=1) == 200  # not 304: 2 is newest
    assert await pull_ruleset(central, till, clock, have=2) == 304
    assert await pull_ruleset(central, till, clock, have=7) == 200
    assert delivered(central, till) == [2]
    seen = sent_view(await pull_customers(central, till, clock, since=0), cid)
    sale(till, central, seen, at=clock())  # priced with version 1, which it was never sent
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    message = central.db.execute("SELECT message FROM alerts WHERE kind = 'repricing-mismatch'"
                                 ).fetchone()["message"]
    assert "version 1, which the central never sent to this till" in message
    assert "till-quarantined" in kinds(central)


async def in_grace(central, clock) -> TestTill:
    """A till as the upgrade leaves one that synced before views were recorded: it holds
    the rule set, its grace has begun, and no view of any customer is recorded for it."""
    till = await enrolled_till(central)
    assert await pull_ruleset(central, till, clock, have=0) == 200
    central.db.execute("UPDATE tills SET deliveries_recorded_from = ? WHERE id = ?",
                       (iso(clock()), till.till_id))
    return till


async def test_a_till_in_grace_is_held_to_what_the_central_held_of_the_customer(
        central, clock):
    resp = await central.post("/api/v1/customers", headers=central.admin, json={
        "card_number": "2990000000012", "welcome_bonus": 1000, "segments": ["sports"]})
    cid = (await resp.json())["id"]
    till = await in_grace(central, clock)
    held = rules.Customer(id=cid, balance=1000, segments=frozenset({"sports"}))
    honest = sale(till, central, held, at=clock())
    # A stolen key of a till in grace claims what the customer never had.
    sale(till, central, dataclasses.replace(held, tier="gold"), at=clock())
    sale(till, central, dataclasses.replace(held, segments=frozenset({"sports", "vip"})),
         at=clock())
    sale(till, central, dataclasses.replace(held, activated_offers=frozenset({"socks-x5"})),
         at=clock())
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 4
    mismatches = [r["message"] for r in central.db.execute(
        "SELECT message FROM alerts WHERE kind = 'repricing-mismatch' ORDER BY id")]
    assert len(mismatches) == 3
    for seq, claim in zip((2, 3, 4), ("tier 'gold'", "segments ['vip']",
                                      "offers ['socks-x5']"), strict=True):
        assert any(f"entry {seq} " in m and claim in m for m in mismatches), (claim, mismatches)
    assert "till-quarantined" in kinds(central)
    # Only the honest sale is credited, as its re-pricing gives.
    assert await balance(central, cid) == {"available": 1000, "pending": honest.earned,
                                           "debt": 0}


async def test_in_grace_a_view_another_till_was_sent_backs_the_sale(central, clock):
    """The customer changed after the sale (a segment taken away): what the central held
    then, as a view it sent another till, still backs an honest till's sale."""
    resp = await central.post("/api/v1/customers", headers=central.admin, json={
        "card_number": "2990000000012", "segments": ["sports"]})
    cid = (await resp.json())["id"]
    other = await enrolled_till(central)
    await pull(central, other, clock)  # the central records the view it sends
    till = await in_grace(central, clock)
    sale(till, central, rules.Customer(id=cid, segments=frozenset({"sports"})), at=clock())
    resp = await central.patch(f"/api/v1/customers/{cid}", headers=central.admin,
                               json={"segments": []})
    assert resp.status == 200, await resp.text()
    clock.advance(minutes=1)
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 1
    assert not {"repricing-mismatch", "till-quarantined"} & set(kinds(central))


async def test_in_grace_the_birthday_is_the_one_the_central_holds(central, clock):
    """A till in grace journals which birthday windows held; re-pricing judges them by the
    birthday the central holds, so claiming a birthday week earns nothing beyond it."""
    from tests.test_personal_data import birthday_doc

    near, far = [(await (await central.post("/api/v1/customers", headers=central.admin, json={
        "card_number": card, "birthday": birthday})).json())["id"]
        for card, birthday in (("2990000000012", "1990-11-24"),
                               ("2990000000029", "1990-05-17"))]
    resp = await central.put("/api/v1/ruleset", headers=central.admin,
                             json={"doc": birthday_doc(), "actor": "marketing"})
    assert resp.status == 201, await resp.text()
    till = await in_grace(central, clock)
    when = clock()
    rs = ruleset(central, 2)
    receipt = rules.Receipt(lines=tuple(
        rules.ReceiptLine(sku=ln["sku"], qty=ln["qty"], price=ln["price"],
                          amount=(ln["qty"] * ln["price"] + 500) // 1000,
                          category=ln["category"]) for ln in LINES), store="s1")
    for cid in (near, far):
        claimed = rules.Customer(id=cid, birthday=date(2000, 11, 24))  # within 3 days
        s = rules.settle(rs, receipt, claimed, when, 0)
        assert s.earned == 66  # 3x
        e = dataclasses.replace(till.sale(cid, earned=s.earned, at=when), ruleset_version=2,
                                detail={"settlement": s.to_dict(), "lines": LINES,
                                        "customer": rules.journal_view(claimed, rs, "s1",
                                                                       when)})
        till.entries[-1] = dataclasses.replace(e, hash=e.compute_hash())
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 2
    mismatches = [r["message"] for r in central.db.execute(
        "SELECT message FROM alerts WHERE kind = 'repricing-mismatch'")]
    assert len(mismatches) == 1 and "entry 2" in mismatches[0] \
        and "earned 22" in mismatches[0], mismatches
    assert "till-quarantined" in kinds(central)
