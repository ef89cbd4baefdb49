"""Finding customers by id, card, phone and name, page by page; phones one number however
typed; names as people type them in Russian; the phone migration keeps both customers of a
duplicated number; every search audited without the values searched for."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import audit, customer_search, db
from central.customer_search import name_key
from central.db_postgres import PostgresConnection
from central.db_sqlite import SQLiteConnection
from protocol.card_keys import CardKeyring

CARD_A, CARD_B, CARD_C = "2990000000012", "2990000000029", "4000000000000002"


async def create(central, card: str, name: str = "", phone: str | None = None):
    body = {"card_number": card, "name": name, **({"phone": phone} if phone else {})}
    return await central.post("/api/v1/customers", headers=central.admin, json=body)


async def new(central, card: str, name: str = "", phone: str | None = None) -> str:
    resp = await create(central, card, name, phone)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def found(central, **query) -> list[str]:
    resp = await central.get("/api/v1/customers", headers=central.admin, params=query)
    assert resp.status == 200, await resp.text()
    return [c["id"] for c in (await resp.json())["customers"]]


async def searched(central, **body) -> list[str]:
    resp = await central.post("/api/v1/customers/search", headers=central.admin, json=body)
    assert resp.status == 200, await resp.text()
    return [c["id"] for c in (await resp.json())["customers"]]


async def error(resp) -> str:
    return (await resp.json())["error"]


async def test_found_by_name_as_people_type_it(central):
    petr = await new(central, CARD_A, "Пётр  Иванов")
    olga = await new(central, CARD_B, "ОЛЬГА Ёлкина")
    await new(central, CARD_C, "Pyotr Smith")
    for typed in ("пётр", "ПЕТР", "петр ив", "  Пётр   Иванов  ", "Петр ИВАНОВ"):
        assert await found(central, name=typed) == [petr], typed
    for typed in ("ольга елкина", "Ольга Ёлк", "ольга  ЕЛ"):
        assert await found(central, name=typed) == [olga], typed
    assert await found(central, name="иванов") == []  # from the start of the name
    assert await found(central, name="петра") == []
    # a renamed customer is found by the new name only
    resp = await central.patch(f"/api/v1/customers/{olga}", headers=central.admin,
                               json={"name": "Ольга Петрова"})
    assert resp.status == 200
    assert await found(central, name="ольга п") == [olga]
    assert await found(central, name="ольга е") == []


async def test_found_by_phone_however_typed_and_one_number_is_one_customer(central):
    anna = await new(central, CARD_A, "Анна", "+7 900 111-22-33")
    read = await central.get(f"/api/v1/customers/{anna}", headers=central.admin)
    assert (await read.json())["phone"] == "+79001112233"
    for typed in ("8 (900) 111 22 33", "+79001112233", "89001112233", "+7(900)1112233"):
        assert await found(central, phone=typed) == [anna], typed
    # the same number typed another way is a duplicate: 409, on creating and on editing
    resp = await create(central, CARD_B, "Борис", "8 (900) 111 22 33")
    assert resp.status == 409 and "phone" in await error(resp)
    boris = await new(central, CARD_B, "Борис", "8 900 444 55 66")
    resp = await central.patch(f"/api/v1/customers/{boris}", headers=central.admin,
                               json={"phone": "8-900-111-22-33"})
    assert resp.status == 409 and "phone" in await error(resp)
    # editing one's own number to another spelling of it is no conflict
    resp = await central.patch(f"/api/v1/customers/{anna}", headers=central.admin,
                               json={"phone": "8 900 111 22 33"})
    assert resp.status == 200 and (await resp.json())["phone"] == "+79001112233"


@pytest.mark.parametrize("phone", ["+7 (9) 1", "12345", "+7 900 111-22-33-44", "٨٩٠٠١١١٢٢٣٣",
                                   "8 (900) 1l1 22 33", "x" * 40])
async def test_an_invalid_phone_is_400_naming_the_field(central, phone):
    resp = await create(central, CARD_A, "Анна", phone)
    assert resp.status == 400 and "'phone'" in await error(resp)
    cid = await new(central, CARD_B, "Анна")
    resp = await central.patch(f"/api/v1/customers/{cid}", headers=central.admin,
                               json={"phone": phone})
    assert resp.status == 400 and "'phone'" in await error(resp)
    resp = await central.get("/api/v1/customers", headers=central.admin,
                             params={"phone": phone})
    assert resp.status == 400 and "'phone'" in await error(resp)


async def test_found_by_card_and_id(central):
    a = await new(central, CARD_A, "A")
    b = await new(central, CARD_B, "B")
    c = await new(central, CARD_C, "C")
    assert await found(central, card="0012") == [a]
    assert await found(central, card="0002") == [c]
    assert await found(central, id=b) == [b]
    assert await found(central, id="cus_nobody") == []
    # the whole number only in a body: it becomes the card's token, never stored or logged
    assert await searched(central, card_number="2990 0000 0002 9") == [b]
    assert await searched(central, card_number="2990000000036") == []
    assert await searched(central, card="0002", name="c") == [c]
    assert await searched(central, card="0002", name="b") == []  # filters all hold
    resp = await central.get("/api/v1/customers", headers=central.admin,
                             params={"card": CARD_A})
    assert resp.status == 400 and "'card'" in await error(resp)
    assert "POST /api/v1/customers/search" in await error(resp)


async def pages(central, **query) -> tuple[list[str], int]:
    seen: list[str] = []
    after, count = None, 0
    while True:
        params = {**query, **({"after": after} if after else {})}
        resp = await central.get("/api/v1/customers", headers=central.admin, params=params)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        seen += [c["id"] for c in page["customers"]]
        count += 1
        after = page["next_after"]
        if after is None:
            return seen, count


async def test_pages_are_stable_and_cover_everyone_once(central):
    cards = [f"29900000{i:04d}0" for i in range(7)]
    names = ["Иван Юрьев", "иван  Андреев", "Иван Андреев", "ИВАН Яковлев", "Иван Ёлкин",
             "Иван Борисов", "Пётр"]
    ids = [await new(central, card, name) for card, name in zip(cards, names, strict=True)]
    # everyone, by id
    seen, count = await pages(central, limit="3")
    assert seen == sorted(ids) and count == 3
    # a name: by name as keyed, then id (the index's order, no sort)
    keyed = sorted((name_key(n), cid) for n, cid in zip(names, ids, strict=True))
    by_name = [cid for key, cid in keyed if key != "петр"]
    seen, count = await pages(central, limit="2", name="иван")
    assert seen == by_name and count == 3
    assert by_name[:3] == [*sorted(ids[1:3]), ids[5]]  # Андреев twice, by id; then Борисов
    # a customer added meanwhile past the cursor turns up on a later page; none twice
    resp = await central.get("/api/v1/customers", headers=central.admin,
                             params={"limit": "2", "name": "иван"})
    first = await resp.json()
    late = await new(central, "2990000000993", "Иван Зайцев")
    resp = await central.get("/api/v1/customers", headers=central.admin, params={
        "limit": "10", "name": "иван", "after": first["next_after"]})
    rest = [c["id"] for c in (await resp.json())["customers"]]
    assert late in rest and not set(rest) & {c["id"] for c in first["customers"]}
    resp = await central.post("/api/v1/customers/search", headers=central.admin, json={
        "name": "иван", "limit": 2, "after": first["next_after"]})
    assert [c["id"] for c in (await resp.json())["customers"]] == rest[:2]


@pytest.mark.parametrize("after", ["garbage!", "e30", "WyJhIl0", "WzEsMl0"])
async def test_a_name_search_cursor_that_is_none_is_400(central, after):
    resp = await central.get("/api/v1/customers", headers=central.admin,
                             params={"name": "иван", "after": after})
    assert resp.status == 400 and "after" in await error(resp)


@pytest.mark.parametrize(("query", "named"), [
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "x"}, "limit"),
    ({"card": "12a4"}, "card"), ({"card": "123"}, "card"), ({"colour": "red"}, "colour"),
    ({"name": "x" * 201}, "name"), ({"id": "x" * 65}, "id"), ({"after": "y" * 2049}, "after"),
])
async def test_bad_queries_are_400_naming_the_field(central, query, named):
    resp = await central.get("/api/v1/customers", headers=central.admin, params=query)
    assert resp.status == 400 and named in await error(resp)


@pytest.mark.parametrize(("body", "named"), [
    ({"card_number": "1234"}, "card_number"), ({"card_number": 4000}, "card_number"),
    ({"limit": 0}, "limit"), ({"limit": "5"}, "limit"), ({"phone": 79001112233}, "phone"),
    ({"card": "00012"}, "card"), ({"pan": "4000000000000002"}, "pan"),
    ({"name": ["Анна"]}, "name"),
])
async def test_bad_searches_are_400_naming_the_field(central, body, named):
    resp = await central.post("/api/v1/customers/search", headers=central.admin, json=body)
    assert resp.status == 400 and named in await error(resp)


async def test_searches_are_audited_without_what_was_searched(central):
    cid = await new(central, CARD_C, "Анна Смирнова", "+79001112233")
    assert await found(central, name="анна", phone="8 900 111 22 33", card="0002") == [cid]
    assert await searched(central, card_number=CARD_C) == [cid]
    rows = central.db.execute("SELECT * FROM audit WHERE action = 'customer.search'"
                              " ORDER BY seq").fetchall()
    assert [r["subject"] for r in rows] == ["customers", "customers"]
    first, second = (audit._loads(r["after"]) for r in rows)
    assert first == {"filters": ["last4", "phone", "name"], "found": [cid]}
    assert second == {"filters": ["card_number"], "found": [cid]}
    text = " ".join(str(tuple(r)) for r in rows)
    for personal in ("анна", "Анна", "1112233", "0002", CARD_C):
        assert personal not in text


async def test_erased_customers_are_not_found_by_their_old_name(central):
    cid = await new(central, CARD_A, "Анна", "+79001112233")
    resp = await central.post(f"/api/v1/customers/{cid}/erase", headers=central.admin,
                              json={"reason": "asked"})
    assert resp.status == 200
    assert await found(central, name="анна") == []
    assert await found(central, phone="+79001112233") == []
    assert await found(central, id=cid) == [cid]


async def test_other_roles_are_refused(central, clock):
    from central import staff

    for role in ("marketing", "analyst", "auditor"):
        _, tok = staff.add(central.db, central.secrets.staff_token_key, role, role, "test",
                           clock())
        resp = await central.get("/api/v1/customers", headers={"Authorization": f"Bearer {tok}"})
        assert resp.status == 403


def test_a_name_search_reads_the_index_in_its_order(database):
    conn = db.connect(database)
    try:
        with conn.transaction():
            conn.executemany("INSERT INTO customers (id, name, name_key, created_at)"
                             " VALUES (?, ?, ?, '2026-01-01')",
                             [(f"cus_{i:05d}", f"Имя {i}", f"имя {i}") for i in range(2000)])
        explain = "EXPLAIN QUERY PLAN " if isinstance(database, Path) else "EXPLAIN "
        if not isinstance(database, Path):
            conn.execute("ANALYZE customers")
        plan = " ".join(str(tuple(r)) for r in conn.execute(
            explain + "SELECT id FROM customers c WHERE c.name_key >= ? AND c.name_key < ?"
            " ORDER BY c.name_key, c.id LIMIT 51", ("имя 1", "имя 1\U0010ffff")))
        assert "customers_name_key" in plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan  # no sort of the matches
        plan = " ".join(str(tuple(r)) for r in conn.execute(
            explain + "SELECT customer_id FROM cards WHERE last4 = ?", ("0012",)))
        if isinstance(database, Path):  # PostgreSQL scans an empty table whatever the index
            assert "cards_last4" in plan
    finally:
        conn.close()


def _old_connection(database: Path | str):
    """A connection to the database as the central left it before this migration."""
    conn = (PostgresConnection(database) if isinstance(database, str)
            else SQLiteConnection(database))
    db.migrate(conn, upto=len(db.MIGRATIONS) - 1)
    return conn


def test_the_migration_puts_phones_in_e164_and_keeps_both_of_a_duplicate(database):
    conn = _old_connection(database)
    rows = [  # id, name, phone as typed before numbers were normalised, created
        ("cus_a", "Анна Ёлкина", "8 (900) 111 22 33", "2026-01-01T00:00:00+00:00"),
        ("cus_b", "Борис", "+7 900 111-22-33", "2026-02-01T00:00:00+00:00"),
        ("cus_c", "Вера", "+79004445566", "2026-01-15T00:00:00+00:00"),
        ("cus_d", "Глеб", "89004445566", "2026-01-10T00:00:00+00:00"),
        ("cus_e", "Дина", "12345", "2026-01-10T00:00:00+00:00"),
        ("cus_f", "Ефим", "8 900 777 88 99", "2026-01-10T00:00:00+00:00"),
        ("cus_g", "Жанна", None, "2026-01-10T00:00:00+00:00"),
    ]
    with conn.transaction():
        for cid, name, phone, at in rows:
            conn.execute("INSERT INTO customers (id, name, phone, created_at)"
                         " VALUES (?, ?, ?, ?)", (cid, name, phone, at))
    assert db.migrate(conn) == 1
    got = {r["id"]: (r["phone"], r["phone_review"], r["name_key"]) for r in conn.execute(
        "SELECT id, phone, phone_review, name_key FROM customers")}
    assert got == {
        # the oldest of a number typed two ways keeps it
        "cus_a": ("+79001112233", None, "анна елкина"),
        "cus_b": ("+7 900 111-22-33", "duplicate of cus_a", "борис"),
        # one who holds it in E.164 already keeps it, though younger
        "cus_c": ("+79004445566", None, "вера"),
        "cus_d": ("89004445566", "duplicate of cus_c", "глеб"),
        "cus_e": ("12345", "invalid", "дина"),
        "cus_f": ("+79007778899", None, "ефим"),
        "cus_g": (None, None, "жанна"),
    }
    # tills are to receive the settled phones (as tokens): those customers go to them again
    marks = {r["id"]: r["change_seq"] for r in conn.execute(
        "SELECT id, change_seq FROM customers")}
    counter = conn.execute("SELECT value FROM counters WHERE name = 'customer_change'"
                           ).fetchone()[0]
    assert {cid for cid, mark in marks.items() if mark} == {"cus_a", "cus_c", "cus_f"}
    assert max(marks.values()) <= counter
    alerts = {(r["kind"], r["customer_id"]) for r in conn.execute(
        "SELECT kind, customer_id FROM alerts")}
    assert alerts == {("customer-phone-duplicate", "cus_b"),
                      ("customer-phone-duplicate", "cus_d"),
                      ("customer-phone-invalid", "cus_e")}
    messages = " ".join(r["message"] for r in conn.execute("SELECT message FROM alerts"))
    assert "cus_a" in messages and "900" not in messages  # ids, never the number
    conn.close()


async def test_a_duplicate_left_by_the_migration_is_listed_and_settled(central):
    a = await new(central, CARD_A, "Анна", "+79001112233")
    # as the migration leaves a second customer of that number
    central.db.execute("INSERT INTO customers (id, name, name_key, phone, phone_review,"
                       " created_at) VALUES ('cus_b', 'Борис', 'борис', '8 900 111 22 33',"
                       " ?, '2026-01-01T00:00:00+00:00')", (f"duplicate of {a}",))
    resp = await central.get("/api/v1/customers", headers=central.admin,
                             params={"id": "cus_b"})
    assert (await resp.json())["customers"][0]["phone_review"] == f"duplicate of {a}"
    assert await found(central, phone="8 900 111 22 33") == [a]
    resp = await central.patch("/api/v1/customers/cus_b", headers=central.admin,
                               json={"phone": "+79005556677"})
    assert resp.status == 200
    resp = await central.get("/api/v1/customers", headers=central.admin,
                             params={"id": "cus_b"})
    assert (await resp.json())["customers"][0]["phone_review"] is None


_RUSSIAN = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
_names = st.text(alphabet=_RUSSIAN + _RUSSIAN.upper() + " ", min_size=1, max_size=12)


@given(_names)
def test_name_keys_are_blind_to_case_yo_and_spaces(name):
    key = name_key(name)
    assert name_key(name.upper()) == name_key(name.lower()) == key
    assert name_key(name.replace("ё", "е").replace("Ё", "Е")) == key
    assert name_key("  " + name.replace(" ", "   ") + " ") == key
    assert name_key(key) == key and "ё" not in key and "  " not in key


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(_names, min_size=1, max_size=8), _names)
def test_a_prefix_finds_exactly_the_names_it_begins(tmp_path, names, typed):
    conn = db.connect(tmp_path / f"p{abs(hash((tuple(names), typed)))}.db")
    try:
        with conn.transaction():
            for i, name in enumerate(names):
                conn.execute("INSERT INTO customers (id, name, name_key, created_at)"
                             " VALUES (?, ?, ?, '2026-01-01')", (f"cus_{i:02d}", name,
                                                                 name_key(name)))
        got = customer_search.search(conn, CardKeyring(),
                                     customer_search.CustomerQuery(name=typed, limit=200))
        key = name_key(typed)
        matching = [(name_key(n), f"cus_{i:02d}") for i, n in enumerate(names)
                    if name_key(n).startswith(key)]
        # by name then id where a name was typed, else by id
        expected = [cid for _, cid in sorted(matching)] if key else sorted(
            cid for _, cid in matching)
        assert [c["id"] for c in got["customers"]] == expected
    finally:
        conn.close()
