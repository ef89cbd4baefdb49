"""Command line: ``python -m hardware_sim --dir DIR`` (``tillpoint sim run`` maps here)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from hardware_sim.card_reader import SUFFIXES, ReaderConfig
from hardware_sim.runner import AlreadyRunning, run
from hardware_sim.shtrih_frames import LINE_WIDTHS
from hardware_sim.simulator import SimOptions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hardware_sim",
        description=(
            "Simulated Shtrih-M fiscal printer and card reader on pseudo-terminals, "
            "at DIR/printer and DIR/reader, with a control HTTP API on 127.0.0.1."
        ),
    )
    parser.add_argument(
        "--dir",
        required=True,
        type=Path,
        help="directory for the port symlinks, control.json, printer-state.json and paper/",
    )
    parser.add_argument(
        "--reader",
        choices=("line", "rfid"),
        default="line",
        help="reader kind: line (track 2, barcodes) or rfid (EM4100 STX/ETX); default line",
    )
    parser.add_argument(
        "--reader-suffix",
        choices=tuple(SUFFIXES),
        default="cr",
        help="what ends a line read; default cr",
    )
    parser.add_argument(
        "--reader-stx", action="store_true", help="wrap each line read in STX ... ETX"
    )
    parser.add_argument(
        "--reader-aim", default="", metavar="PREFIX", help="AIM symbology prefix, e.g. ]E0"
    )
    parser.add_argument(
        "--line-width",
        type=int,
        choices=LINE_WIDTHS,
        default=48,
        help="printer line width in characters; default 48",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=0,
        metavar="N",
        help="control HTTP port on 127.0.0.1; default 0 picks a free port (see control.json)",
    )
    parser.add_argument(
        "--tills",
        type=int,
        default=1,
        metavar="K",
        help="devices for K tills: each in DIR/till-N with its own control port (default 1:"
        " the devices in DIR itself)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug details")
    return parser


def options_from_args(args: argparse.Namespace) -> SimOptions:
    reader = ReaderConfig(
        kind=args.reader, suffix=args.reader_suffix, stx_etx=args.reader_stx, aim=args.reader_aim
    )
    return SimOptions(
        directory=args.dir.resolve(),
        reader=reader,
        line_width=args.line_width,
        control_port=args.control_port,
    )


async def _run_many(options: SimOptions, tills: int) -> None:
    """One simulator per till, in one process; a signal stops them all together."""
    stop = asyncio.Event()
    await asyncio.gather(
        *(
            run(replace(options, directory=options.directory / f"till-{n}"), stop)
            for n in range(1, tills + 1)
        )
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.reader_aim.isascii():
        build_parser().error("--reader-aim must be ASCII")
    if not 1 <= args.tills <= 64:
        build_parser().error("--tills must be between 1 and 64")
    if args.tills > 1 and args.control_port:
        build_parser().error("--control-port 0 is the only choice with --tills above 1")
    options = options_from_args(args)
    try:
        if args.tills == 1:
            asyncio.run(run(options))
        else:
            asyncio.run(_run_many(options, args.tills))
    except (AlreadyRunning, OSError) as error:
        # A taken control port or an unwritable --dir: say so in one line, not a traceback.
        logging.getLogger("hardware_sim").error("%s", error)
        return 1
    return 0
