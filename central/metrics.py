"""The central's figures for monitoring, in the Prometheus text format, on a port of its own.

Batches are counted and timed where they are answered; the rest (tills and their sync age,
the rule-set version, open alerts) is read from the database at scrape time, so every central
process serving the same database tells the same story. The listener is apart from the API
and on the loopback by default: the figures name tills and stores but no customer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from central.clock import parse_iso
from central.db import Unavailable
from central.dbapi import Connection

log = logging.getLogger(__name__)

# From a lone batch on the loopback (a few ms) to one queued behind a busy writer (seconds).
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CentralMetrics:
    """The registry of one central process, with the figures counted as requests pass."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.batches = Counter("tillpoint_central_batches", "Batches answered, by outcome",
                               ["outcome"], registry=self.registry)
        self.batch_seconds = Histogram("tillpoint_central_batch_seconds",
                                       "Time from a batch's arrival to its answer",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.entries = Counter("tillpoint_central_entries_applied",
                               "Journal entries applied (new to the central)",
                               registry=self.registry)

    def timed_batch(self) -> BatchTimer:
        return BatchTimer(self)

    def watch(self, read_conn: Callable[[], Connection], clock: Callable[[], datetime],
              queue_depth: Callable[[], int]) -> None:
        self.registry.register(DatabaseCollector(read_conn, clock, queue_depth))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BatchTimer:
    """`with metrics.timed_batch() as t: ...; t.outcome = "acked"`; an exception is "error"."""

    def __init__(self, metrics: CentralMetrics) -> None:
        self.metrics = metrics
        self.outcome = "error"
        self._start = 0.0

    def __enter__(self) -> BatchTimer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.metrics.batch_seconds.observe(time.perf_counter() - self._start)
        self.metrics.batches.labels(self.outcome).inc()


class DatabaseCollector:
    def __init__(self, read_conn: Callable[[], Connection], clock: Callable[[], datetime],
                 queue_depth: Callable[[], int]) -> None:
        self.read_conn = read_conn
        self.clock = clock
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        # Built whole before any is yielded: an outage midway must not give half a scrape.
        try:
            figures = list(self._from_database())
        except Unavailable:
            figures = []
        yield GaugeMetricFamily("tillpoint_central_database_up",
                                "1 if this process's last scrape could read its database",
                                value=1 if figures else 0)
        yield from figures
        yield GaugeMetricFamily("tillpoint_central_ingest_queue_batches",
                                "Batches verified and waiting for the writer",
                                value=self.queue_depth())

    def _from_database(self) -> Iterator[Metric]:
        conn = self.read_conn()
        now = self.clock()
        tills = GaugeMetricFamily("tillpoint_central_tills", "Enrolled tills by state",
                                  labels=["state"])
        for state, n in conn.execute(
                "SELECT CASE WHEN quarantined_at IS NOT NULL AND status = 'active'"
                " THEN 'quarantined' ELSE status END, COUNT(*) FROM tills GROUP BY 1"):
            tills.add_metric([state], n)
        yield tills
        age = GaugeMetricFamily("tillpoint_central_till_sync_age_seconds",
                                "Seconds since each active till's last accepted batch",
                                labels=["till_id", "store"])
        acked = GaugeMetricFamily("tillpoint_central_till_acked_seq",
                                  "Each till's acknowledged journal position",
                                  labels=["till_id", "store"])
        for till_id, store, last_sync, seq in conn.execute(
                "SELECT id, store, last_sync_at, acked_seq FROM tills WHERE status = 'active'"):
            if last_sync:
                age.add_metric([till_id, store],
                               max(0.0, (now - parse_iso(last_sync)).total_seconds()))
            acked.add_metric([till_id, store], seq)
        yield age
        yield acked
        version = conn.execute(
            "SELECT MAX(version) FROM rulesets").fetchone()[0]
        yield GaugeMetricFamily("tillpoint_central_ruleset_version",
                                "Newest rule-set version published", value=version or 0)
        alerts = GaugeMetricFamily("tillpoint_central_alerts_open",
                                   "Alerts not yet acknowledged, by kind and severity",
                                   labels=["kind", "severity"])
        for kind, severity, n in conn.execute(
                "SELECT kind, severity, COUNT(*) FROM alerts WHERE acked_at IS NULL"
                " GROUP BY kind, severity"):
            alerts.add_metric([kind, severity], n)
        yield alerts
        yield from pool_metrics(conn.pool_stats())


def pool_metrics(stats: dict[str, int]) -> Iterator[Metric]:
    """This process's database pool: how full it is and how long requests wait for it (a
    pool that is always empty with requests waiting is the first sign of a slow database)."""
    if not stats:
        return
    pool = GaugeMetricFamily("tillpoint_central_db_pool_connections",
                             "Database connections of this process's pool", labels=["state"])
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    pool.add_metric(["open"], size)
    pool.add_metric(["in_use"], size - available)
    pool.add_metric(["max"], stats.get("pool_max", 0))
    yield pool
    yield GaugeMetricFamily("tillpoint_central_db_pool_requests_waiting",
                            "Requests waiting now for a database connection",
                            value=stats.get("requests_waiting", 0))
    waited = CounterMetricFamily("tillpoint_central_db_pool_wait_seconds",
                                 "Time requests waited for a connection, in all")
    waited.add_metric([], stats.get("requests_wait_ms", 0) / 1000)
    yield waited
    lost = CounterMetricFamily("tillpoint_central_db_pool_connections_lost",
                               "Connections the pool found broken and replaced")
    lost.add_metric([], stats.get("connections_lost", 0) + stats.get("returns_bad", 0))
    yield lost


def make_app(metrics: CentralMetrics) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


async def serve(metrics: CentralMetrics, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_app(metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return runner, bound
