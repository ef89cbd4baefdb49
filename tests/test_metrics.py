"""Monitoring: the central and the agent serve Prometheus metrics, each on a listener of its
own, read with prometheus_client's own parser (not ours).

The central counts and times batches where it answers them and reads tills, rule sets and
alerts from its database; the agent reads its journal, outbox, sync state and devices. The
agent's figures are served on the loopback with no POS secret and carry no personal data.
"""

from __future__ import annotations

import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from central import metrics
from central.alerts import raise_alert
from central.clock import utcnow
from central.web_common import METRICS
from tests.sync_fixtures import LocalTill, enrol, live_central
from tillpoint.store_harness import ApiError, StoreHarness

__all__ = ["live_central"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_the_central_counts_batches_and_reads_tills_and_alerts(
        live_central, aiohttp_client, tmp_path):
    ident = await enrol(live_central, store="s9")
    till = LocalTill(ident, tmp_path / "till.db")
    scrape = await aiohttp_client(metrics.make_app(live_central.server.app[METRICS]))
    try:
        for _ in range(3):
            till.sell()
        assert await till.sync.push() == 3
        forged = await live_central.post("/sync/v1/batches", data=b"\x93not a batch",
                                         headers={"Content-Type": "application/msgpack"})
        assert forged.status in (400, 401)
        for _ in range(2):
            raise_alert(live_central.db, utcnow(), "overspend", "test", severity="critical")
        raise_alert(live_central.db, utcnow(), "overspend", "acknowledged below")
        live_central.db.execute("UPDATE alerts SET acked_at = 'x' WHERE message = ?",
                                ("acknowledged below",))
        resp = await scrape.get("/metrics")
        assert resp.status == 200 and resp.content_type == "text/plain"
        got = samples(await resp.text())
    finally:
        await till.close()
    assert got[("tillpoint_central_batches_total", (("outcome", "acked"),))] == 1
    assert got[("tillpoint_central_batches_total", (("outcome", "refused"),))] == 1
    assert got[("tillpoint_central_entries_applied_total", ())] == 3
    assert got[("tillpoint_central_batch_seconds_count", ())] == 2
    assert got[("tillpoint_central_tills", (("state", "active"),))] == 1
    key = (("store", "s9"), ("till_id", ident.till_id))
    assert got[("tillpoint_central_till_acked_seq", key)] == 3
    assert 0 <= got[("tillpoint_central_till_sync_age_seconds", key)] < 60
    assert got[("tillpoint_central_ruleset_version", ())] >= 1
    assert got[("tillpoint_central_ingest_queue_batches", ())] == 0
    assert got[("tillpoint_central_alerts_open",
                (("kind", "overspend"), ("severity", "critical")))] == 2
    assert ("tillpoint_central_alerts_open",
            (("kind", "overspend"), ("severity", "warning"))) not in got  # acknowledged


def test_the_central_tells_how_full_its_database_pool_is(database):
    from prometheus_client import CollectorRegistry, generate_latest

    from central import db

    conn = db.connect(database)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DatabaseCollector(lambda: conn, utcnow, lambda: 0))

    def scrape() -> dict:
        return samples(generate_latest(registry).decode())

    try:
        with db.transaction(conn):  # holds one pooled connection while it is read
            during = scrape()
        after = scrape()
    finally:
        conn.close()
    in_use = ("tillpoint_central_db_pool_connections", (("state", "in_use"),))
    if isinstance(database, str):  # PostgreSQL, through psycopg_pool
        assert during[in_use] == 1 and after[in_use] == 0
        assert after[("tillpoint_central_db_pool_connections", (("state", "max"),))] == 4
        assert after[("tillpoint_central_db_pool_requests_waiting", ())] == 0
        assert ("tillpoint_central_db_pool_wait_seconds_total", ()) in after
    else:  # SQLite has no pool: no figures rather than made-up ones
        assert not any(name.startswith("tillpoint_central_db_pool") for name, _ in after)


async def test_the_agent_serves_metrics_on_the_loopback_without_the_pos_secret(tmp_path):
    async with StoreHarness(tmp_path) as store:
        await store.start_central()
        till = await store.add_till("till-1", agent_args=("--metrics-port", "0"))
        sold = await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [
            {"sku": "1", "name": "Socks", "qty": 1000, "price": 1500, "category": "sports",
             "vat": "22"}]})
        port = json.loads((till.state / "pos-api.json").read_text())["metrics_port"]
        assert isinstance(port, int) and port != int(till.pos_url.rsplit(":", 1)[1])
        async with aiohttp.ClientSession() as http:  # no Authorization: no POS secret
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with http.post(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 405  # read-only
            async with http.get(f"http://127.0.0.1:{port}/pos/v1/status") as resp:
                assert resp.status == 404  # nothing of the POS API on this port
        got = samples(text)
        assert got[("tillpoint_agent_info", (("store", store.store), ("till_id", till.till_id)))]
        assert got[("tillpoint_agent_journal_last_seq", ())] >= 1
        assert got[("tillpoint_agent_device_connected", (("device", "printer"),))] == 1
        assert got[("tillpoint_agent_device_connected", (("device", "reader"),))] == 1
        assert got[("tillpoint_agent_ruleset_version", ())] >= 1
        assert got[("tillpoint_agent_pending_receipts", ())] == 0
        assert ("tillpoint_agent_device_errors_total",
                (("device", "printer"), ("kind", "disconnect"))) in got
        assert sold["receipt_id"] not in text  # no receipt, card or customer in the figures

        # The central gone: entries wait in the outbox and the lag grows.
        store.kill_central()
        await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [
            {"sku": "2", "name": "Hat", "qty": 1000, "price": 900, "category": "sports",
             "vat": "22"}]})
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            later = samples(await resp.text())
        assert later[("tillpoint_agent_outbox_entries", ())] >= 1
        assert later[("tillpoint_agent_sync_lag_seconds", ())] >= 0
        assert later[("tillpoint_agent_journal_last_seq", ())] == \
            got[("tillpoint_agent_journal_last_seq", ())] + 1

        # Paper out: a device fault counted, the receipt pending.
        await store.control(till, "POST", "/faults", {"paper_out_after_lines": 1})
        try:
            await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [
                {"sku": "3", "name": "Cap", "qty": 1000, "price": 700, "category": "sports",
                 "vat": "22"}]})
        except ApiError as e:
            assert e.status == 503
        else:
            raise AssertionError("a receipt printed with no paper")
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            faulted = samples(await resp.text())
        assert faulted[("tillpoint_agent_pending_receipts", ())] == 1
        assert faulted[("tillpoint_agent_device_errors_total",
                        (("device", "printer"), ("kind", "device")))] >= 1
