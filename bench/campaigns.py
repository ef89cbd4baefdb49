"""Campaign listing benchmark: a page of 50 under each single filter, at 10,000 campaigns.

    python -m bench.campaigns --json
    python -m bench.campaigns --json --database postgresql://postgres@127.0.0.1:5432/postgres

`--campaigns` campaigns (default 10,000; bench.rules' mix, with names, stores, regions and
channels added) are imported as PUT /api/v1/ruleset imports a whole programme
(central.rulesets.publish, which fills the campaign table); then a fifth are set paused,
a tenth drafts, a tenth ended, a fifth scheduled for later, as edits leave them.

list_p95_ms: per filter, the 95th percentile of `--queries` (default 50) listings of a page
of 50 as GET /api/v1/campaigns makes it (central.campaigns.listing and each campaign's
JSON form), with a random value of the filter,
half of them from a random cursor. Goal: at most 100 ms each.
import_s: the import of the whole programme; edit_publish_s: one live campaign's edit and
the rule-set version it publishes (central.campaign_publish.edit); ruleset_bytes and
delta_bytes: what a till pulls of that version whole, and as what changed since the one
before (protocol.ruleset_delta).
The figures are also written to bench/results/campaigns.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.rules import ruleset_doc
from bench.scratch_database import scratch_database
from central import campaign_publish, campaigns, db, rulesets
from central.campaigns import Filters
from central.clock import iso

RESULTS = Path(__file__).parent / "results" / "campaigns.json"
WORDS = ("лето", "зима", "Ёлка", "sale", "sports", "coffee", "kids", "black friday", "home")
STORES = 50
REGIONS = 5
PAGE = 50


def _doc(n: int, rng: random.Random) -> dict[str, Any]:
    doc = ruleset_doc(n)
    doc["stores"] = {f"store{i}": {"region": f"r{i % REGIONS}"} for i in range(STORES)}
    for c in doc["campaigns"]:
        c["name"] = f"{rng.choice(WORDS).title()} {c['id']}"
        when = c.setdefault("when", {})
        roll = rng.random()
        if roll < 0.1:
            when["stores"] = sorted({f"store{rng.randrange(STORES)}" for _ in range(3)})
        elif roll < 0.15:
            when["regions"] = [f"r{rng.randrange(REGIONS)}"]
        if rng.random() < 0.2:
            when["channels"] = rng.sample(("till", "web", "app"), rng.randrange(1, 3))
        # valid now, so a fifth can be scheduled for later
        when["from"], when["to"] = "2026-01-01T00:00:00+03:00", "2027-01-01T00:00:00+03:00"
    return doc


def _spread(conn: db.Connection, rng: random.Random, now: datetime) -> None:
    """Statuses and dates as a year of edits leaves them (table rows, no publishing)."""
    with db.transaction(conn):
        for c in campaigns.live(conn):
            if c.id == "base":
                continue
            roll = rng.random()
            if roll < 0.2:
                campaigns.update(conn, c, "bench", now, status=campaigns.PAUSED)
            elif roll < 0.3:
                campaigns.update(conn, c, "bench", now, status=campaigns.DRAFT)
            elif roll < 0.4:
                campaigns.update(conn, c, "bench", now, status=campaigns.ENDED)
            elif roll < 0.6:
                later = now + timedelta(days=rng.randrange(1, 60))
                campaigns.update(conn, c, "bench", now, starts_at=iso(later),
                                 ends_at=iso(later + timedelta(days=30)))


def _filters(rng: random.Random, now: datetime) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "none": lambda: {},
        "status": lambda: {"status": rng.choice(campaigns.STATUS_FILTERS)},
        "kind": lambda: {"kind": rng.choice(("percent", "discount", "per_receipt",
                                             "multiplier", "per_unit"))},
        "store": lambda: {"store": f"store{rng.randrange(STORES)}"},
        "channel": lambda: {"channel": rng.choice(("till", "web", "app"))},
        "text": lambda: {"text": rng.choice(WORDS)[:4]},
        "active_at": lambda: {"active_at": now + timedelta(days=rng.randrange(-30, 90))},
    }


def _list(conn: db.Connection, now: datetime, given: dict[str, Any],
          cursor: str | None) -> int:
    """What GET /api/v1/campaigns does, without HTTP: filters, page, JSON."""
    rows, _ = campaigns.listing(conn, Filters(**given), now, cursor=cursor, limit=PAGE)
    return len(json.dumps([c.to_dict(now) for c in rows]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    now = datetime(2026, 6, 1, 9, tzinfo=UTC)
    with scratch_database(args.database) as target:
        conn = db.connect(target)
        try:
            rulesets.ensure_default(conn, now)
            doc = _doc(args.campaigns, rng)
            t = time.perf_counter()
            rulesets.publish(conn, doc, "bench", now)
            import_s = time.perf_counter() - t
            _spread(conn, rng, now)
            ids = [r[0] for r in conn.execute("SELECT id FROM campaigns ORDER BY id")]
            p95: dict[str, float] = {}
            worst: dict[str, float] = {}
            for name, make in _filters(rng, now).items():
                timings = []
                for q in range(args.queries):
                    cursor = rng.choice(ids) if q % 2 else None
                    given = make()
                    t = time.perf_counter()
                    _list(conn, now, given, cursor)
                    timings.append(time.perf_counter() - t)
                timings.sort()
                p95[name] = round(1000 * timings[min(len(timings) - 1,
                                                     int(len(timings) * 0.95))], 2)
                worst[name] = round(1000 * timings[-1], 2)
            target_id = next(c.id for c in campaigns.live(conn) if c.id != "base")
            current = campaigns.get(conn, target_id)
            assert current is not None
            t = time.perf_counter()
            with db.transaction(conn):
                campaign_publish.edit(conn, target_id, current.version,
                                      {"priority": current.rule.get("priority", 0) + 1},
                                      "bench", now)
            edit_s = time.perf_counter() - t
            # Another edit: the version before it already has what _spread changed, so
            # what a till holding it receives (the delta, or the whole) is this edit alone.
            current = campaigns.get(conn, target_id)
            assert current is not None
            with db.transaction(conn):
                campaign_publish.edit(conn, target_id, current.version,
                                      {"priority": current.rule.get("priority", 0) + 1},
                                      "bench", now)
            key = Ed25519PrivateKey.generate()
            version = rulesets.current_version(conn) or 0
            signed = rulesets.SignedRuleSets()
            full_bytes = len(signed.get(conn, version, key))
            delta = signed.delta(conn, version - 1, version, key)
        finally:
            conn.close()
    return {
        "database": "postgresql" if args.database else "sqlite",
        "campaigns": args.campaigns, "queries": args.queries, "page": PAGE,
        "list_p95_ms": p95, "list_max_ms": worst,
        "goal_ms": 100, "within_goal": all(v <= 100 for v in p95.values()),
        "import_s": round(import_s, 2), "edit_publish_s": round(edit_s, 2),
        "ruleset_bytes": full_bytes, "delta_bytes": None if delta is None else len(delta),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--campaigns", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database", help="a postgresql:// URL (default: a temporary SQLite file)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    figures = run(args)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures) if args.json else
          "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
