"""The POS API of a running agent, quiet and while rules and customers arrive.

    python -m bench.pos --json
    python -m bench.pos --members 20000 --campaigns 1000 --rounds 200   # a quick run

Real processes: a central, a till's simulated devices and its agent, as the store harness
starts them. The central holds `--campaigns` live campaigns and `--members` members (written
straight into its database: through the API that would take hours), each with a card and a
lot. The agent is enrolled afresh, so it receives every member as a new till would.

Printed:
- `initial_customer_sync_s`: from the agent's start until it holds every member;
- `pos_api_up_s`: from the agent's start until its POS API answers;
- `price_during_initial_sync_p99_ms`: pricing while that sync runs;
- `price_p99_ms`: a 30-line member receipt, POST /pos/v1/price, quiet;
- `price_p99_during_pull_ms`: the same while the central publishes a new rule set (one
  campaign changed) and changes `--changed` members every `--every` seconds, and the agent
  pulls every second;
- `longest_stall_ms`: the longest the agent's event loop was kept from running during the
  pulls (the agent measures it itself, `status.loop`);
- `identify_p99_ms`: POST /pos/v1/identify of a card presented at the reader;
- `agent_rss_mb`: the agent's resident memory at the end (`agent_peak_rss_mb` its peak);
- `agent_cpu_s_to_synced`, `agent_cpu_s_during_pull`: the agent's CPU seconds from its start
  until it held every member, and during the pulls: on a shared machine, the figure to
  compare two versions by.

Latencies are wall-clock as the POS sees them, over a kept-alive HTTP connection on the
loopback, so they include the client's and the HTTP stack's share on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.rules import SKUS, _category, ruleset_doc
from central import card_keys
from tillpoint.demo import card_number
from tillpoint.store_harness import StoreHarness, Till


def live_doc(campaigns: int, seed: int) -> dict[str, Any]:
    """bench.rules' chain mix, every campaign live around now."""
    doc = ruleset_doc(campaigns, seed)
    now = datetime.now(UTC)
    for c in doc["campaigns"]:
        when = c.get("when")
        if when and "from" in when:
            when["from"] = (now - timedelta(days=365)).isoformat(timespec="seconds")
            when["to"] = (now + timedelta(days=365)).isoformat(timespec="seconds")
    return doc


def receipt_lines(seed: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    lines = []
    for i in range(30):
        unit = rng.randrange(5_000, 300_000)
        lines.append({"sku": f"sku{rng.randrange(SKUS)}", "name": f"item {i}",
                      "qty": rng.choice([1000, 2000, 1500, 3000]), "price": unit,
                      "category": _category(rng), "brand": f"brand{rng.randrange(200)}",
                      "vat": "22"})
    return lines


def add_members(data: Path, members: int) -> None:
    """`members` customers with one card and one live lot each, as the central's API would
    leave them, written in bulk."""
    now = datetime.now(UTC)
    ring = card_keys.load(data, None, now)
    at = now.isoformat(timespec="seconds")
    expires = (now + timedelta(days=300)).isoformat(timespec="seconds")
    conn = sqlite3.connect(data / "central.db", timeout=60)
    try:
        first = conn.execute("SELECT value FROM counters WHERE name = 'customer_change'"
                             ).fetchone()[0] + 1
        for start in range(0, members, 50_000):
            rows = range(start, min(members, start + 50_000))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO customers (id, created_at, change_seq, segments, tier)"
                " VALUES (?, ?, ?, ?, ?)",
                [(f"cus_{i:012d}", at, first + i, json.dumps([f"seg{i % 50}"]), None)
                 for i in rows])
            conn.executemany(
                "INSERT INTO cards (token, customer_id, last4, created_at, key_version)"
                " VALUES (?, ?, ?, ?, ?)",
                [(ring.token(card_number(i + 1))[1], f"cus_{i:012d}",
                  card_number(i + 1)[-4:], at, ring.token(card_number(i + 1))[0])
                 for i in rows])
            conn.executemany(
                "INSERT INTO lots (customer_id, points, remaining, activates_at, expires_at,"
                " status) VALUES (?, 500, 500, ?, ?, 'active')",
                [(f"cus_{i:012d}", at, expires) for i in rows])
            conn.execute("COMMIT")
        conn.execute("UPDATE counters SET value = ? WHERE name = 'customer_change'",
                     (first + members,))
        conn.commit()
    finally:
        conn.close()


def change_members(data: Path, members: int, changed: int, rng: random.Random) -> None:
    """`changed` members get new change marks, as a balance change would give them."""
    conn = sqlite3.connect(data / "central.db", timeout=60)
    try:
        conn.execute("BEGIN IMMEDIATE")
        last = conn.execute("SELECT value FROM counters WHERE name = 'customer_change'"
                            ).fetchone()[0]
        ids = rng.sample(range(members), min(changed, members))
        conn.executemany("UPDATE customers SET change_seq = ? WHERE id = ?",
                         [(last + 1 + k, f"cus_{i:012d}") for k, i in enumerate(ids)])
        conn.executemany("UPDATE lots SET remaining = remaining + 1 WHERE customer_id = ?",
                         [(f"cus_{i:012d}",) for i in ids])
        conn.execute("UPDATE counters SET value = ? WHERE name = 'customer_change'",
                     (last + len(ids),))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _pct(values: list[float], p: int) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, len(s) * p // 100)], 2)


def _cpu_s(pid: int) -> float:
    """The process's CPU time so far (user and system): the work, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            round(int(fields["VmHWM"].split()[0]) / 1024, 1))


class Pos:
    """The POS software: one kept-alive connection to the agent."""

    def __init__(self, till: Till) -> None:
        self.till = till
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=120))

    async def close(self) -> None:
        await self.session.close()

    async def timed(self, method: str, path: str, body: Any = None,
                    ok: tuple[int, ...] = (200,)) -> tuple[float, Any]:
        t0 = time.perf_counter()
        async with self.session.request(method, self.till.pos_url + path, json=body,
                                        headers=self.till.pos_headers) as resp:
            data = await resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status not in ok:
                raise RuntimeError(f"{path}: {resp.status} {data[:200]!r}")
        return elapsed, json.loads(data)

    async def status(self) -> dict[str, Any]:
        return (await self.timed("GET", "/pos/v1/status"))[1]


async def identify_at_reader(store: StoreHarness, till: Till, pos: Pos, number: str) -> float:
    """A card presented at the reader, then POST /pos/v1/identify as the POS sends it: the
    time of the request that found the customer (typed numbers are limited per till)."""
    await store.control(till, "POST", "/reader/present", {"barcode": number})
    deadline = time.perf_counter() + 15
    while time.perf_counter() < deadline:
        ms, body = await pos.timed("POST", "/pos/v1/identify", {}, ok=(200, 404))
        if "customer_id" in body:
            return ms
        if "no card presented" not in body.get("error", ""):
            raise RuntimeError(f"identify: {body}")
        await asyncio.sleep(0.002)  # the read is on its way from the reader
    raise RuntimeError("the presented card never reached the agent")


async def run(members: int, campaigns: int, rounds: int, pull_seconds: float, every: float,
              changed: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    lines = receipt_lines()
    with tempfile.TemporaryDirectory(prefix="bench-pos-") as tmp:
        async with StoreHarness(Path(tmp)) as store:
            await store.start_central()
            data = Path(tmp) / "central"
            await store.office("PUT", "/api/v1/ruleset",
                               {"doc": live_doc(campaigns, seed), "actor": "bench"}, ok=(201,))
            t0 = time.perf_counter()
            add_members(data, members)
            populate_s = time.perf_counter() - t0

            started = time.perf_counter()
            till = await store.add_till("till-1")  # returns once its POS API answers
            api_up_s = time.perf_counter() - started
            pid = store.agent_process(till).pid
            pos = Pos(till)
            try:
                during_sync: list[float] = []
                member = "cus_000000000000"

                async def synced() -> bool:
                    s = (await pos.status())["sync"]["customers"]
                    return bool(s.get("caught_up"))

                while not await synced():
                    try:
                        ms, _ = await pos.timed("POST", "/pos/v1/price",
                                                {"lines": lines, "customer_id": member},
                                                ok=(200, 404))
                        during_sync.append(ms)
                    except RuntimeError:
                        pass
                    await asyncio.sleep(0.05)
                    if time.perf_counter() - started > 1800:
                        raise RuntimeError("initial customer sync took over 30 minutes")
                sync_cpu_s = _cpu_s(pid)
                sync_s = (await pos.status())["sync"]["customers"]["initial_sync_s"]
                held = (await pos.status())["sync"]["customers"]["received"]

                quiet = []
                for _i in range(rounds):
                    ms, _ = await pos.timed("POST", "/pos/v1/price", {
                        "lines": lines, "customer_id": f"cus_{rng.randrange(members):012d}"})
                    quiet.append(ms)
                identify = []
                for _i in range(rounds):
                    identify.append(await identify_at_reader(
                        store, till, pos, card_number(rng.randrange(members) + 1)))

                # Pulls: a new rule set and changed members every `every` seconds.
                stop = asyncio.Event()
                published = 0

                # Each new version changes one campaign, as head office's edits do. (Made
                # afresh each time, every campaign's window would move by the seconds
                # between versions: a version of 10,000 changed campaigns.)
                doc = live_doc(campaigns, seed)

                async def central_changes() -> None:
                    nonlocal published
                    while not stop.is_set():
                        doc["campaigns"][1]["priority"] = 1 + published % 900
                        await store.office("PUT", "/api/v1/ruleset",
                                           {"doc": doc, "actor": "bench"}, ok=(201,))
                        await asyncio.to_thread(change_members, data, members, changed, rng)
                        published += 1
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), every)

                window_start = time.monotonic()
                cpu_before_pulls = _cpu_s(pid)
                changes = asyncio.create_task(central_changes())
                during = []
                deadline = time.perf_counter() + pull_seconds
                while time.perf_counter() < deadline:
                    ms, _ = await pos.timed("POST", "/pos/v1/price", {
                        "lines": lines, "customer_id": f"cus_{rng.randrange(members):012d}"})
                    during.append(ms)
                stop.set()
                await changes
                pull_cpu_s = _cpu_s(pid) - cpu_before_pulls
                status = await pos.status()
                stalls = [ms for at, ms in status["loop"]["stalls"] if at >= window_start]
                rss, peak = _rss_mb(pid)
            finally:
                await pos.close()
    return {
        "benchmark": "pos", "members": members, "campaigns": campaigns, "receipt_lines": 30,
        "price_p99_ms": _pct(quiet, 99), "price_p50_ms": _pct(quiet, 50),
        "price_p99_during_pull_ms": _pct(during, 99),
        "price_p50_during_pull_ms": _pct(during, 50),
        "longest_stall_ms": max(stalls, default=0.0),
        "initial_customer_sync_s": sync_s, "members_held": held,
        # The agent's CPU seconds (start and first sync; the pulls): what a change costs,
        # whatever else the machine was running.
        "agent_cpu_s_to_synced": round(sync_cpu_s, 1),
        "agent_cpu_s_during_pull": round(pull_cpu_s, 1),
        "pos_api_up_s": round(api_up_s, 2),
        "price_during_initial_sync_p99_ms": _pct(during_sync, 99),
        "identify_p99_ms": _pct(identify, 99), "identify_p50_ms": _pct(identify, 50),
        "agent_rss_mb": rss, "agent_peak_rss_mb": peak,
        "rule_sets_published_during_pull": published, "changed_per_publish": changed,
        "rounds": rounds, "populate_s": round(populate_s, 1),
        # Others' processes share the cores: stalls and tails grow with the load.
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--members", type=int, default=1_000_000, help="members at the central")
    ap.add_argument("--campaigns", type=int, default=10_000, help="live campaigns")
    ap.add_argument("--rounds", type=int, default=1000, help="timed requests per measure")
    ap.add_argument("--pull-seconds", type=float, default=30.0,
                    help="how long to price while rules and customers arrive")
    ap.add_argument("--every", type=float, default=3.0,
                    help="seconds between the central's changes during the pulls")
    ap.add_argument("--changed", type=int, default=1000, help="members changed each time")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = asyncio.run(run(args.members, args.campaigns, args.rounds, args.pull_seconds,
                          args.every, args.changed, args.seed))
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
