"""Rules-engine benchmark: price a 30-line receipt against 100, 1,000 and 10,000 campaigns.

    python -m bench.rules --json

The rule sets are generated with a fixed seed and the mix a large chain runs: most campaigns
are SKU promotions and personal offers, then category, brand and segment campaigns, a few
always-on ones; effects of every kind; exclusivity groups; all campaigns live now. The
customer is a member with segments, a tier and some activated offers. One core.

p50_ms/p99_ms are the pricing thread's CPU time (time.thread_time), so that other processes
on a busy machine do not pass for engine time; wall_p50_ms/wall_p99_ms are wall-clock.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

from protocol.rules import Customer, Receipt, ReceiptLine, compile_ruleset, price
from protocol.rules.defaults import default_ruleset_doc

NOW = datetime(2025, 6, 11, 18, 30, tzinfo=UTC)
SKUS = 20_000
TOPS = 30


def _category(rng: random.Random) -> str:
    return f"c{rng.randrange(TOPS)}/m{rng.randrange(10)}/l{rng.randrange(5)}"


def _effect(rng: random.Random, i: int) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.35:
        return {"type": "percent", "percent": rng.choice([1, 2, 3, "2.5", 5, 10])}
    if roll < 0.55:
        return {"type": "multiplier", "factor": rng.choice([2, 3, "1.5"]), "of": "base"}
    if roll < 0.65:
        return {"type": "per_amount", "points": rng.choice([5, 10, 50]), "per": 10_000}
    if roll < 0.72:
        return {"type": "per_unit", "points": rng.choice([1, 5, 10])}
    if roll < 0.90:
        return {"type": "discount", "percent": rng.choice([5, 10, 15])}
    return {"type": "per_receipt", "points": rng.choice([50, 100, 500])}


def ruleset_doc(n: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    doc = default_ruleset_doc()
    doc["tiers"] = {"window": "calendar_month", "levels": [
        {"id": "base", "min_spend": 0}, {"id": "silver", "min_spend": 500_000},
        {"id": "gold", "min_spend": 2_000_000}]}
    doc["campaigns"][0]["effect"]["by_tier"] = {"silver": 7, "gold": 10}
    campaigns = doc["campaigns"]
    for i in range(n - 1):
        c: dict[str, Any] = {"id": f"c{i:05d}", "priority": rng.randrange(1, 1000),
                             "effect": _effect(rng, i)}
        roll = rng.random()
        if roll < 0.55:
            c["lines"] = {"skus": [f"sku{rng.randrange(SKUS)}" for _ in range(rng.randrange(1, 4))]}
        elif roll < 0.80:
            c["when"] = {"offers": [f"offer{rng.randrange(n)}"]}
        elif roll < 0.90:
            c["lines"] = {"categories": [_category(rng)]}
        elif roll < 0.95:
            c["lines"] = {"brands": [f"brand{rng.randrange(n // 5 + 1)}"]}
        elif roll < 0.99:
            c["when"] = {"segments": [f"seg{rng.randrange(n // 10 + 1)}"]}
        else:
            c["when"] = {"stores": [f"store{rng.randrange(50)}"]}
        if c["effect"]["type"] == "per_receipt":
            c.setdefault("when", {})["basket"] = {"min_amount": rng.choice([100_000, 500_000])}
        if rng.random() < 0.2:
            c["group"] = f"g{rng.randrange(n // 20 + 1)}"
        if rng.random() < 0.05:
            c["stop"] = True
        needs_member = "offers" in c.get("when", {}) or "segments" in c.get("when", {})
        if c["effect"]["type"] == "discount" and not needs_member and rng.random() < 0.5:
            c["members_only"] = False
        c.setdefault("when", {})["from"] = "2025-01-01T00:00:00+03:00"
        c["when"]["to"] = "2026-01-01T00:00:00+03:00"
        campaigns.append(c)
    return doc


def receipt(seed: int = 2) -> Receipt:
    rng = random.Random(seed)
    lines = []
    for _ in range(30):
        qty = rng.choice([1000, 2000, 1500, 3000])
        unit_price = rng.randrange(5_000, 300_000)
        lines.append(ReceiptLine(
            sku=f"sku{rng.randrange(SKUS)}", qty=qty, price=unit_price,
            amount=unit_price * qty // 1000, category=_category(rng),
            brand=f"brand{rng.randrange(200)}",
        ))
    lines[3] = ReceiptLine("cig", 1000, 25_000, 25_000, "tobacco")
    return Receipt(tuple(lines), store="store7", region="msk")


def customer(n: int) -> Customer:
    return Customer(
        id="bench", balance=100_000, tier="silver",
        segments=frozenset({"seg1", "seg2", f"seg{n // 20}"}), purchase_count=17,
        qualifying_spend=700_000,
        activated_offers=frozenset(f"offer{k}" for k in range(0, n, max(1, n // 8))),
    )


def _pct(values: list[float], p: int) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, len(s) * p // 100)], 3)


def measure(n: int, rounds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    rs = compile_ruleset(ruleset_doc(n))
    compile_ms = (time.perf_counter() - t0) * 1000
    # What the agent does after loading a rule set: move the long-lived objects out of the
    # collector's sight, so a full collection does not walk 10,000 campaigns mid-receipt.
    gc.collect()
    gc.freeze()
    rec, cust = receipt(), customer(n)
    for _ in range(20):
        p = price(rs, rec, cust, NOW)
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.thread_time(), time.perf_counter()
        price(rs, rec, cust, NOW)
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    gc.unfreeze()
    return {
        "campaigns": n, "p50_ms": _pct(cpu, 50), "p99_ms": _pct(cpu, 99),
        "wall_p50_ms": _pct(wall, 50), "wall_p99_ms": _pct(wall, 99), "rounds": rounds,
        "compile_ms": round(compile_ms, 1),
        "applied": len(p.explanation.applied), "not_applied": len(p.explanation.not_applied),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--rounds", type=int, default=1000, help="timed runs per size")
    args = ap.parse_args()
    results = [measure(n, args.rounds) for n in (100, 1_000, 10_000)]
    out = {"benchmark": "rules.price", "receipt_lines": 30, "results": results,
           "ratio_10000_to_100_p99": round(results[2]["p99_ms"] / results[0]["p99_ms"], 2)}
    if args.json:
        print(json.dumps(out))
    else:
        for r in results:
            print(f"{r['campaigns']:>6} campaigns: p50 {r['p50_ms']:.3f} ms,"
                  f" p99 {r['p99_ms']:.3f} ms"
                  f" ({r['applied']} applied, {r['not_applied']} near misses)")


if __name__ == "__main__":
    main()
