"""Two central processes on one PostgreSQL database, ingesting at once: every batch reaches
both (as a till's resend through a balancer may), and still each entry counts once, the
ledger explains every balance, and the background jobs do each entry once."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from central import campaign_budgets, db, ledger
from tests.databases import KINDS, postgres_schema
from tests.till_double import TestTill
from tillpoint.processes import Processes, read_file, tillpoint_cmd, wait_for

CARD = "2990000000012"
TILLS, ROUNDS, SALES = 4, 3, 5


async def _start(procs: Processes, name: str, data: Path, url: str | None, workdir: Path,
                 *extra: str) -> str:
    port_file = workdir / f"{name}.port"
    procs.start(name, tillpoint_cmd("central", "run", "--data", str(data), "--port", "0",
                                    "--port-file", str(port_file), *_on(url), *extra))
    port = await wait_for(lambda: read_file(port_file), f"{name} to listen",
                          check=procs.check_alive)
    return f"http://127.0.0.1:{port}"


def _on(url: str | None) -> list[str]:
    return ["--database", url] if url else []


async def test_two_processes_ingest_the_same_tills_at_once_and_each_entry_counts_once(
        tmp_path: Path):
    with postgres_schema() as url:
        procs = Processes(tmp_path / "logs")
        try:
            await _ingest_through_two(procs, url, tmp_path)
        finally:
            procs.stop_all()


async def _ingest_through_two(procs: Processes, url: str, tmp_path: Path) -> None:
    data = tmp_path / "central"
    # The first makes the secrets; the second shares them, as processes behind a balancer.
    first = await _start(procs, "central-a", data, url, tmp_path)
    second = await _start(procs, "central-b", data, url, tmp_path)
    admin = {"Authorization": f"Bearer {(data / 'admin-token').read_text().strip()}"}
    async with aiohttp.ClientSession() as http:
        async def post(base: str, path: str, **kw) -> tuple[int, dict]:
            async with http.post(base + path, **kw) as resp:
                return resp.status, await resp.json()

        status, created = await post(first, "/api/v1/customers", headers=admin,
                                     json={"card_number": CARD, "welcome_bonus": 1000})
        assert status == 201, created
        customer = created["id"]
        tills = []
        for i in range(TILLS):
            till = TestTill()
            _, token = await post(first, "/api/v1/enrolment-tokens", headers=admin,
                                  json={"store": "s1"})
            status, enrolled = await post((first, second)[i % 2], "/sync/v1/enroll",
                                          json=till.enrolment(token["token"]))
            assert status == 200, enrolled
            till.till_id = enrolled["till_id"]
            tills.append(till)
        now = datetime.now(UTC)
        headers = {"Content-Type": "application/msgpack"}
        for r in range(ROUNDS):
            sends = []
            for till in tills:
                for _ in range(SALES):
                    # Anonymous sales first (nothing but the till's lock keeps the two
                    # copies of a batch apart), then the tills spend one customer's points
                    # at once (the customer's lock keeps their lots whole).
                    if r == 0:
                        till.sale(None, at=now)
                    else:
                        till.sale(customer, earned=10, redeemed=20, at=now)
                batch = till.batch(r * SALES + 1, (r + 1) * SALES)
                # The same batch to both processes at once, and every till at once.
                sends += [post(base, "/sync/v1/batches", data=batch, headers=headers)
                          for base in (first, second)]
            answers = await asyncio.gather(*sends)
            assert [s for s, _ in answers] == [200] * len(sends), answers
            assert {a["acked_seq"] for _, a in answers} == {(r + 1) * SALES}

        conn = db.connect(url)
        try:
            entries = TILLS * ROUNDS * SALES
            assert conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == entries
            # Each entry in the ingest sequence once, whichever process applied it.
            assert conn.execute("SELECT SUM(last_seq - first_seq + 1) FROM ingest_log"
                                ).fetchone()[0] == entries
            spends = TILLS * (ROUNDS - 1) * SALES
            assert conn.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'redeem'"
                                ).fetchone()[0] == spends
            assert conn.execute("SELECT COUNT(*) FROM lots WHERE remaining < 0"
                                ).fetchone()[0] == 0
            b = ledger.balance(conn, customer)
            assert b.available + b.pending == ledger.movement_total(conn, customer)
            assert b.debt >= 0

            def repriced() -> int | None:
                row = conn.execute("SELECT checked FROM repricing").fetchone()
                return row[0] if row[0] >= spends else None

            # Both processes run re-pricing; the one that claims a page does it, once.
            assert await wait_for(repriced, "both processes to re-price", timeout=60,
                                  check=procs.check_alive) == spends
        finally:
            conn.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_an_ingest_process_leaves_the_background_jobs_to_a_process_of_their_own(
        tmp_path: Path, kind: str):
    """`--role ingest` answers tills and runs no background job; `--role followers` runs
    them and serves nothing: re-pricing and budgets catch up there, and after a SIGKILL of
    that process its successor goes on from the cursors, each entry once."""
    with postgres_schema() if kind == "postgresql" else contextlib.nullcontext() as url:
        procs = Processes(tmp_path / "logs")
        try:
            await _ingest_then_follow(procs, url, tmp_path)
        finally:
            procs.stop_all()


async def _ingest_then_follow(procs: Processes, url: str | None, tmp_path: Path) -> None:
    data = tmp_path / "central"
    base = await _start(procs, "central", data, url, tmp_path, "--role", "ingest")
    admin = {"Authorization": f"Bearer {(data / 'admin-token').read_text().strip()}"}
    conn = db.connect(url or data / "central.db")
    followers = ["central", "run", "--role", "followers", "--data", str(data), *_on(url)]
    try:
        async with aiohttp.ClientSession() as http:
            async def post(path: str, **kw) -> dict:
                async with http.post(base + path, **kw) as resp:
                    assert resp.status in (200, 201), await resp.text()
                    return await resp.json()

            customer = (await post("/api/v1/customers", headers=admin, json={
                "card_number": CARD, "welcome_bonus": 1000}))["id"]
            till = TestTill()
            token = (await post("/api/v1/enrolment-tokens", headers=admin,
                                json={"store": "s1"}))["token"]
            till.till_id = (await post("/sync/v1/enroll", json=till.enrolment(token)))[
                "till_id"]
            headers = {"Content-Type": "application/msgpack"}

            async def sell(rounds: range) -> None:
                for r in rounds:
                    for _ in range(SALES):
                        till.sale(customer, earned=10, at=datetime.now(UTC))
                    ack = await post("/sync/v1/batches", headers=headers,
                                     data=till.batch(r * SALES + 1, (r + 1) * SALES))
                    assert ack["acked_seq"] == (r + 1) * SALES

            def checked() -> int:
                return int(conn.execute("SELECT checked FROM repricing").fetchone()[0])

            def caught_up(entries: int) -> bool | None:
                return True if checked() >= entries and campaign_budgets.behind(conn) == 0 \
                    else None

            await sell(range(ROUNDS))
            # The ingest process acknowledged them and leaves them to the followers.
            assert checked() == 0 and campaign_budgets.behind(conn) == ROUNDS * SALES
            procs.start("followers", tillpoint_cmd(*followers))
            await wait_for(lambda: caught_up(ROUNDS * SALES), "the followers to catch up",
                           timeout=60, check=procs.check_alive)
            procs.kill(procs.find("followers"))  # type: ignore[arg-type]
            procs.forget_exited()
            await sell(range(ROUNDS, 2 * ROUNDS))
            procs.start("followers-2", tillpoint_cmd(*followers))
            await wait_for(lambda: caught_up(2 * ROUNDS * SALES),
                           "the next followers to go on", timeout=60, check=procs.check_alive)
            assert checked() == 2 * ROUNDS * SALES  # none twice
    finally:
        conn.close()
