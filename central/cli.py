"""`tillpoint central ...`: run the central, and the few things an operator does by hand."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from central import db, tills
from central.clock import utcnow

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
    run.set_defaults(func=_run)

    tok = csub.add_parser("enrol-token", help="print a one-time token to enrol a till")
    tok.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="data directory")
    tok.add_argument("--store", required=True, help="store the till belongs to")
    tok.set_defaults(func=_enrol_token)


def _run(args: argparse.Namespace) -> int:
    from central.app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.data, args.host, args.port, args.port_file))
    return 0


def _enrol_token(args: argparse.Namespace) -> int:
    args.data.mkdir(parents=True, exist_ok=True)
    conn = db.connect(args.data / "central.db")
    try:
        print(tills.create_enrolment_token(conn, args.store, utcnow()))
    finally:
        conn.close()
    return 0
