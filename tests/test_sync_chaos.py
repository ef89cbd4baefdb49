"""Exactly once through a hostile network and killed processes, on real parts.

Three tills sell at once through their POS APIs while a proxy between them and the central
drops requests, drops answers after the central applied them, duplicates, delays, replays
stale batches, resets connections and answers 5xx; agents and the central are SIGKILLed at
random moments and restarted. At the end the central's journal is the tills' journals
entry by entry, every balance is what the journals (priced by the rules, which the central
re-checks) give, and no alarm was raised by any of it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from agent import journal
from agent.store import open_store
from central import db as central_db
from tests.balancer import Balancer
from tests.databases import ON_BOTH_DATABASES
from tests.fault_proxy import FAULTS, FaultPlan, FaultProxy
from tillpoint.demo import card_number
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness, Till

RECEIPTS = 2000
MEMBERS = 30
BONUS = 3000
ITEMS = [{"sku": "300", "name": "Socks", "qty": 1000, "price": 15000, "category": "sports",
          "vat": "22"},
         {"sku": "100", "name": "Milk", "qty": 2000, "price": 8990, "category": "dairy",
          "vat": "10"}]
AGENT_ARGS = ("--max-backoff", "1", "--sync-interval", "0.3")


def local_entries(till: Till) -> list[tuple[str, int, str, str | None, int, int]]:
    db = open_store(till.state / "agent.db")
    try:
        rows = db.execute("SELECT epoch, seq, hash, customer_id, earned, redeemed FROM journal"
                          " ORDER BY id").fetchall()
    finally:
        db.close()
    return [tuple(r) for r in rows]


def journalled(tills: list[Till]) -> int:
    total = 0
    for till in tills:
        db = open_store(till.state / "agent.db")
        try:
            total += db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        finally:
            db.close()
    return total


# Entries the other processes must acknowledge while one is down.
DOWN_FOR = 40


class Chaos:
    def __init__(self, store: StoreHarness, proxy: FaultProxy, rng: random.Random) -> None:
        self.store = store
        self.proxy = proxy
        self.rng = rng
        self.restarting: set[str] = set()
        self.kills: Counter[str] = Counter()
        self.tills: list[Till] = []
        self.check: Callable[[], None] = lambda: None  # raises if a cashier failed
        self.balancer: Balancer | None = None  # in front of several central processes

    async def kill_agent(self) -> None:
        till = self.rng.choice(self.tills)
        self.restarting.add(till.name)
        try:
            self.store.procs.kill(self.store.agent_process(till))
            self.kills["agent"] += 1
            await self.store.start_agent(till)
        finally:
            self.restarting.discard(till.name)

    async def kill_central(self) -> None:
        """The one central process, SIGKILLed and started again at once."""
        self.store.kill_central()
        self.kills["central"] += 1
        await self.store.start_central()

    def down_while_others_ingest(self, name: str, *extra: str) -> Callable[[], Awaitable[None]]:
        """SIGKILL central process `name`; start it again once the others have taken more
        of the tills' entries meanwhile."""
        async def strike() -> None:
            held = self.acknowledged()
            self.store.kill_central(name)
            self.kills["central"] += 1
            await self._others_ingest(held, f"{name} is down")
            url = await self.store.start_central(name, *extra)
            if self.balancer is not None:
                self.balancer.upstreams[name] = url
        return strike

    async def down_followers(self) -> None:
        """SIGKILL the background jobs' own process, and start it again a while later."""
        held = self.acknowledged()
        self.store.procs.kill(self.store.procs.find("followers"))  # type: ignore[arg-type]
        self.store.procs.forget_exited()
        self.kills["followers"] += 1
        await self._others_ingest(held, "the followers are down")
        self.store.start_followers()

    async def _others_ingest(self, held: int, why: str) -> None:
        await wait_for(lambda: True if self.acknowledged() >= held + DOWN_FOR else None,
                       f"{DOWN_FOR} more entries acknowledged while {why}", timeout=120,
                       check=self.check)

    def acknowledged(self) -> int:
        """The tills' entries the central holds, read from its database."""
        conn = central_db.connect(self.store.central_database)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
        finally:
            conn.close()


async def sell(store: StoreHarness, chaos: Chaos, till: Till, customers: list[str],
               rng: random.Random, done: asyncio.Event) -> None:
    """A cashier at one till: receipts one after another, whatever the network does."""
    n = 0
    while not done.is_set():
        n += 1
        body: dict = {"lines": [rng.choice(ITEMS)], "payment": "cash"}
        # Members' receipts carry loyalty lines, and the simulated printer's work grows with
        # everything it has printed: a fifth of receipts are members', to keep this lean.
        if rng.random() < 0.2:
            body["customer_id"] = rng.choice(customers)
            if n % 3 == 0:
                body["redeem"] = 50
        try:
            if body.get("redeem"):  # the customer shows the app's code
                await store.present(till, body["customer_id"])
            await store.pos(till, "POST", "/pos/v1/receipts", body)
        except ApiError as e:
            if e.status == 409 and "redemption refused" in str(e.body):
                continue  # a cap or the balance said no: the cashier takes cash
            if e.status == 409 and "pending_receipt_id" in e.body:
                await store.pos(till, "POST", "/pos/v1/pending/reconcile", {})
                continue
            raise
        except (aiohttp.ClientError, TimeoutError):
            # The agent was killed under us: wait until it is back, then go on.
            await wait_for(lambda t=till: None if t.name in chaos.restarting else True,
                           f"{till.name} to come back", timeout=90)


@ON_BOTH_DATABASES
async def test_ledger_equals_journals_after_faults_and_kills(tmp_path, store_database: str | None):
    rng = random.Random(20261123)
    async with StoreHarness(tmp_path, database=store_database) as store:
        await store.start_central()
        proxy = FaultProxy(store.central_url, FaultPlan(rate=0.0), seed=7)
        store.till_central_url = await proxy.start()
        try:
            chaos = Chaos(store, proxy, rng)

            async def kill_central() -> None:
                await chaos.kill_central()
                proxy.upstream = store.central_url

            tills, customers = await sell_through_kills(
                store, chaos, RECEIPTS, [kill_central, chaos.kill_agent, chaos.kill_agent,
                                         kill_central, chaos.kill_agent, chaos.kill_agent])
            await check_whole(store, tills, customers, RECEIPTS)
            assert chaos.kills == {"agent": 4, "central": 2}
            # Every kind of fault was met while receipts flowed.
            assert set(proxy.counts) >= set(FAULTS), proxy.counts
        finally:
            await proxy.close()


MULTI_RECEIPTS = 1200
CENTRALS = ("central-1", "central-2", "central-3")


@pytest.mark.parametrize("store_database", ["postgresql"], indirect=True)
async def test_three_central_processes_behind_a_balancer_killed_in_turn(
        tmp_path, store_database: str):
    """A chain's deployment on one PostgreSQL: three central processes behind a round-robin
    balancer (two serving and running the background jobs, one ingest only) and a process
    of background jobs alone. Each is SIGKILLed in turn and stays down while the others
    take its tills' batches; tills' requests still meet the hostile network on their way.
    Every entry counts once, every sale is re-priced once, whichever process did it."""
    rng = random.Random(20261201)
    async with StoreHarness(tmp_path, database=store_database) as store:
        await store.start_central(CENTRALS[0])  # makes the secrets the others share
        await store.start_central(CENTRALS[1])
        await store.start_central(CENTRALS[2], "--role", "ingest")
        store.start_followers()
        balancer = Balancer(store.central_urls)
        store.put_behind(await balancer.start())
        proxy = FaultProxy(balancer.url, FaultPlan(rate=0.0), seed=11)
        store.till_central_url = await proxy.start()
        try:
            chaos = Chaos(store, proxy, rng)
            chaos.balancer = balancer
            tills, customers = await sell_through_kills(
                store, chaos, MULTI_RECEIPTS,
                [chaos.down_while_others_ingest(CENTRALS[0]), chaos.kill_agent,
                 chaos.down_while_others_ingest(CENTRALS[1]), chaos.down_followers,
                 chaos.down_while_others_ingest(CENTRALS[2], "--role", "ingest"),
                 chaos.kill_agent])
            await check_whole(store, tills, customers, MULTI_RECEIPTS)
            assert chaos.kills == {"agent": 2, "central": 3, "followers": 1}
            # All three took batches, and batches were in two processes at the same time.
            assert set(balancer.batches_acked) == set(CENTRALS), balancer.batches_acked
            assert balancer.overlapped > 0
            assert balancer.redispatched > 0  # tills met a dead process, and went on
            assert proxy.counts.total() > 0
        finally:
            await proxy.close()
            await balancer.close()


async def sell_through_kills(store: StoreHarness, chaos: Chaos, receipts: int,
                             kills: list[Callable[[], Awaitable[None]]],
                             ) -> tuple[list[Till], list[str]]:
    """Three tills sell `receipts` receipts through the hostile network while `kills` strike
    one by one at random points of the day; then the network calms and every till syncs."""
    rng = chaos.rng
    tills = [await store.add_till(f"till-{k + 1}", agent_args=AGENT_ARGS) for k in range(3)]
    customers = [(await store.office("POST", "/api/v1/customers", {
        "card_number": card_number(i + 1), "welcome_bonus": BONUS}))["id"]
        for i in range(MEMBERS)]
    for cid in customers:  # their apps get their keys while the central is up
        await store.app_key(cid)
    for till in tills:
        # The newest member: once a till knows them, it has pulled every one before.
        await store.pos(till, "POST", "/pos/v1/identify",
                        {"card_number": card_number(MEMBERS)})
    chaos.proxy.plan = FaultPlan(rate=0.3, max_delay_s=0.2)
    done = asyncio.Event()
    cashiers = [asyncio.create_task(sell(store, chaos, t, customers, random.Random(k), done))
                for k, t in enumerate(tills)]

    def cashiers_ok() -> None:
        for c in cashiers:
            if c.done():
                c.result()

    chaos.check = cashiers_ok
    chaos.tills = tills
    # Kills at random points of the day: after this many receipts are journalled.
    plan = sorted(rng.sample(range(100, receipts - 100), len(kills)))
    try:
        for at, kill in zip(plan, kills, strict=True):
            await wait_for(lambda at=at: True if journalled(tills) >= at else None,
                           f"{at} receipts", timeout=120, check=cashiers_ok)
            await kill()
        await wait_for(lambda: True if journalled(tills) >= receipts else None,
                       f"{receipts} receipts", timeout=120, check=cashiers_ok)
    finally:
        done.set()
        for c in cashiers:
            await c
    chaos.proxy.plan = FaultPlan(rate=0.0)
    await store.wait_synced(timeout=120)
    return tills, customers


async def check_whole(store: StoreHarness, tills: list[Till], customers: list[str],
                      receipts: int) -> None:
    expected = dict.fromkeys(customers, BONUS)
    total = 0
    for till in tills:
        local = local_entries(till)
        total += len(local)
        held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
        assert [(e[0], e[1], e[2]) for e in local] == [
            (h["epoch"], h["seq"], h["hash"]) for h in held], till.name
        for _, _, _, cid, earned, redeemed in local:
            if cid:
                expected[cid] += earned - redeemed
        db = open_store(till.state / "agent.db")
        try:
            assert journal.verify(db).ok
        finally:
            db.close()
    assert total >= receipts
    for cid in customers:
        bal = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
        assert bal["available"] + bal["pending"] == expected[cid], cid

    async def repriced() -> bool | None:
        return True if (await store.office("GET", "/api/v1/repricing"))["behind"] == 0 else None

    await wait_for(repriced, "the central to re-price every sale", timeout=60)
    # Each member's sale re-priced once: not skipped, not twice by two processes.
    members_sales = sum(1 for t in tills for e in local_entries(t) if e[3])
    progress = await store.office("GET", "/api/v1/repricing")
    assert (progress["checked"], progress["mismatches"]) == (members_sales, 0), progress
    alerts = (await store.office("GET", "/api/v1/alerts"))["alerts"]
    assert not [a for a in alerts if a["kind"] in ("security", "repricing-mismatch")], alerts


pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]
