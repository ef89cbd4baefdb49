"""GET /api/v1/campaigns: filters on indexed columns and cursor paging, against a reference
filter written apart from the SQL (a property test over random campaigns)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import campaigns, db, rulesets
from central.campaigns import Filters
from central.clock import iso
from protocol.rules import default_ruleset_doc
from tests.databases import fresh_database

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KINDS = ("percent", "discount", "per_receipt")
STORES = ("s1", "s2", "s3")
CHANNELS = ("till", "web", "app")
REGIONS = {"s1": "north", "s2": "south"}  # s3: the rule set names no region for it
WORDS = ("Ёлка", "лето", "Sports", "SALE_50%", "зима")


def rule_of(cid: str, kind: str, stores: list[str], regions: list[str], channels: list[str],
            word: str) -> dict:
    effect = {"percent": {"type": "percent", "percent": 5},
              "discount": {"type": "discount", "percent": 10},
              "per_receipt": {"type": "per_receipt", "points": 50}}[kind]
    when = {k: v for k, v in (("stores", stores), ("regions", regions),
                              ("channels", channels)) if v}
    rule = {"id": cid, "name": f"{word} {cid}", "effect": effect}
    if when:
        rule["when"] = when
    return rule


campaign = st.fixed_dictionaries({
    "kind": st.sampled_from(KINDS),
    "status": st.sampled_from(campaigns.STATUSES),
    "stores": st.lists(st.sampled_from(STORES), max_size=2, unique=True),
    "regions": st.lists(st.sampled_from(("north", "south")), max_size=1),
    "channels": st.lists(st.sampled_from(CHANNELS), max_size=2, unique=True),
    "word": st.sampled_from(WORDS),
    "starts": st.one_of(st.none(), st.integers(-5, 5)),
    "days": st.one_of(st.none(), st.integers(1, 5)),
})
a_filter = st.one_of(
    st.builds(Filters, status=st.sampled_from(campaigns.STATUS_FILTERS)),
    st.builds(Filters, kind=st.sampled_from(KINDS)),
    st.builds(Filters, store=st.sampled_from(STORES)),
    st.builds(Filters, channel=st.sampled_from(CHANNELS)),
    st.builds(Filters, text=st.sampled_from(("елка", "ЛЕТО", "sports", "_50%", "c0", "x"))),
    st.builds(Filters, active_at=st.integers(-6, 12).map(lambda d: NOW + timedelta(days=d))),
)


def expected(c: dict, f: Filters) -> bool:
    """The reference: what each filter means, from the campaign as generated."""
    starts = None if c["starts"] is None else NOW + timedelta(days=c["starts"])
    ends = None if c["days"] is None else (starts or NOW) + timedelta(days=c["days"])

    def running(at: datetime) -> bool:
        return c["status"] == "live" and (starts is None or starts <= at) and (
            ends is None or at < ends)

    if f.status == "scheduled":
        return c["status"] == "live" and starts is not None and starts > NOW
    if f.status == "active":
        return running(NOW)
    if f.status is not None:
        return c["status"] == f.status
    if f.kind is not None:
        return c["kind"] == f.kind
    if f.store is not None:
        return (not c["stores"] and not c["regions"]) or f.store in c["stores"] or (
            REGIONS.get(f.store) in c["regions"])
    if f.channel is not None:
        return not c["channels"] or f.channel in c["channels"]
    if f.text is not None:
        folded = campaigns.fold(f.text)
        return folded in campaigns.fold(f"{c['id']}\n{c['word']} {c['id']}")
    if f.active_at is not None:
        return running(f.active_at)
    return True


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cs=st.lists(campaign, min_size=1, max_size=25), filters=st.lists(a_filter, min_size=3,
                                                                         max_size=6),
       limit=st.integers(1, 7))
def test_every_filter_and_every_page_match_the_reference(tmp_path: Path, cs, filters, limit):
    with fresh_database("sqlite", tmp_path) as target:
        _check(target, cs, filters, limit)


def test_the_same_on_postgresql(tmp_path: Path):
    cs = [{"kind": KINDS[i % 3], "status": campaigns.STATUSES[i % 4],
           "stores": list(STORES[: i % 3]), "regions": ["north"] if i % 5 == 0 else [],
           "channels": list(CHANNELS[i % 3: i % 3 + i % 2]), "word": WORDS[i % 5],
           "starts": (i % 7) - 3 if i % 4 else None, "days": i % 3 or None}
          for i in range(40)]
    filters = [Filters(status=s) for s in campaigns.STATUS_FILTERS] + [
        Filters(kind="discount"), Filters(store="s1"), Filters(store="s3"),
        Filters(channel="web"), Filters(text="ЕЛКА"), Filters(text="%"),
        Filters(active_at=NOW + timedelta(days=2))]
    with fresh_database("postgresql", tmp_path) as target:
        _check(target, cs, filters, 6)


def _check(target: Path | str, cs: list[dict], filters: list[Filters], limit: int) -> None:
    conn = db.connect(target)
    try:
        doc = default_ruleset_doc()
        doc["stores"] = {s: {"region": r} for s, r in REGIONS.items()}
        doc["campaigns"] = []
        rulesets.publish(conn, doc, "test", NOW)
        for i, c in enumerate(cs):
            c["id"] = f"c{i:02d}"
            starts = None if c["starts"] is None else NOW + timedelta(days=c["starts"])
            ends = None if c["days"] is None else (starts or NOW) + timedelta(days=c["days"])
            campaigns.insert(conn, rule_of(c["id"], c["kind"], c["stores"], c["regions"],
                                           c["channels"], c["word"]), c["status"],
                             starts and iso(starts), ends and iso(ends), "test", NOW)
        for f in filters:
            got, cursor = [], None
            while True:
                page, cursor = campaigns.listing(conn, f, NOW, cursor=cursor, limit=limit)
                assert len(page) <= limit
                got.extend(c.id for c in page)
                if cursor is None:
                    break
            assert got == sorted(c["id"] for c in cs if expected(c, f)), f
    finally:
        conn.close()


async def test_listing_over_http_pages_and_refuses_bad_queries_naming_them(central, clock):
    h = central.admin
    for i in range(7):
        body = {"id": f"w{i}", "name": f"Winter {i}", "effect": {"type": "percent",
                                                                  "percent": 5},
                "when": {"channels": ["web"]} if i % 2 else {}}
        if not body["when"]:
            del body["when"]
        assert (await central.post("/api/v1/campaigns", headers=h, json=body)).status == 201
    got = await (await central.get("/api/v1/campaigns?q=winter&limit=3", headers=h)).json()
    assert [c["id"] for c in got["campaigns"]] == ["w0", "w1", "w2"]
    assert got["next_cursor"] == "w2"
    got = await (await central.get(
        f"/api/v1/campaigns?q=winter&limit=3&cursor={got['next_cursor']}", headers=h)).json()
    assert [c["id"] for c in got["campaigns"]] == ["w3", "w4", "w5"]
    # Those naming no channel apply on every one; those naming web only there.
    got = await (await central.get("/api/v1/campaigns?channel=till&status=draft",
                                   headers=h)).json()
    assert [c["id"] for c in got["campaigns"]] == ["w0", "w2", "w4", "w6"]
    assert got["next_cursor"] is None
    got = await (await central.get("/api/v1/campaigns?status=active", headers=h)).json()
    assert [c["id"] for c in got["campaigns"]] == ["base"]  # the default programme's own
    for query, named in [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"),
                         ("status=running", "status"), ("active_at=yesterday", "active_at"),
                         ("active_at=2026-11-23T10:00:00", "active_at"), ("q=", "q"),
                         ("kind=" + "k" * 101, "kind"), ("store=%00", "store")]:
        resp = await central.get(f"/api/v1/campaigns?{query}", headers=h)
        assert resp.status == 400, query
        assert named in (await resp.json())["error"], query
