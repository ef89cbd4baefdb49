"""The central service: the aiohttp application and how it runs under systemd."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import sdnotify
from aiohttp import web

from central import (
    api_account,
    api_approvals,
    api_audit,
    api_campaigns,
    api_channel,
    api_costs,
    api_customers,
    api_fraud,
    api_kpis,
    api_messages,
    api_office,
    api_staff,
    api_sync,
    card_keys,
    customer_phones,
    dashboard,
    db,
    followers,
    metrics,
    openapi,
    rulesets,
)
from central.auth_failures import Throttle
from central.client_source import NO_PROXIES, TrustedProxies
from central.clock import utcnow
from central.connection_guard import GuardedSite, Limits
from central.ingest_writer import IngestWriter
from central.message_channels import Channels
from central.office_auth import staff_auth_middleware
from central.presence import SmsGateway
from central.secrets_store import load_or_create
from central.web_common import (
    CLOCK,
    DB,
    METRICS,
    SECRETS,
    SMS,
    THROTTLE,
    TRUSTED_PROXIES,
    errors_middleware,
)

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4 * 1024 * 1024


def make_app(data_dir: Path, clock: Callable[[], datetime] = utcnow,
             reprice_every: float | None = followers.REPRICING_INTERVAL_S,
             card_keys_file: Path | None = None,
             trusted_proxies: TrustedProxies = NO_PROXIES,
             sms: SmsGateway | None = None,
             database: str | None = None,
             channels: Channels | None = None) -> web.Application:
    """The central; `reprice_every` None leaves re-pricing to whoever calls it (tests).
    `sms` sends the one-time codes tills ask for (central.presence); None: none are sent.

    The card keys are read once, here: from the systemd credential, else `card_keys_file`
    (default `<data>-keys/card-keys`), never from the data directory.
    `trusted_proxies` are the addresses whose X-Forwarded-For names the real caller.
    `database`: a PostgreSQL URL; by default the SQLite file `<data>/central.db`. The data
    directory holds the central's secrets either way.
    `channels`: how messages to customers leave (central.message_channels); without them
    messages wait in the outbox."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    app = web.Application(
        middlewares=[errors_middleware, staff_auth_middleware],
        client_max_size=MAX_REQUEST_BYTES,
    )
    conn = db.connect(database or data_dir / "central.db")
    rulesets.ensure_default(conn, clock())
    app[DB] = conn
    app[api_sync.SIGNED_RULESETS] = rulesets.SignedRuleSets()
    app[SECRETS] = load_or_create(data_dir, card_keys_file, clock())
    app[api_sync.WRITER] = IngestWriter(conn, keys=app[SECRETS].card_keys)
    app[SMS] = sms
    retired = card_keys.retire_cards(conn, app[SECRETS].card_keys, clock())
    if retired:
        log.warning("%d cards' key has retired: their customers link them again", retired)
    if customer_phones.follow_key(conn, app[SECRETS].card_keys):
        log.warning("a new card key: customers' phone tokens go to the tills again")
    app[CLOCK] = clock
    app[TRUSTED_PROXIES] = trusted_proxies
    app[THROTTLE] = Throttle()
    app[METRICS] = metrics.CentralMetrics()
    app[METRICS].watch(lambda: app[DB], clock, lambda: app[api_sync.WRITER].depth)
    app.router.add_routes(api_sync.routes)
    app.router.add_routes(api_office.routes)
    app.router.add_routes(api_customers.routes)
    app.router.add_routes(api_staff.routes)
    app.router.add_routes(api_audit.routes)
    app.router.add_routes(api_approvals.routes)
    app.router.add_routes(api_kpis.routes)
    app.router.add_routes(api_campaigns.routes)
    app.router.add_routes(api_fraud.routes)
    app.router.add_routes(api_messages.routes)
    app.router.add_routes(api_channel.routes)
    app.router.add_routes(dashboard.routes)
    # the customer's own account; its sign-in codes leave by the same channels (without
    # any: a development central, codes to the log)
    api_account.setup(app, channels)
    app.router.add_routes(api_costs.routes)
    app.router.add_routes(openapi.routes)

    async def close_db(app: web.Application) -> None:
        # Batches still queued were never applied: their tills get an error and resend.
        await app[api_sync.WRITER].close()
        app[DB].close()

    if reprice_every is not None:
        jobs = followers.jobs(conn, reprice_every, channels)

        async def background(app: web.Application) -> AsyncIterator[None]:
            async with followers.running(jobs, lambda: app[DB], lambda: app[CLOCK]()):
                yield

        app.cleanup_ctx.append(background)
    app.on_cleanup.append(close_db)
    return app


async def _watchdog(notifier: sdnotify.SystemdNotifier, interval: float) -> None:
    # Sent from the event loop itself, so a blocked loop stops the pings and systemd
    # restarts the service.
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


# An idle kept-alive connection is closed after this long; aiohttp's own default is an hour.
KEEPALIVE_S = 75.0


def raise_file_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (as far as the hard limit
    allows): every connection is a descriptor. Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(data_dir: Path, host: str, port: int, port_file: Path | None = None,
                limits: Limits | None = None, card_keys_file: Path | None = None,
                tls: tuple[Path, Path] | None = None,
                trusted_proxies: TrustedProxies = NO_PROXIES,
                sms: SmsGateway | None = None,
                metrics_at: tuple[str, int] | None = None,
                database: str | None = None, role: str = "all",
                channels: Channels | None = None) -> None:
    """Serve until SIGTERM; `metrics_at` (host, port) serves Prometheus metrics apart.
    `role` (central.followers): "all" serves the API and runs the background jobs,
    "ingest" the API alone, "followers" the jobs alone."""
    if role == "followers":
        await followers.serve(data_dir, database, metrics_at, channels=channels)
        return
    limits = limits or Limits()
    # Descriptors beyond the connections: the database, its WAL, logs, the listening socket.
    files = raise_file_limit(limits.max_connections + 256)
    if files < limits.max_connections + 64:
        limits = replace(limits, max_connections=max(16, files - 64))
        log.warning("open-file limit %d: at most %d connections", files,
                    limits.max_connections)
    app = make_app(data_dir, card_keys_file=card_keys_file, trusted_proxies=trusted_proxies,
                   sms=sms, database=database, channels=channels,
                   reprice_every=followers.REPRICING_INTERVAL_S if role == "all" else None)
    runner = web.AppRunner(app, keepalive_timeout=KEEPALIVE_S)
    await runner.setup()
    metrics_runner = None
    if metrics_at is not None:
        metrics_runner, _ = await metrics.serve(app[METRICS], *metrics_at)
    # TLS sits below the guard: it times the decrypted request, as on plain HTTP
    site = GuardedSite(runner, host, port, limits,
                       ssl_context=tls_context(*tls) if tls else None)
    await site.start()
    bound = site.port
    if port_file:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(bound))
        tmp.replace(port_file)
    log.info("central listening on %s://%s:%d (data in %s, database %s)",
             "https" if tls else "http", host, bound, data_dir,
             db.redacted(database) if database else data_dir / "central.db")
    notifier = sdnotify.SystemdNotifier()
    notifier.notify("READY=1")
    tasks = []
    if usec := int(os.environ.get("WATCHDOG_USEC", "0")):
        tasks.append(asyncio.create_task(_watchdog(notifier, usec / 2e6)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        notifier.notify("STOPPING=1")
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
