"""A chain's central survives the loss of its database machine: a primary with two streaming
standbys, commits acknowledged only once a standby holds them, the primary SIGKILLed in the
middle of ingest from real tills, a standby promoted; the central finds the new primary by
itself, no acknowledged receipt is lost, the tills resend the rest, the ledger equals the
journals. A standby lost before that stops nothing.

Why a quorum of two standbys (`ANY 1 (standby1, standby2)`) and not one synchronous standby
with a watchdog that drops it when commits stall: with the quorum every acknowledged commit
is on two machines even while one standby is down, PostgreSQL itself does it, and nothing
has to judge "stalled" (a slow standby would trip a watchdog and silently leave the chain
with acknowledgements held by one machine). docs/operations.md says how this maps onto
Patroni and managed PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal

import pytest

from tests.pg_cluster import PgCluster, PgClusters, multi_host_url
from tests.store_checks import cashier, check_ledger_equals_journals, journalled
from tillpoint.demo import card_number
from tillpoint.processes import wait_for
from tillpoint.store_harness import StoreHarness, Till

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TILLS = 3
MEMBERS = 10
BONUS = 500
QUORUM = "ANY 1 (standby1, standby2)"


async def acked(store: StoreHarness, till: Till) -> int:
    """What the central has acknowledged to this till, as the till knows it."""
    return (await store.pos(till, "GET", "/pos/v1/status"))["journal"]["acked_seq"]


def held_on(server: PgCluster, till: Till) -> int:
    """Entries of the till's (one) epoch that `server` holds, read on the server itself."""
    return int(server.sql("SELECT COUNT(*) FROM journal WHERE till_id = %s",
                          (till.till_id,))[0][0])


async def test_primary_killed_mid_ingest_standby_promoted_nothing_acknowledged_lost(tmp_path):
    with PgClusters() as pg:
        primary = await asyncio.to_thread(pg.primary)
        standby1 = await asyncio.to_thread(pg.standby, primary, "standby1")
        standby2 = await asyncio.to_thread(pg.standby, primary, "standby2")
        await asyncio.to_thread(primary.configure, synchronous_standby_names=QUORUM)
        await wait_for(lambda: True if {n: s for n, (_, s) in primary.replicas().items()} == {
            "standby1": "quorum", "standby2": "quorum"} else None,
            "both standbys to stream in the quorum", timeout=60)
        # Every server in one URL: the central connects to whichever takes writes.
        url = multi_host_url(primary, standby1, standby2)
        async with StoreHarness(tmp_path, database=url) as store:
            await store.start_central()
            central = store.procs.find("central")
            tills = [await store.add_till(f"till-{k + 1}") for k in range(TILLS)]
            customers = [(await store.office("POST", "/api/v1/customers", {
                "card_number": card_number(i + 1), "welcome_bonus": BONUS}))["id"]
                for i in range(MEMBERS)]
            for till in tills:
                await store.pos(till, "POST", "/pos/v1/identify",
                                {"card_number": card_number(MEMBERS)})
            done = asyncio.Event()
            cashiers = [asyncio.create_task(cashier(store, t, customers, random.Random(k),
                                                    done)) for k, t in enumerate(tills)]

            def selling() -> None:
                store.procs.check_alive()
                for c in cashiers:
                    if c.done():
                        c.result()

            async def acknowledged_beyond(marks: dict[str, int], more: int) -> None:
                for till in tills:
                    async def past(t: Till = till) -> bool | None:
                        return True if await acked(store, t) >= marks[t.name] + more else None

                    await wait_for(past, f"{till.name} acknowledged {more} more", 60, selling)

            try:
                zero = dict.fromkeys((t.name for t in tills), 0)
                await acknowledged_beyond(zero, 20)

                # A standby dies: the quorum still has one, commits go on undelayed.
                await asyncio.to_thread(standby2.kill)
                marks = {t.name: await acked(store, t) for t in tills}
                await acknowledged_beyond(marks, 20)

                # Acknowledgements wait for the standby: with the one left silenced, no till
                # is acknowledged anything (the central's commits wait); once it speaks
                # again, everything goes on.
                receiver = standby1.receiver_pid()
                assert receiver is not None
                os.kill(receiver, signal.SIGSTOP)
                try:
                    # Absence is what is checked, so it takes a stretch of time: a second
                    # for answers already under way, then three with nothing acknowledged.
                    await asyncio.sleep(1)
                    silenced = {t.name: await acked(store, t) for t in tills}
                    await asyncio.sleep(3)
                    assert {t.name: await acked(store, t) for t in tills} == silenced
                finally:
                    os.kill(receiver, signal.SIGCONT)
                await acknowledged_beyond(silenced, 10)

                # The primary's machine is lost in the middle of ingest.
                await asyncio.to_thread(primary.kill)
                at_kill = {t.name: await acked(store, t) for t in tills}
                # Before anything else can write there: the surviving standby holds every
                # entry any till was told was safe (read once it has applied what it holds).
                await wait_for(lambda: True if standby1.replayed_all_received() else None,
                               "standby1 to replay what it received", timeout=30)
                for till in tills:
                    assert held_on(standby1, till) >= at_kill[till.name], till.name
                journalled_at_kill = journalled(tills)
                await asyncio.to_thread(standby1.promote)
                assert not standby1.in_recovery()

                # The central (the same process) finds the new primary through its URL;
                # the tills resend what was not acknowledged and go on.
                await acknowledged_beyond(at_kill, 20)
                assert central.poll() is None
                assert journalled(tills) > journalled_at_kill
            finally:
                done.set()
                sold = sum([await c for c in cashiers])
            await store.wait_synced(timeout=120)
            assert store.procs.find("central") is central
            total = await check_ledger_equals_journals(store, tills,
                                                       dict.fromkeys(customers, BONUS))
            assert total == sold
            print(f"failover: {sold} receipts; acknowledged at the kill {at_kill}")
