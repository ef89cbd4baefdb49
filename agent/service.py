"""The agent as a running service: devices, checkout, sync jobs and the POS API, wired."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

import sdnotify
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent import epochs, identity, journal, listening
from agent.card_keys import TillCardKeys
from agent.card_lookup import GuessingReport
from agent.central_client import CentralClient, CentralError
from agent.checkout import Checkout
from agent.clock import utcnow
from agent.config import AgentConfig
from agent.devices.printer import PrinterError, ShtrihPrinter
from agent.devices.reader import CardReader
from agent.loop_watch import LoopWatch
from agent.pos_api import LastCard, Till, make_runner
from agent.pos_auth import PosSecret, PosSecretError, write_pos_secret
from agent.presence import SmsDesk
from agent.returns_desk import ReturnsDesk
from agent.rules_cache import RulesCache
from agent.shift_schedule import ShiftCloseSchedule
from agent.store import open_store
from agent.sync import SyncClient
from agent.taxes import StoreVat
from protocol.card_keys import CardKeyError, decode_for_till
from protocol.signing import BadSignature
from protocol.wire import InvalidMessage

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.2
REFRESH_WAIT_S = 3.0
SWITCH_INTERVAL_S = 0.001


def load_pos_secret(cfg: AgentConfig) -> PosSecret:
    """The POS secret; made here if there is none yet (a till enrolled before it existed)."""
    path = cfg.pos_secret_path
    if not path.exists():
        try:
            write_pos_secret(path, cfg.pos_group)
        except OSError as e:
            raise PosSecretError(f"no POS secret at {path} and none can be made here ({e}):"
                                 " run `tillpoint agent pos-secret rotate` as root") from None
        log.warning("no POS secret yet: made one at %s", path)
    return PosSecret(path)


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.identity = identity.load(cfg.state)
        self.pos_secret = load_pos_secret(cfg)
        identity.check_transport(self.identity.central_url, cfg.insecure)
        self.card_keys = TillCardKeys(self.identity.card_keys_path, cfg.state)
        self.card_keys_problem: str | None = None
        self.db = open_store(cfg.state / "agent.db")
        self.printer = ShtrihPrinter(cfg.printer, baudrate=cfg.printer_baud,
                                     points_mode=cfg.points_mode)  # type: ignore[arg-type]
        self.last_card = LastCard()
        self.reader = CardReader(cfg.reader, keys=self.card_keys,
                                 on_card=self.last_card.presented,
                                 kind=cfg.reader_kind,  # type: ignore[arg-type]
                                 suffix=cfg.reader_suffix,  # type: ignore[arg-type]
                                 loyalty_ranges=cfg.loyalty_card_ranges)
        self.client = CentralClient(self.identity)
        self.rules = RulesCache(self.db, utcnow)
        self.sync = SyncClient(self.db, self.client, max_backoff_s=cfg.max_backoff,
                               clock=utcnow, rules=self.rules)
        self.checkout = Checkout(self.db, self.printer, self.rules, self.identity.store, utcnow,
                                 on_journal=self.wake_push,
                                 vat=StoreVat(cfg.tax_groups, cfg.vat_rate),
                                 central=ReturnsDesk(self.client, self.sync))
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.guessing = GuessingReport()
        self.metrics_runner: web.AppRunner | None = None
        self._reporting: asyncio.Task[None] | None = None
        self.till: Till | None = None  # what the POS API serves, once started
        self._reconciled_connection: float | None = None  # printer.connected_at last settled
        self.loop_watch = LoopWatch()
        self.shift_schedule: ShiftCloseSchedule | None = None
        self._background: list[asyncio.Task] = []

    # -- jobs -----------------------------------------------------------------------------

    def wake_push(self) -> None:
        """Push soon after a receipt, coalescing a burst of receipts into one batch.

        Only ever brought forward: postponing it on every receipt starved the push of a till
        that sells without a pause (each receipt moved it another DEBOUNCE_S away, and
        nothing reached the central until the queue stopped)."""
        job = self.scheduler.get_job("push")
        if job is None:
            return
        soon = datetime.fromtimestamp(time.time() + DEBOUNCE_S, UTC)
        if job.next_run_time is None or soon < job.next_run_time:
            job.modify(next_run_time=soon)

    async def push_job(self) -> None:
        if self.sync.backing_off():
            return
        with contextlib.suppress(CentralError):
            await self.sync.push()

    async def pull_job(self) -> None:
        if self.sync.backing_off():
            return
        await self.send_guessing_report()  # one that failed before
        with contextlib.suppress(CentralError):
            await self.pull_rules_and_keys()
            if self.shift_schedule is not None:
                self.shift_schedule.refresh()  # a new rule set may move the store's zone
            if not self.sync.customers_pulling():  # a long first sync goes on by itself
                await self.sync.pull_customers()

    async def pull_rules_and_keys(self) -> None:
        with contextlib.suppress(CentralError):
            await self.sync.pull_ruleset()
            await self.pull_card_keys()

    async def pull_card_keys(self) -> None:
        """The central's card keys, signed for this till: a rotation arrives, a retired key
        goes. Withheld over plain HTTP (403): then cards cannot be identified, and say so."""
        try:
            data, _ = await self.client.request("GET", "/sync/v1/card-keys")
        except CentralError as e:
            if e.status == 403:
                self.card_keys_problem = str(e)
                return
            raise
        try:
            ring = decode_for_till(data, self.identity.central_key, self.identity.till_id,
                                   utcnow())
        except (BadSignature, InvalidMessage, CardKeyError) as e:
            self.card_keys_problem = f"card keys refused: {e}"
            log.error("card keys from the central refused: %s", e)
            return
        self.card_keys_problem = None
        if ring:
            self.card_keys.replace(ring)

    def report_guessing(self) -> None:
        """Typed numbers were refused for the limit: tell the central soon, once for all
        that are refused meanwhile (one alert there per till and period)."""
        if self._reporting is None or self._reporting.done():
            self._reporting = asyncio.create_task(self.send_guessing_report())

    async def send_guessing_report(self) -> None:
        report = self.guessing.take()
        if report is None:
            return
        try:
            await self.client.request("POST", "/sync/v1/reports", json.dumps(report).encode(),
                                      content_type="application/json")
        except CentralError as e:
            self.guessing.put_back(report)  # the pull job tries again
            log.warning("could not report typed card numbers refused: %s", e)

    async def refresh_customers(self) -> None:
        """Customers the central has and this till not yet: for a card the till does not
        know. A pull under way (a new till's first, of a million members) is joined for a
        moment, not waited out: the POS gets its answer."""
        with contextlib.suppress(CentralError, TimeoutError):
            await asyncio.wait_for(self.sync.pull_customers(), REFRESH_WAIT_S)

    async def reconcile_job(self) -> None:
        """After contact with the printer comes back, settle what was left unfinished."""
        connection = self.printer.connected_at
        if connection == self._reconciled_connection or not self.printer.state().connected:
            return
        with contextlib.suppress(PrinterError):
            if self.checkout.pending():
                await self.checkout.reconcile()
            self._reconciled_connection = connection

    async def scheduled_shift_close(self) -> None:
        try:
            number = await self.close_shift()
            log.info("shift closed on schedule: Z report is fiscal document %d", number)
        except PrinterError as e:
            log.error("scheduled shift close failed: %s", e.message)

    async def close_shift(self) -> int:
        async with self.checkout.lock:
            return await self.printer.close_shift()

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        last_seq, _ = journal.last(self.db)
        return {
            "till_id": self.identity.till_id,
            "store": self.identity.store,
            "central": self.identity.central_url,
            "enrolment": "revoked" if self.sync.state.revoked else "active",
            "quarantine": self.sync.state.quarantine,
            # The central refuses the next batch as malformed: the journal waits, whole.
            "push_held": self.sync.state.push_held,
            "ruleset_refused": self.sync.state.ruleset_refused,
            "ruleset_version": self.rules.active_version(),
            "ruleset_next": self.rules.next_activation(),
            "journal": {"epoch": journal.epoch(self.db), "last_seq": last_seq,
                        "acked_seq": self.sync.acked_seq(),
                        "unsent": last_seq - self.sync.acked_seq(),
                        **epochs.describe(self.db)},
            "pending_receipts": self.checkout.pending(),
            "held_by_full_disk": [{"receipt_id": r, "fiscal_doc": d}
                                  for r, d in self.checkout.held.items()],
            "printer": vars(self.printer.state()),
            "reader": self.reader.state(),
            "card_keys": {"versions": self.card_keys.versions,
                          "problem": self.card_keys_problem},
            "sync": self.sync.state.to_dict(),
            "identify": self._identify_status(),
            "loop": self.loop_watch.to_dict(),
        }

    def _identify_status(self) -> dict[str, int]:
        return {"typed_refused": self.guessing.refused_total,
                "unreported": self.guessing.unreported,
                "central_lookups": self.till.refresher.asked if self.till else 0}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> web.AppRunner:
        await self.printer.start()
        await self.reader.start()
        await self.rules.warm()  # compiled in a thread, before the first receipt needs it
        self._background.append(asyncio.create_task(self.loop_watch.run()))
        # A first rule set if the central is there (fine if not). Customers come after the
        # POS API is open: a new till's first sync brings every member, and the POS must
        # be served (and systemd told we are up) meanwhile.
        await self.pull_rules_and_keys()
        self.scheduler.add_job(self.push_job, "interval", seconds=self.cfg.sync_interval,
                               id="push", max_instances=1, coalesce=True)
        self.scheduler.add_job(self.pull_job, "interval", seconds=self.cfg.pull_interval,
                               id="pull", max_instances=1, coalesce=True)
        self.scheduler.add_job(self.reconcile_job, "interval", seconds=1, id="reconcile",
                               max_instances=1, coalesce=True)
        # Receipts printed while the disk was full: journalled as soon as there is space.
        self.scheduler.add_job(self.checkout.retry_held, "interval", seconds=1,
                               id="held_receipts", max_instances=1, coalesce=True)
        if self.cfg.shift_close_at:  # on the store's wall clock (agent.shift_schedule)
            self.shift_schedule = ShiftCloseSchedule(
                self.scheduler, self.scheduled_shift_close, self.cfg.shift_close_at,
                self.rules, self.identity.store)
            self.shift_schedule.refresh()
        self.scheduler.start()
        if await self.printer.wait_connected(timeout=5.0):
            await self.reconcile_job()
        till = Till(self.checkout, self.last_card, self.card_keys,
                    self.refresh_customers, self.status, self.close_shift,
                    loyalty_ranges=self.cfg.loyalty_card_ranges,
                    guessing=self.guessing, report_guessing=self.report_guessing,
                    app_keys=lambda: self.card_keys.ring, sms=SmsDesk(self.client))
        self.till = till
        runner = make_runner(till, self.pos_secret)
        await runner.setup()
        await web.TCPSite(runner, self.cfg.pos_host, self.cfg.pos_port).start()
        port = runner.addresses[0][1]
        metrics_port = None
        if self.cfg.metrics_port is not None:
            # Imported only here: prometheus_client is 3.5 MB of a till's memory, for a port
            # most stores never open.
            from agent import metrics

            served = await metrics.serve(self, "127.0.0.1", self.cfg.metrics_port)
            if served:
                self.metrics_runner, metrics_port = served
        # Where `tillpoint agent status --state` finds this till's agent (agent.listening).
        listening.write(self.cfg.state, self.cfg.pos_host, port, self.identity.till_id,
                        metrics_port)
        if self.cfg.port_file:
            tmp = self.cfg.port_file.with_suffix(".tmp")
            tmp.write_text(str(port))
            tmp.replace(self.cfg.port_file)
        log.info("till %s: POS API on http://%s:%d", self.identity.till_id, self.cfg.pos_host,
                 port)
        self._background.append(asyncio.create_task(self.first_customer_pull()))
        # Entries acknowledged before this version redacted them (agent.journal), in steps
        # between POS requests, online or not.
        self._background.append(asyncio.create_task(self.redact_journal()))
        return runner

    async def redact_journal(self) -> None:
        count = await self.sync.redact_acknowledged()
        if count:
            log.info("cut personal values out of %d acknowledged journal entries", count)

    async def first_customer_pull(self) -> None:
        if self.sync.backing_off():
            return
        with contextlib.suppress(CentralError):
            count = await self.sync.pull_customers()
            log.info("customers: %d changes received since the last run", count)

    async def stop(self, runner: web.AppRunner) -> None:
        # Stop taking receipts first, then the jobs, then the devices; a final push gives
        # the central what it can get before the process goes.
        await runner.cleanup()
        if self.metrics_runner:
            await self.metrics_runner.cleanup()
        listening.remove(self.cfg.state)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.sync.stop()
        self.scheduler.shutdown(wait=False)
        with contextlib.suppress(CentralError, asyncio.TimeoutError):
            async with asyncio.timeout(3):
                await self.sync.push()
        await self.reader.stop()
        await self.printer.stop()
        await self.client.close()
        self.db.close()


async def _watchdog(notifier: sdnotify.SystemdNotifier, interval: float) -> None:
    # From the event loop itself: a blocked loop stops the pings and systemd restarts us.
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve(cfg: AgentConfig) -> None:
    # Rule sets compile in a worker thread: a shorter switch interval (5 ms by default)
    # gives the event loop the interpreter back sooner, so the POS waits less meanwhile.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    agent = Agent(cfg)
    runner = await agent.start()
    notifier = sdnotify.SystemdNotifier()
    notifier.notify("READY=1")
    watchdog = None
    if usec := int(os.environ.get("WATCHDOG_USEC", "0")):
        watchdog = asyncio.create_task(_watchdog(notifier, usec / 2e6))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        notifier.notify("STOPPING=1")
        if watchdog:
            watchdog.cancel()
        await agent.stop(runner)
