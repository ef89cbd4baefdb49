"""`tillpoint central ...`: run the central, and the few things an operator does by hand."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from central import audit, card_keys, db, staff, tills
from central.client_source import TrustedProxies
from central.clock import utcnow
from central.connection_guard import Limits
from central.errors import Refused
from central.roles import ROLES
from central.secrets_store import staff_token_key
from protocol.bounds import OutOfBounds
from protocol.card_keys import DEFAULT_LIFETIME_DAYS, CardKeyError, write_ring

if TYPE_CHECKING:
    from central.message_channels import Channels
    from central.presence import SmsGateway

# Which part of the central a process runs (central.followers); not staff roles.
PROCESS_ROLES = ("all", "ingest", "followers")
DEFAULT_DATA = os.environ.get("STATE_DIRECTORY", "/var/lib/tillpoint-central").split(":")[0]


def build_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("central", help="the central aggregator (head office)")
    csub = p.add_subparsers(dest="central_cmd", required=True)

    run = csub.add_parser("run", help="serve the till sync API and the head-office API")
    run.add_argument(
        "--data",
        type=Path,
        default=Path(DEFAULT_DATA),
        help="directory for the database and keys (default: %(default)s)",
    )
    database_arg(run)
    run.add_argument("--role", choices=PROCESS_ROLES, default="all",
                     help="all: the API and the background jobs (one process, one store);"
                          " ingest: the API alone; followers: the background jobs alone"
                          " (re-pricing, budgets, maturing, tier windows), in a process of"
                          " their own beside ingest processes (default: %(default)s)")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on")
    run.add_argument("--port", type=int, default=8600, help="port (0 picks a free one)")
    run.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    lim = Limits()
    run.add_argument("--header-timeout", type=float, default=lim.header_timeout,
                     help="seconds a client has to send a request's headers (default: %(default)s)")
    run.add_argument("--min-body-rate", type=int, default=lim.min_body_rate,
                     help="bytes a second a request body must average after a grace period"
                          " (default: %(default)s)")
    run.add_argument("--max-connections", type=int, default=lim.max_connections,
                     help="connections open at once; more are closed (default: %(default)s)")
    card_keys_arg(run)
    run.add_argument("--metrics-port", type=int,
                     help="serve Prometheus metrics at this port (apart from the API)")
    run.add_argument("--metrics-host", default="127.0.0.1",
                     help="address of the metrics listener (default the loopback)")
    run.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    run.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    run.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                     help="a reverse proxy (address or network) whose X-Forwarded-For names"
                          " the caller; repeat for several (default: none, the peer is the"
                          " caller)")
    sms = run.add_mutually_exclusive_group()
    sms.add_argument("--sms-gateway", metavar="URL",
                     help="send customers' one-time codes through this SMS gateway (POST"
                          " {to, text} as JSON); its bearer token from $TILLPOINT_SMS_TOKEN")
    sms.add_argument("--sms-outbox", type=Path, metavar="FILE",
                     help="instead of sending them, write the SMS messages to FILE, one JSON"
                          " line each (demos and tests, where no gateway runs)")
    run.add_argument("--smtp", metavar="HOST:PORT",
                     help="send customers' e-mail messages through this SMTP server (STARTTLS"
                          " where offered; login from $TILLPOINT_SMTP_USER and"
                          " $TILLPOINT_SMTP_PASSWORD)")
    run.add_argument("--mail-from", metavar="ADDRESS", default="loyalty@localhost",
                     help="the From address of customers' e-mail messages")
    run.add_argument("--message-sms-gateway", metavar="URL",
                     help="send customers' SMS messages through this HTTP gateway (POST {to,"
                          " text, key} as JSON); its token from $TILLPOINT_MESSAGE_TOKEN")
    run.add_argument("--message-push-gateway", metavar="URL",
                     help="send customers' push messages through this HTTP gateway, as for"
                          " SMS; without a channel, messages wait in the outbox")
    run.add_argument("--messages-to-log", action="store_true",
                     help="development only: messages to customers and the sign-in codes of"
                          " their account (/account) are written to the log, on every channel"
                          " no server or gateway is given for")
    run.set_defaults(func=_run)

    ck = csub.add_parser("card-key", help="the card keys that key card tokens")
    cksub = ck.add_subparsers(dest="card_key_cmd", required=True)
    rot = cksub.add_parser("rotate", help="make a new card key version (restart the central"
                                          " to use it)")
    rot.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="data directory")
    card_keys_arg(rot)
    rot.add_argument("--lifetime-days", type=int, default=DEFAULT_LIFETIME_DAYS,
                     help="how long the new key makes tokens before it retires (%(default)s)")
    rot.set_defaults(func=_rotate)

    tok = csub.add_parser("enrol-token", help="print a one-time token to enrol a till")
    tok.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="data directory")
    database_arg(tok)
    tok.add_argument("--store", required=True, help="store the till belongs to")
    tok.set_defaults(func=_enrol_token)

    st = csub.add_parser("staff", help="staff accounts of the head-office API")
    stsub = st.add_subparsers(dest="staff_cmd", required=True)
    add = stsub.add_parser("add", help="make a staff account and print its token (once)")
    add.add_argument("--name", required=True, help="the person's name")
    add.add_argument("--role", required=True, choices=[str(r) for r in ROLES],
                     help="what the account may do (docs/roles.md)")
    add.add_argument("--days", type=int, default=staff.DEFAULT_TOKEN_DAYS,
                     help="the token expires after this many days (%(default)s, at most 366)")
    add.set_defaults(func=_staff_add)
    ls = stsub.add_parser("list", help="list staff accounts (no tokens)")
    ls.set_defaults(func=_staff_list)
    rv = stsub.add_parser("revoke", help="revoke a staff account's token at once")
    rv.add_argument("--id", required=True, help="the account's id (st_..., or admin-token)")
    rv.set_defaults(func=_staff_revoke)
    for cmd in (add, ls, rv):
        cmd.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="data directory")
        database_arg(cmd)


def database_arg(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--database", metavar="URL", type=_database_url,
                     help="a PostgreSQL database, postgresql://USER@HOST:PORT/NAME (the"
                          " password from ~/.pgpass or PGPASSWORD, not the command line);"
                          " default: the SQLite file DATA/central.db")


def _database_url(value: str) -> str:
    if not db.is_url(value):
        raise argparse.ArgumentTypeError("give a postgresql:// URL")
    return value


def card_keys_arg(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--card-keys", type=Path,
                     help="the card key file, outside the data directory (default: DATA-keys/"
                          "card-keys; a systemd credential named card-keys comes first)")


def _run(args: argparse.Namespace) -> int:
    from central.app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    limits = Limits(header_timeout=args.header_timeout, min_body_rate=args.min_body_rate,
                    max_connections=args.max_connections)
    if (args.tls_cert is None) != (args.tls_key is None):
        print("give both --tls-cert and --tls-key, or neither", file=sys.stderr)
        return 2
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    metrics_at = None
    if args.metrics_port is not None:
        if not 0 <= args.metrics_port <= 65535:
            print("--metrics-port must be a port number", file=sys.stderr)
            return 2
        metrics_at = (args.metrics_host, args.metrics_port)
    try:
        proxies = TrustedProxies.parse(args.trusted_proxy)
    except ValueError as e:
        raise SystemExit(f"--trusted-proxy: {e}") from None
    try:
        asyncio.run(serve(args.data, args.host, args.port, args.port_file, limits,
                          args.card_keys, tls, proxies, _sms_gateway(args), metrics_at,
                          args.database, args.role, _message_channels(args)))
    except CardKeyError as e:
        print(f"card keys: {e}", file=sys.stderr)
        return 2
    except db.DatabaseError as e:
        print(f"database: {e}", file=sys.stderr)
        return 2
    return 0


def _message_channels(args: argparse.Namespace) -> Channels:
    from central.message_channels import Channels, HttpGatewayChannel, SmtpChannel

    channels = Channels()
    token = os.environ.get("TILLPOINT_MESSAGE_TOKEN", "")
    if args.smtp:
        host, _, port = args.smtp.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SystemExit("--smtp: give HOST:PORT, e.g. mail.example.org:587")
        channels.email = SmtpChannel(host, int(port), args.mail_from,
                                     username=os.environ.get("TILLPOINT_SMTP_USER"),
                                     password=os.environ.get("TILLPOINT_SMTP_PASSWORD"))
    if args.message_sms_gateway:
        channels.sms = HttpGatewayChannel(args.message_sms_gateway, token)
    if args.message_push_gateway:
        channels.push = HttpGatewayChannel(args.message_push_gateway, token)
    if args.messages_to_log:
        from central.message_channels import LogChannel

        channels.email = channels.email or LogChannel("email")
        channels.sms = channels.sms or LogChannel("sms")
        channels.push = channels.push or LogChannel("push")
    return channels


def _sms_gateway(args: argparse.Namespace) -> SmsGateway | None:
    from central.presence import HttpSmsGateway, OutboxSmsGateway

    if args.sms_gateway:
        return HttpSmsGateway(args.sms_gateway, os.environ.get("TILLPOINT_SMS_TOKEN", ""))
    if args.sms_outbox:
        return OutboxSmsGateway(args.sms_outbox)
    return None


def _rotate(args: argparse.Namespace) -> int:
    """A new newest key in the key file; retired keys leave it (and their secrets with it)."""
    now = utcnow()
    path = args.card_keys or card_keys.default_key_file(args.data)
    existed = path.exists() or (args.data / card_keys.LEGACY_SECRET).exists()
    try:
        ring = card_keys.key_file_ring(args.data, path, now)  # the first key, if none yet
        new = ring.rotated(now, args.lifetime_days) if existed else ring
        write_ring(path, new)
    except CardKeyError as e:
        print(f"card keys: {e}", file=sys.stderr)
        return 2
    key = new.newest
    print(f"card key version {key.version} made in {path}, retiring {key.retires_at:%Y-%m-%d};"
          f" versions kept: {new.versions}. Restart the central to use it; tills receive it"
          " with their next pull.")
    return 0


def _connect(args: argparse.Namespace) -> db.Connection:
    if args.database:
        return db.connect(args.database)
    args.data.mkdir(parents=True, exist_ok=True)
    return db.connect(args.data / "central.db")


def _enrol_token(args: argparse.Namespace) -> int:
    conn = _connect(args)
    try:
        print(tills.create_enrolment_token(conn, args.store, utcnow()))
    finally:
        conn.close()
    return 0


def _operator() -> str:
    """Who runs a command at the central's machine: audited as `cli:<login>`."""
    return f"cli:{getpass.getuser()}"


def _staff_add(args: argparse.Namespace) -> int:
    conn = _connect(args)
    try:
        with audit.recorded(conn, utcnow(), _operator(), "staff.add", "") as change:
            account, token = staff.add(conn, staff_token_key(args.data), args.name,
                                       args.role, _operator(), utcnow(), args.days)
            change.subject, change.after = f"staff:{account.id}", account.to_dict()
    except (Refused, OutOfBounds) as e:
        print(f"staff add: {e}", file=sys.stderr)
        return 2
    finally:
        conn.close()
    print(f"staff account {account.id} ({account.name}, {account.role}) until"
          f" {account.expires_at}. Its token, shown only now:", file=sys.stderr)
    print(token)
    return 0


def _staff_list(args: argparse.Namespace) -> int:
    conn = _connect(args)
    try:
        for a in staff.list_accounts(conn):
            state = (f"revoked {a.revoked_at}" if a.revoked_at else
                     f"expires {a.expires_at}" if a.expires_at else "no expiry")
            print(f"{a.id}\t{a.role}\t{a.name}\t{state}")
    finally:
        conn.close()
    return 0


def _staff_revoke(args: argparse.Namespace) -> int:
    conn = _connect(args)
    try:
        with audit.recorded(conn, utcnow(), _operator(), "staff.revoke",
                            f"staff:{args.id}") as change:
            change.before = staff.get(conn, args.id).to_dict()
            account = staff.revoke(conn, args.id, _operator(), utcnow())
            change.after = account.to_dict()
    except Refused as e:
        print(f"staff revoke: {e}", file=sys.stderr)
        return 2
    finally:
        conn.close()
    print(f"staff account {account.id} revoked at {account.revoked_at}")
    return 0
