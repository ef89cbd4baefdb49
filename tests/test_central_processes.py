"""Two central processes on one PostgreSQL database, ingesting at once: every batch reaches
both (as a till's resend through a balancer may), and still each entry counts once, the
ledger explains every balance, and the background jobs do each entry once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from central import db, ledger
from tests.databases import postgres_schema
from tests.till_double import TestTill
from tillpoint.processes import Processes, read_file, tillpoint_cmd, wait_for

CARD = "2990000000012"
TILLS, ROUNDS, SALES = 4, 3, 5


async def _start(procs: Processes, name: str, data: Path, url: str, workdir: Path) -> str:
    port_file = workdir / f"{name}.port"
    procs.start(name, tillpoint_cmd("central", "run", "--data", str(data), "--database", url,
                                    "--port", "0", "--port-file", str(port_file)))
    port = await wait_for(lambda: read_file(port_file), f"{name} to listen",
                          check=procs.check_alive)
    return f"http://127.0.0.1:{port}"


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
