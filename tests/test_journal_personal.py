"""Personal values in hash-chained records (issue 9, part 6): an entry of an earlier till
that journalled the customer's full birthday, through the real ingest path. Before erasure
the export shows it; after, no table holds it in clear or in a form any key held decrypts,
every chain still verifies, and balances and KPIs are unchanged."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from central import kpi_counts, repricing
from protocol import personal, rules
from protocol.batches import Batch, encode_batch
from protocol.wire import pack, unpack
from tests.test_central_sync_api import enrolled_till, send
from tests.test_personal_data import ANNA, anna
from tests.test_till_takeover import pull, sale, sent_view
from tests.till_double import TestTill

BIRTHDAY = "1990-11-24"
# How the birthday looks stored: as text, in msgpack, as month and day in JSON or msgpack.
TRACES = (BIRTHDAY.encode(), b"\xa511-24", b'"11-24"')


def old_format(till: TestTill, customer: rules.Customer) -> None:
    """Make the till's last entry as a till of an earlier version journalled it: the view
    of the customer with the full birthday, and no birthday windows."""
    e = till.entries[-1]
    view = {k: v for k, v in e.detail["customer"].items() if k != "birthday_within"}
    e = dataclasses.replace(e, detail={**e.detail, "customer": {**view, "birthday": BIRTHDAY}})
    till.entries[-1] = dataclasses.replace(e, hash=e.compute_hash())


def tables(conn) -> list[str]:
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = ("SELECT table_name FROM information_schema.tables"
               " WHERE table_schema = current_schema()")
    return [r[0] for r in conn.execute(sql)]


def holding_the_birthday(conn, traces: tuple[bytes, ...] = TRACES) -> list[str]:
    """Every table and column that holds the birthday (or other `traces`) in clear."""
    found = []
    for table in tables(conn):
        for row in conn.execute(f"SELECT * FROM {table}"):
            for column, value in dict(row).items():
                data = (bytes(value) if isinstance(value, bytes | memoryview)
                        else str(value).encode())
                if any(t in data for t in traces):
                    found.append(f"{table}.{column}")
    return found


def decryptable(conn) -> int:
    """Sealed entries that any key the central holds opens."""
    keys = [bytes.fromhex(r[0]) for r in conn.execute("SELECT key FROM customer_keys")]
    opened = 0
    for r in conn.execute(
            "SELECT s.till_id, s.epoch, s.seq, j.hash, s.sealed FROM journal_sealed s"
            " JOIN journal j ON j.till_id = s.till_id AND j.epoch = s.epoch AND j.seq = s.seq"
            " WHERE s.sealed IS NOT NULL"):
        sealed, bound = bytes(r[4]), f"{r[0]}\n{r[1]}\n{r[2]}\n{r[3]}".encode()
        for key in keys:
            try:
                AESGCM(key).decrypt(sealed[:12], sealed[12:], bound)
            except InvalidTag:
                continue
            opened += 1
    return opened


async def get(central, path: str) -> dict:
    resp = await central.get(path, headers=central.admin)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def figures(central, cid: str) -> dict:
    """Balances, summary and KPIs: what erasure must leave as it was."""
    customer = await get(central, f"/api/v1/customers/{cid}")
    return {"balance": customer["balance"], "history": customer["history"],
            "summary": await get(central, "/api/v1/summary"),
            "kpis": await get(central, "/api/v1/kpis?from=2026-11-01&to=2026-11-30")}


def hashes(entries) -> list[tuple[str, int, str]]:
    return [(e["epoch"], e["seq"], e["hash"]) for e in entries]


async def test_an_old_entrys_birthday_is_sealed_and_erasure_leaves_it_unreadable(
        central, clock):
    till = await enrolled_till(central)
    cid = await anna(central)
    seen = dataclasses.replace(sent_view(await pull(central, till, clock), cid),
                               birthday=date(1990, 11, 24))
    sale(till, central, seen, at=clock())
    old_format(till, seen)
    sale(till, central, dataclasses.replace(seen, birthday=None), at=clock())
    assert BIRTHDAY.encode() in till.entries[0].encoded_body()
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 2
    while kpi_counts.count_pending(central.db):
        pass
    assert central.db.execute("SELECT COUNT(*) FROM alerts WHERE kind = 'repricing-mismatch'"
                              ).fetchone()[0] == 0

    # Stored redacted, the till's bytes sealed; the hashes stay the till's.
    body = central.db.execute("SELECT body FROM journal WHERE seq = 1").fetchone()[0]
    assert unpack(bytes(body))["detail"]["customer"]["birthday"] is None
    assert holding_the_birthday(central.db) == ["customers.birthday", "till_views.view"]
    journal = await get(central, f"/api/v1/tills/{till.till_id}/journal")
    assert hashes(journal["entries"]) == [(e.epoch, e.seq, e.hash) for e in till.entries]
    assert [e["personal"] for e in journal["entries"]] == ["sealed", None]
    assert await get(central, f"/api/v1/tills/{till.till_id}/journal/verify") == {
        "till_id": till.till_id, "entries": 2, "as_signed": 1, "sealed": 1, "erased": 0,
        "ok": True, "problem": None}
    assert decryptable(central.db) == 1
    exported = await get(central, f"/api/v1/customers/{cid}/personal-data")
    assert [(j["seq"], j["birthday"]) for j in exported["journal"]] == [(1, BIRTHDAY)]

    before = await figures(central, cid)
    resp = await central.post(f"/api/v1/customers/{cid}/erase", headers=central.admin,
                              json={"actor": "dpo", "reason": "customer's request"})
    assert resp.status == 200, await resp.text()
    erased = (await resp.json())["journal"]
    assert erased["entries"] == 1 and erased["checked"] == 1 and erased["digest"]

    assert holding_the_birthday(central.db) == []
    # Nor anything else that identified her.
    assert holding_the_birthday(central.db, (ANNA["name"].encode(), b"79990000001")) == []
    assert decryptable(central.db) == 0
    assert central.db.execute("SELECT COUNT(*) FROM customer_keys WHERE customer_id = ?",
                              (cid,)).fetchone()[0] == 0
    assert (await get(central, f"/api/v1/customers/{cid}/personal-data"))["journal"] == []
    assert await figures(central, cid) == before
    # Every chain verifies: the audit log, the till's journal as far as it can be checked,
    # and the hashes head office compares with the till's own.
    assert (await get(central, "/api/v1/audit/verify"))["ok"] is True
    verified = await get(central, f"/api/v1/tills/{till.till_id}/journal/verify")
    assert (verified["ok"], verified["as_signed"], verified["erased"]) == (True, 1, 1)
    journal = await get(central, f"/api/v1/tills/{till.till_id}/journal")
    assert hashes(journal["entries"]) == [(e.epoch, e.seq, e.hash) for e in till.entries]
    assert [e["personal"] for e in journal["entries"]] == ["erased", None]

    # The till goes on: its batch resent whole is a replay (the same hashes), its next
    # entry chains on from the erased one's, and an old entry of the erased customer that
    # comes late keeps nothing.
    assert (await send(central, till.batch())).status == 200
    sale(till, central, seen, at=clock())
    old_format(till, seen)
    resp = await send(central, till.batch(3, 3))
    assert resp.status == 200 and (await resp.json())["acked_seq"] == 3
    assert holding_the_birthday(central.db) == []
    assert central.db.execute("SELECT sealed FROM journal_sealed WHERE seq = 3"
                              ).fetchone()[0] is None
    verified = await get(central, f"/api/v1/tills/{till.till_id}/journal/verify")
    assert (verified["ok"], verified["entries"], verified["erased"]) == (True, 3, 2)

    # A redacted body changed after the erasure no longer matches what was checked then.
    tampered = unpack(bytes(body))
    tampered["earned"] += 1
    central.db.execute("UPDATE journal SET body = ? WHERE seq = 1", (pack(tampered),))
    verified = await get(central, f"/api/v1/tills/{till.till_id}/journal/verify")
    assert verified["ok"] is False and "checked at their erasure" in verified["problem"]


async def test_the_verification_finds_a_changed_body_or_a_broken_link(central, clock):
    till = await enrolled_till(central)
    cid = await anna(central)
    seen = dataclasses.replace(sent_view(await pull(central, till, clock), cid),
                               birthday=date(1990, 11, 24))
    for _ in range(2):
        sale(till, central, dataclasses.replace(seen, birthday=None), at=clock())
    sale(till, central, seen, at=clock())
    old_format(till, seen)  # the last one sealed
    assert (await send(central, till.batch())).status == 200
    path = f"/api/v1/tills/{till.till_id}/journal/verify"
    assert (await get(central, path))["ok"] is True

    signed = bytes(central.db.execute("SELECT body FROM journal WHERE seq = 1").fetchone()[0])
    changed = unpack(signed)
    changed["total"] += 100
    central.db.execute("UPDATE journal SET body = ? WHERE seq = 1", (pack(changed),))
    assert "entry 1 has a hash that does not match" in (await get(central, path))["problem"]
    central.db.execute("UPDATE journal SET body = ? WHERE seq = 1", (signed,))

    sealed = bytes(central.db.execute("SELECT body FROM journal WHERE seq = 3").fetchone()[0])
    changed = unpack(sealed)
    changed["total"] += 100
    central.db.execute("UPDATE journal SET body = ? WHERE seq = 3", (pack(changed),))
    assert "entry 3: its body is not its sealed bytes redacted" in (
        await get(central, path))["problem"]
    central.db.execute("UPDATE journal SET body = ? WHERE seq = 3", (sealed,))

    # Erasure checks the sealed entries before their key goes, and says so if one fails.
    central.db.execute("UPDATE journal SET body = ? WHERE seq = 3", (pack(changed),))
    resp = await central.post(f"/api/v1/customers/{cid}/erase", headers=central.admin,
                              json={"actor": "dpo", "reason": "customer's request"})
    assert (await resp.json())["journal"] == {**(await resp.json())["journal"],
                                              "entries": 1, "checked": 0}
    assert central.db.execute("SELECT severity FROM alerts"
                              " WHERE kind = 'journal-sealed-mismatch'").fetchone()[0] == \
        "critical"

    central.db.execute("UPDATE journal SET prev_hash = ? WHERE seq = 2", ("0" * 64,))
    assert "entry 2 does not chain" in (await get(central, path))["problem"]
    resp = await central.get("/api/v1/tills/till_nobody/journal/verify",
                             headers=central.admin)
    assert resp.status == 404 and "till" in (await resp.json())["error"]


def test_only_entries_holding_a_personal_value_are_decoded_and_redacted():
    customer = rules.Customer(id="c1", birthday=date(1990, 11, 24)).to_dict()
    today = pack({"detail": {"customer": {**customer, "birthday": None}},
                  "lines": [{"name": "birthday"}]})
    old = pack({"detail": {"customer": {**customer, "birthday": BIRTHDAY}}})
    assert not personal.may_carry_personal(pack({"detail": {"customer": {
        **customer, "birthday": None}}}))
    assert personal.may_carry_personal(today)  # a product's name: decoded for naught
    assert personal.redact(today) is None
    redacted = personal.redact(old)
    assert redacted is not None and BIRTHDAY.encode() not in redacted
    assert unpack(redacted) == {"detail": {"customer": {**customer, "birthday": None}}}
    assert ANNA["birthday"] == BIRTHDAY


VALUES = st.recursive(
    st.none() | st.integers(-2**40, 2**40) | st.text(max_size=12) | st.just("birthday"),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["birthday", "customer", "detail", "lines", "name", "b"]), inner,
        max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["birthday", "detail", "seq"]), VALUES, max_size=3))
def test_the_test_on_bytes_misses_no_personal_value(body):
    raw = pack(body)
    redacted = personal.redact(raw)
    if redacted is not None:
        assert personal.may_carry_personal(raw)  # never stored unredacted
        assert personal.redact(redacted) is None  # nothing personal left
        assert not any(v is not None for v in _birthdays(unpack(redacted)))
    else:
        assert not any(v is not None for v in _birthdays(body))


def _birthdays(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "birthday":
                yield v
            else:
                yield from _birthdays(v)
    elif isinstance(value, list):
        for v in value:
            yield from _birthdays(v)


async def test_an_entry_whose_birthday_cannot_be_cut_out_is_refused_with_one_alert(central):
    """A body no till writes (here a float beside the birthday): refused as out of the
    journal's schema, not stored with the value in clear, not failing on every resend."""
    till = await enrolled_till(central)
    till.sale("c1")
    e = till.sale("c1")
    body = {**e.body(), "detail": {"customer": {"id": "c1", "birthday": BIRTHDAY},
                                   "weight": 0.5}}
    raw = msgpack.packb(body, use_bin_type=True)
    till.entries[-1] = dataclasses.replace(e, hash=hashlib.sha256(raw).hexdigest())
    data = encode_batch(till.key, Batch(till.till_id, till.epoch, tuple(till.entries),
                                        "2026-11-23T10:00:00+00:00",
                                        (till.entries[0].encoded_body(), raw)))
    for _ in range(2):
        resp = await send(central, data)
        assert resp.status == 422, await resp.text()
        error = (await resp.json())["error"]
        assert "entry 2" in error and "personal values" in error, error
    assert central.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    assert holding_the_birthday(central.db) == []
    alerts = central.db.execute("SELECT count FROM alerts WHERE kind = 'entry-refused'"
                                ).fetchall()
    assert [a[0] for a in alerts] == [2]
