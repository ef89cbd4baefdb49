"""The `tillpoint` command: one entry point, a sub-command per part."""

from __future__ import annotations

import argparse
import sys

from agent import cli as agent_cli
from central import cli as central_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tillpoint", description="Loyalty-programme processing for retail chains.")
    sub = parser.add_subparsers(dest="command", required=True)
    central_cli.build_parser(sub)
    agent_cli.build_parser(sub)

    sim = sub.add_parser("sim", help="simulated devices on pseudo-terminals (for demos, tests)")
    simsub = sim.add_subparsers(dest="sim_cmd", required=True)
    # Handled in main(): everything after `sim run` goes to the simulator's own parser.
    simsub.add_parser("run", help="start a printer and a card reader (see --help there)")

    from tillpoint import demo

    demo.build_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["sim", "run"]:
        # The simulator has its own options (and imports nothing of ours): hand it the rest.
        from hardware_sim.cli import main as sim_main

        return sim_main(argv[2:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
