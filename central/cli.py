"""`tillpoint central ...`: run the central, and the few things an operator does by hand."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from central import db, tills
from central.clock import utcnow
from central.connection_guard import Limits

DEFAULT_DATA = os.environ.get("STATE_DIRECTORY", "/var/lib/tillpoint-central")


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
    run.set_defaults(func=_run)

    tok = csub.add_parser("enrol-token", help="print a one-time token to enrol a till")
    tok.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="data directory")
    tok.add_argument("--store", required=True, help="store the till belongs to")
    tok.set_defaults(func=_enrol_token)


def _run(args: argparse.Namespace) -> int:
    from central.app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    limits = Limits(header_timeout=args.header_timeout, min_body_rate=args.min_body_rate,
                    max_connections=args.max_connections)
    asyncio.run(serve(args.data, args.host, args.port, args.port_file, limits))
    return 0


def _enrol_token(args: argparse.Namespace) -> int:
    args.data.mkdir(parents=True, exist_ok=True)
    conn = db.connect(args.data / "central.db")
    try:
        print(tills.create_enrolment_token(conn, args.store, utcnow()))
    finally:
        conn.close()
    return 0
