"""Rule-set pulls: "not modified" for a version the till holds, signed once per version,
compiled off the event loop, and a version taking effect at its activation time, offline."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import protocol.rules
from agent import rules_cache
from agent.rules_cache import RulesCache
from bench.rules import ruleset_doc
from central import deliveries, rulesets
from protocol.rules import compiler, default_ruleset_doc
from tests.sync_fixtures import LocalTill, enrol, live_central  # noqa: F401


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def doc_with_rate(percent: int) -> dict:
    doc = default_ruleset_doc()
    doc["campaigns"][0]["effect"]["percent"] = percent
    return doc


async def test_an_unchanged_rule_set_is_not_sent_again_nor_signed_again(
        live_central, tmp_path: Path, monkeypatch):  # noqa: F811
    signed = []
    real = rulesets.encode_ruleset
    monkeypatch.setattr(rulesets, "encode_ruleset",
                        lambda key, rs: signed.append(rs.version) or real(key, rs))
    till = LocalTill(await enrol(live_central), tmp_path / "till.db")
    other = LocalTill(await enrol(live_central), tmp_path / "other.db")
    try:
        sent = []
        real_request = till.client.request

        async def request(method, path, *a, **kw):
            data, ctype = await real_request(method, path, *a, **kw)
            sent.append((path, len(data)))
            return data, ctype

        till.client.request = request  # type: ignore[method-assign]
        assert await till.sync.pull_ruleset() == 1
        assert await till.sync.pull_ruleset() == 1
        assert await other.sync.pull_ruleset() == 1
        # The first pull carried the rule set; the second asked with the version it holds
        # and got nothing back; another till's pull of the same version signed nothing.
        assert sent[0][0] == "/sync/v1/ruleset?have=0" and sent[0][1] > 0
        assert sent[1] == ("/sync/v1/ruleset?have=1&delta=1", 0)
        assert signed == [1]
        rulesets.publish(live_central.db, doc_with_rate(3), "olga", datetime.now(UTC))
        assert await till.sync.pull_ruleset() == 2
        assert await other.sync.pull_ruleset() == 2
        assert signed == [1, 2]
    finally:
        for t in (till, other):
            await t.close()


async def test_have_must_be_a_version(live_central, tmp_path: Path):  # noqa: F811
    till = LocalTill(await enrol(live_central), tmp_path / "till.db")
    try:
        with pytest.raises(Exception, match="'have' must be an integer"):
            await till.client.request("GET", "/sync/v1/ruleset?have=x")
    finally:
        await till.close()


async def test_compiling_a_received_rule_set_happens_off_the_event_loop(
        live_central, tmp_path: Path, monkeypatch):  # noqa: F811
    threads = []
    real = rules_cache.compile_encoded

    def compile_(*args):
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(rules_cache, "compile_encoded", compile_)
    till = LocalTill(await enrol(live_central), tmp_path / "till.db")
    try:
        assert await till.sync.pull_ruleset() == 1
        assert threads and threading.main_thread() not in threads
        # Swapped in with the store: the till prices with it without compiling again.
        threads.clear()
        version, rs = till.sync.rules.get()
        assert version == 1 and threads == []
        assert isinstance(rs, protocol.rules.RuleSet)
    finally:
        await till.close()


async def test_a_new_version_compiles_only_the_campaigns_it_changed(
        live_central, tmp_path: Path, monkeypatch):  # noqa: F811
    compiled: list[str] = []
    real = compiler._campaign
    monkeypatch.setattr(compiler, "_campaign",
                        lambda r, c, *a: compiled.append(c["id"]) or real(r, c, *a))
    doc = ruleset_doc(40, seed=8)
    rulesets.publish(live_central.db, doc, "olga", datetime.now(UTC))
    till = LocalTill(await enrol(live_central), tmp_path / "till.db")
    try:
        compiled.clear()  # the central's own compile, publishing
        first = await till.sync.pull_ruleset()
        assert len(compiled) == len(doc["campaigns"])
        doc["campaigns"][7]["priority"] = 999_999
        rulesets.publish(live_central.db, doc, "olga", datetime.now(UTC))
        compiled.clear()  # (the central's)
        assert await till.sync.pull_ruleset() == first + 1
        assert compiled == [doc["campaigns"][7]["id"]]
        version, rs = till.sync.rules.get()
        assert version == first + 1
        assert rs.campaigns == protocol.rules.compile_ruleset(doc).campaigns
        # After a restart the stored version is what the next one is compared with.
        again = RulesCache(till.db)
        await again.warm()
        till.sync.rules = again
        doc["campaigns"][9]["stop"] = True
        rulesets.publish(live_central.db, doc, "olga", datetime.now(UTC))
        compiled.clear()  # (the central's)
        assert await till.sync.pull_ruleset() == first + 2
        assert compiled == [doc["campaigns"][9]["id"]]
    finally:
        await till.close()


async def test_a_rule_set_takes_effect_at_its_activation_time_at_a_till_gone_offline(
        live_central, tmp_path: Path):  # noqa: F811
    now = datetime.now(UTC)
    clock = Clock(now)
    till = LocalTill(await enrol(live_central), tmp_path / "till.db", clock=clock)
    try:
        assert await till.sync.pull_ruleset() == 1
        at = now + timedelta(hours=2)
        resp = await live_central.put("/api/v1/ruleset", headers=live_central.admin, json={
            "doc": doc_with_rate(7), "actor": "olga", "activates_at": at.isoformat()})
        assert resp.status == 201, await resp.text()
        assert await till.sync.pull_ruleset() == 2
    finally:
        await till.client.close()
    await live_central.close()  # the till is offline from here on
    rules = till.sync.rules
    assert rules.version() == 2  # held, ahead of its time
    assert rules.get(now=at - timedelta(seconds=1))[0] == 1
    assert rules.next_activation(at - timedelta(seconds=1))["version"] == 2
    version, rs = rules.get(now=at)
    assert version == 2 and rs.campaigns[0].effect.bp == 700
    # After a restart too: the store keeps the activation time.
    again = RulesCache(till.db, clock)
    assert again.get(now=at - timedelta(seconds=1))[0] == 1
    assert again.get(now=at)[0] == 2
    till.db.close()


async def test_valid_from_in_the_document_is_honoured(live_central, tmp_path: Path):  # noqa: F811
    clock = Clock(datetime.now(UTC))
    till = LocalTill(await enrol(live_central), tmp_path / "till.db", clock=clock)
    valid_from = (clock.now + timedelta(days=1)).replace(microsecond=0)
    try:
        assert await till.sync.pull_ruleset() == 1
        doc = {**doc_with_rate(5), "valid_from": valid_from.isoformat()}
        rulesets.publish(live_central.db, doc, "olga", clock.now)
        assert await till.sync.pull_ruleset() == 2
        rules = till.sync.rules
        assert rules.get(now=valid_from - timedelta(seconds=1))[0] == 1
        assert rules.get(now=valid_from)[0] == 2
    finally:
        await till.close()


def test_repricing_accepts_the_older_version_until_the_newer_one_is_due(central, clock):
    conn = central.db
    t0 = clock() + timedelta(days=1)
    due = t0 + timedelta(hours=6)
    rulesets.publish(conn, doc_with_rate(3), "olga", t0, activates_at=due)
    conn.execute("INSERT INTO till_rulesets VALUES ('till_a', 1, ?)", (t0.isoformat(),))
    conn.execute("INSERT INTO till_rulesets VALUES ('till_a', 2, ?)",
                 ((t0 + timedelta(minutes=1)).isoformat(),))
    assert deliveries.ruleset_refusal(conn, "till_a", 1, due - timedelta(minutes=10)) is None
    assert "newer one was in effect" in deliveries.ruleset_refusal(
        conn, "till_a", 1, due + timedelta(minutes=10))
    assert "before it took effect" in deliveries.ruleset_refusal(
        conn, "till_a", 2, due - timedelta(minutes=10))
    assert deliveries.ruleset_refusal(conn, "till_a", 2, due) is None


async def test_activation_time_must_carry_an_offset(central):
    resp = await central.put("/api/v1/ruleset", headers=central.admin, json={
        "doc": doc_with_rate(3), "actor": "olga", "activates_at": "2026-03-01T09:00:00"})
    assert resp.status == 400 and "'activates_at'" in (await resp.json())["error"]
    resp = await central.put("/api/v1/ruleset", headers=central.admin, json={
        "doc": doc_with_rate(3), "actor": "olga", "activates_at": "tomorrow"})
    assert resp.status == 400 and "'activates_at'" in (await resp.json())["error"]
