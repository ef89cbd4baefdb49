"""Customer deltas without stalling the till: an index behind each change, chunked bulk
applies, pages built with a fixed number of queries, one pull at a time, and a new till
whose POS API answers (and tells systemd it is up) while its first sync runs."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import customers, sync
from agent.store import get_meta, open_store
from central import deltas
from protocol import bounds
from tests.sync_fixtures import LocalTill, enrol, live_central  # noqa: F401


def page(cursor: int, ids: range, card: str = "tok") -> dict:
    return {"cursor": cursor, "epoch": None, "acked_seq": 0, "customers": [
        {"id": f"c{i}", "available": i, "pending": 0, "debt": 0, "cards": [f"{card}{i}"],
         "segments": ["s"] if i % 2 else []} for i in ids]}


def test_a_customer_change_finds_the_cards_by_an_index(tmp_path: Path):
    db = open_store(tmp_path / "a.db")
    plan = " ".join(r[3] for r in db.execute(
        "EXPLAIN QUERY PLAN DELETE FROM cards WHERE customer_id = ?", ["c1"]))
    assert "cards_customer" in plan, plan
    db.close()


def test_a_page_applied_twice_after_a_crash_between_chunks_changes_nothing(tmp_path: Path):
    db = open_store(tmp_path / "a.db")
    customers.apply_deltas(db, page(10, range(500), card="old"))
    delta = page(20, range(500), card="new")
    # A crash after the first chunk: the cursor stays, the page comes again.
    customers.apply_chunk(db, delta, delta["customers"][:customers.CHUNK])
    assert get_meta(db, "customer_cursor") == "10"
    customers.apply_deltas(db, delta)
    assert get_meta(db, "customer_cursor") == "20"
    cards = dict(db.execute("SELECT token, customer_id FROM cards").fetchall())
    assert len(cards) == 500 and cards["new7"] == "c7" and "old7" not in cards
    assert customers.by_token(db, "new499") == "c499"
    assert db.execute("SELECT segments FROM customers WHERE id = 'c3'").fetchone()[0] == '["s"]'
    db.close()


async def add_customers(central, n: int) -> list[str]:
    ids = []
    for i in range(n):
        resp = await central.post("/api/v1/customers", headers=central.admin, json={
            "card_number": f"29900000{i:05d}", "welcome_bonus": 10 + i})
        assert resp.status == 201, await resp.text()
        ids.append((await resp.json())["id"])
    return ids


async def test_a_page_is_built_with_the_same_queries_whatever_its_size(
        live_central, monkeypatch):  # noqa: F811
    await enrol(live_central)
    till_id = live_central.db.execute("SELECT id FROM tills").fetchone()[0]
    await add_customers(live_central, 12)

    def statements(size: int) -> int:
        monkeypatch.setattr(deltas, "MAX_DELTA", size)
        seen: list[str] = []
        conn = live_central.db
        real = conn.execute

        def execute(sql, params=()):
            seen.append(sql)
            return real(sql, params)

        monkeypatch.setattr(conn, "execute", execute)
        try:
            answer = deltas.customer_deltas(conn, till_id, 0, datetime.now(UTC))
        finally:
            monkeypatch.undo()
        assert len(answer["customers"]) == size
        assert all(c["cards"] and c["lots"] for c in answer["customers"])
        return sum(1 for q in seen if q.lstrip().upper().startswith("SELECT"))

    # Per customer a query or two (cards, lots, debt) made it grow with the page.
    assert statements(12) == statements(3)


async def test_the_page_a_till_receives_is_the_page_built(live_central):  # noqa: F811
    await enrol(live_central)
    till_id = live_central.db.execute("SELECT id FROM tills").fetchone()[0]
    await add_customers(live_central, 3)
    now = datetime.now(UTC)
    as_json = json.loads(deltas.customer_deltas_json(live_central.db, till_id, 0, now))
    assert as_json == deltas.customer_deltas(live_central.db, till_id, 0, now)


async def test_pages_are_pulled_one_pull_at_a_time(
        live_central, tmp_path: Path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(deltas, "MAX_DELTA", 2)
    till = LocalTill(await enrol(live_central), tmp_path / "till.db")
    ids = await add_customers(live_central, 5)
    asked: list[str] = []
    decoded_in: list[threading.Thread] = []
    real = till.client.request
    real_decode = sync.json_in_steps

    async def request(method, path, *a, **kw):
        asked.append(path)
        return await real(method, path, *a, **kw)

    def decode(data):
        decoded_in.append(threading.current_thread())
        return real_decode(data)

    till.client.request = request  # type: ignore[method-assign]
    monkeypatch.setattr(sync, "json_in_steps", decode)
    try:
        # A POS asking about a card while a pull runs joins it: pages are fetched once.
        counts = await asyncio.gather(till.sync.pull_customers(), till.sync.pull_customers())
        assert counts == [5, 5]
        assert len(asked) == 3 and len(set(asked)) == 3
        # Each page decoded in a worker thread, a member at a time (protocol.wire).
        assert len(decoded_in) == 3 and threading.main_thread() not in decoded_in
        progress = till.sync.state.customers
        assert progress["caught_up"] and progress["received"] == 5
        assert "initial_sync_s" in progress
        held = {r[0] for r in till.db.execute("SELECT id FROM customers")}
        assert held == set(ids)
        assert await till.sync.pull_customers() == 0
    finally:
        await till.close()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["x" * 1000, "x" * 1001, "k" * 201, "a\x01b", "é", "-1e5", "1.5"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=5) | st.sampled_from(["k" * 200, "k" * 201, "\x7f"]), inner,
        max_size=4),
    max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_the_quick_check_of_a_customer_never_passes_what_the_full_one_refuses(value):
    text = json.dumps(value)
    if bounds.json_fits(text):
        bounds.check_tree(value, "v")  # raises if the shortcut vouched for a bad value


def test_the_quick_check_refuses_what_tills_could_not_take():
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    for bad in ({"a": 1.5}, {"a": 2**60}, {"a": "x" * 1001}, {"k" * 201: 1}, {"a": "\x01"},
                {"a": deep}):
        text = json.dumps(bad)
        assert not bounds.json_fits(text), bad
        with pytest.raises(bounds.OutOfBounds):
            bounds.check_tree(bad, "v")
    assert bounds.json_fits(json.dumps({"a": [-5, True, None, "x" * 1000], "k" * 200: 10**14}))


# -- a new till, through real processes ------------------------------------------------------


@pytest.mark.slow
async def test_a_new_till_answers_and_is_ready_while_its_first_customer_sync_runs(
        tmp_path: Path):
    from bench.pos import add_members
    from tillpoint.demo import card_number
    from tillpoint.store_harness import StoreHarness, wait_for

    members = 100_000
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    async with StoreHarness(tmp_path) as store:
        await store.start_central()
        add_members(tmp_path / "central", members)
        store.env = {**store.env, "NOTIFY_SOCKET": str(notify_path)}
        till = await store.add_till("till-1", agent_args=("--pull-interval", "1"))
        # add_till returned once the POS API answered: the first sync is still running.
        first = await store.pos(till, "GET", "/pos/v1/status")
        progress = first["sync"]["customers"]
        assert not progress.get("caught_up") and progress.get("received", 0) < members, \
            progress
        # And systemd was told the service is up (Type=notify), before the sync ended.
        ready = notify_messages(notify)
        assert "READY=1" in ready, ready

        async def caught_up() -> dict | None:
            s = (await store.pos(till, "GET", "/pos/v1/status"))["sync"]["customers"]
            return s if s.get("caught_up") else None

        done = await wait_for(caught_up, "the first customer sync", 300,
                              store.procs.check_alive)
        assert done["received"] == members
        found = await store.pos(till, "POST", "/pos/v1/identify",
                                {"card_number": card_number(members)})
        assert found["customer_id"].startswith("cus_")
    notify.close()


def notify_messages(sock: socket.socket) -> str:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return "\n".join(out)

