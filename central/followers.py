"""The central's background work: followers of the journal and jobs of the clock, and where
they run.

Re-pricing, campaign budgets, KPI figures and the message triggers follow the ingest
sequence (central.ingest_log) or another cursor and claim each page by moving it, so
however many processes run them each entry is done once; the message sender claims each
message under a lease (central.messages); maturing lots and tier windows take a try-lock
and skip while another process holds it. That makes them free to run anywhere: in every
API process (`--role all`, the default, what one store needs), or in processes of their
own (`--role followers`) beside API processes that only ingest and answer (`--role
ingest`), so that their work never waits in the event loop in front of a till's
acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sdnotify

from central import (
    campaign_budgets,
    campaign_figures,
    campaign_roi,
    customers,
    db,
    fraud_watch,
    kpi_counts,
    ledger,
    message_triggers,
    metrics,
    repricing,
    rulesets,
)
from central.clock import utcnow
from central.db import Connection, Unavailable
from central.message_channels import Channels
from central.message_sender import Sender

log = logging.getLogger(__name__)

REPRICING_INTERVAL_S = 2.0
TIER_ROLLOVER_INTERVAL_S = 600.0  # windows turn at midnight: within ten minutes is enough
# Reads replay the clock themselves (ledger.balance); the job only writes back what it did
# and wakes tills' deltas, so a minute late is fine.
MATURING_INTERVAL_S = 60.0
# The liability KPI reads the newest of these; each is one pass over the ledger.
POINTS_SNAPSHOT_INTERVAL_S = 900.0
# Messages to customers (central.messages): triggers queue, the sender sends what is due.
MESSAGE_TRIGGERS_INTERVAL_S = 60.0
MESSAGE_SENDER_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Job:
    name: str
    every: float
    # One step of the work; True while there is more to do at once. A step that waits on
    # the network (the message sender) is a coroutine function.
    step: Callable[[Connection, datetime], bool | Awaitable[bool]]


def jobs(conn: Connection, reprice_every: float = REPRICING_INTERVAL_S,
         channels: Channels | None = None) -> list[Job]:
    """Every background job of the central, for the connection they will run on.
    `channels`: how messages to customers leave; none configured, they wait in the outbox."""
    cache = repricing.RuleSets(conn)
    sender = Sender(channels or Channels())
    return [
        Job("re-pricing", reprice_every,
            lambda c, now: repricing.reprice_pending(c, now, cache=cache) > 0),
        # Budget usage trails ingest by one interval at most; tills bound the overshoot
        # meanwhile by subtracting their own grants (central.campaign_budgets).
        Job("campaign budgets", reprice_every,
            lambda c, now: campaign_budgets.account_pending(c) > 0),
        Job("campaign figures", reprice_every,
            lambda c, now: campaign_figures.count_pending(c) > 0),
        Job("campaign ROI", reprice_every,
            lambda c, now: campaign_roi.count_pending(c, cache) > 0),
        Job("KPI figures", reprice_every,
            lambda c, now: kpi_counts.count_pending(c, cache) > 0),
        Job("fraud rules", reprice_every,
            lambda c, now: fraud_watch.watch_pending(c, now) > 0),
        Job("points outstanding", POINTS_SNAPSHOT_INTERVAL_S, _snapshot_points),
        Job("maturing lots", MATURING_INTERVAL_S,
            lambda c, now: ledger.mature_due(c, now) > 0),
        Job("tier windows", TIER_ROLLOVER_INTERVAL_S,
            lambda c, now: customers.roll_tier_windows(c, now) > 0),
        # The triggers move cursors, the sender claims rows: each runs once across processes.
        Job("message receipts", reprice_every,
            lambda c, now: message_triggers.follow_receipts(c, now) > 0),
        Job("message customers", reprice_every,
            lambda c, now: message_triggers.follow_customers(c, now) > 0),
        Job("message schedules", MESSAGE_TRIGGERS_INTERVAL_S,
            lambda c, now: _message_schedules(c, now, cache)),
        Job("message sender", min(reprice_every, MESSAGE_SENDER_INTERVAL_S), sender.step),
    ]


def _message_schedules(conn: Connection, now: datetime, cache: repricing.RuleSets) -> bool:
    message_triggers.follow_activations(conn, now)
    message_triggers.follow_expiring(conn, now, cache)
    message_triggers.follow_days(conn, now, cache)
    return False  # each looked at everything due; again at the next interval


def _snapshot_points(conn: Connection, now: datetime) -> bool:
    kpi_counts.snapshot_points(conn, now)
    return False  # one pass, then wait for the next interval


async def run_job(job: Job, conn: Callable[[], Connection],
                  clock: Callable[[], datetime]) -> None:
    """Run `job` every `job.every` seconds until cancelled; while it says there is more to
    do, again at once (after whatever else waits on the event loop)."""
    waiting_for_db = False
    while True:
        try:
            while True:
                more = job.step(conn(), clock())
                if inspect.isawaitable(more):
                    more = await more
                if not more:
                    break
                await asyncio.sleep(0)
            if waiting_for_db:
                log.warning("%s resumed: the database is back", job.name)
            waiting_for_db = False
        except Unavailable as e:
            # Said once per outage, not with a traceback every round: the round was rolled
            # back whole and the job resumes by itself.
            if not waiting_for_db:
                log.warning("%s waits for the database: %s", job.name, e)
            waiting_for_db = True
        except Exception:
            log.exception("%s failed; trying again later", job.name)
        await asyncio.sleep(job.every)


@contextlib.asynccontextmanager
async def running(all_jobs: list[Job], conn: Callable[[], Connection],
                  clock: Callable[[], datetime]):  # type: ignore[no-untyped-def]
    """The jobs as tasks on this event loop for the duration of the block."""
    tasks = [asyncio.create_task(run_job(j, conn, clock)) for j in all_jobs]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def serve(data_dir: Path, database: str | None,
                metrics_at: tuple[str, int] | None = None,
                clock: Callable[[], datetime] = utcnow,
                channels: Channels | None = None) -> None:
    """`tillpoint central run --role followers`: the background jobs alone, until SIGTERM.
    No API: tills and head office are served by the `--role ingest` processes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = db.connect(database or data_dir / "central.db")
    metrics_runner = None
    try:
        rulesets.ensure_default(conn, clock())
        if metrics_at is not None:
            m = metrics.CentralMetrics()
            m.watch(lambda: conn, clock, lambda: 0)
            metrics_runner, _ = await metrics.serve(m, *metrics_at)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with running(jobs(conn, channels=channels), lambda: conn, clock):
            log.info("central followers running (database %s)",
                     db.redacted(database) if database else data_dir / "central.db")
            sdnotify.SystemdNotifier().notify("READY=1")
            await stop.wait()
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        conn.close()
