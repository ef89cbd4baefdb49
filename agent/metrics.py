"""The agent's figures for monitoring, in the Prometheus text format, on a port of its own.

Read at scrape time from what the agent already keeps (journal, outbox, sync state, devices),
so nothing on the selling path counts anything extra. Served on its own loopback listener,
apart from the POS API: it is read-only and holds no personal data (no card, customer,
cashier or receipt), so a scraper needs no POS secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent import journal
from agent.clock import utcnow

if TYPE_CHECKING:
    from agent.service import Agent

log = logging.getLogger(__name__)


class AgentCollector:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        last_seq, _ = journal.last(a.db)
        acked = a.sync.acked_seq()
        info = GaugeMetricFamily("tillpoint_agent_info", "This till", labels=["till_id", "store"])
        info.add_metric([a.identity.till_id, a.identity.store], 1)
        yield info
        yield _gauge("tillpoint_agent_journal_last_seq", "Newest journal entry of this epoch",
                     last_seq)
        yield _gauge("tillpoint_agent_outbox_entries",
                     "Journal entries the central has not acknowledged", last_seq - acked)
        yield _gauge("tillpoint_agent_sync_lag_seconds",
                     "Age of the oldest entry the central has not acknowledged (0: none)",
                     _oldest_unsent_age(a, acked, last_seq))
        state = a.sync.state
        yield _gauge("tillpoint_agent_sync_failures",
                     "Failed sync attempts in a row (0: the last one worked)", state.failures)
        for name, at in (("push", state.last_push_ok), ("pull", state.last_pull_ok)):
            yield _gauge(f"tillpoint_agent_last_{name}_ok_timestamp_seconds",
                         f"Unix time of the last successful {name} (0: none yet)", at or 0)
        yield _gauge("tillpoint_agent_ruleset_version", "Rule-set version in force",
                     a.rules.active_version() or 0)
        yield _gauge("tillpoint_agent_pending_receipts",
                     "Receipts between 'about to print' and 'journalled'",
                     len(a.checkout.pending()))
        yield _gauge("tillpoint_agent_held_receipts",
                     "Printed receipts waiting for disk space to be journalled",
                     len(a.checkout.held))
        yield _gauge("tillpoint_agent_quarantined",
                     "1 while the central holds this till's credits", int(bool(state.quarantine)))
        yield _gauge("tillpoint_agent_enrolment_revoked", "1 once the central revoked this till",
                     int(state.revoked))
        connected = GaugeMetricFamily("tillpoint_agent_device_connected",
                                      "1 while the device answers", labels=["device"])
        connected.add_metric(["printer"], int(a.printer.state().connected))
        connected.add_metric(["reader"], int(bool(a.reader.state()["connected"])))
        yield connected
        errors = CounterMetricFamily("tillpoint_agent_device_errors",
                                     "Device faults since the agent started",
                                     labels=["device", "kind"])
        for kind, n in sorted(a.printer.errors.items()):
            errors.add_metric(["printer", kind], n)
        errors.add_metric(["printer", "disconnect"], a.printer.sessions_lost)
        errors.add_metric(["reader", "disconnect"], a.reader.sessions_lost)
        errors.add_metric(["reader", "dropped_frame"], a.reader.state()["dropped"])
        yield errors
        refused = CounterMetricFamily("tillpoint_agent_typed_card_refused",
                                      "Typed card numbers refused by the rate limit")
        refused.add_metric([], a.guessing.refused_total)
        yield refused


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _oldest_unsent_age(agent: Agent, acked: int, last_seq: int) -> float:
    if last_seq <= acked:
        return 0.0
    row = agent.db.execute("SELECT at FROM journal WHERE epoch = ? AND seq = ?",
                           [journal.epoch(agent.db), acked + 1]).fetchone()
    if row is None:
        return 0.0
    oldest = datetime.fromisoformat(row[0])
    return max(0.0, (utcnow() - oldest).total_seconds())


def make_app(agent: Agent) -> web.Application:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(agent: Agent, host: str, port: int) -> tuple[web.AppRunner, int] | None:
    """Start the listener; None (logged) if it cannot bind: a till sells without metrics."""
    runner = web.AppRunner(make_app(agent), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        log.error("metrics not served on %s:%d: %s", host, port, e)
        await runner.cleanup()
        return None
    bound = runner.addresses[0][1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return runner, bound
