"""`tillpoint agent ...`: what store IT runs on a till."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

from agent import epochs, identity, journal
from agent import listening as pos_listening
from agent.config import DEFAULT_STATE, AgentConfig
from agent.pos_auth import PosSecretError, read_pos_secret, write_pos_secret
from agent.store import get_meta, open_store
from agent.sync import quarantine_of
from protocol.card_keys import CardKeyError


def build_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="the till agent (checkout, devices, sync)")
    asub = p.add_subparsers(dest="agent_cmd", required=True)

    def state_arg(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--state", type=Path, default=Path(DEFAULT_STATE),
                         help="state directory: database, keys, agent.toml (%(default)s)")

    enroll = asub.add_parser("enroll", help="create this till's key and enrol it once")
    state_arg(enroll)
    enroll.add_argument("--central", required=True, help="URL of the central")
    enroll.add_argument("--token", required=True, help="one-time enrolment token")
    enroll.add_argument("--name", default="till", help="a name head office will see")
    enroll.add_argument("--card-keys", type=Path,
                        help="file for the card keys, outside the state directory"
                             " (default: STATE-keys/card-keys)")
    enroll.add_argument("--ca", type=Path,
                        help="CA certificate (PEM) that signs the central's, if not a public CA")
    enroll.add_argument("--insecure", action="store_true",
                        help="allow plain http:// to a central off this machine (no card keys"
                             " are sent that way)")
    enroll.set_defaults(func=_enroll)

    run = asub.add_parser("run", help="run the till service")
    state_arg(run)
    run.add_argument("--printer", help="serial port of the fiscal printer")
    run.add_argument("--printer-baud", type=int, help="printer speed")
    run.add_argument("--points-mode", choices=["discount", "payment"],
                     help="redeemed points on the fiscal receipt")
    run.add_argument("--reader", help="serial port of the card reader")
    run.add_argument("--reader-kind", choices=["line", "rfid"], help="card reader kind")
    run.add_argument("--reader-suffix", choices=["cr", "lf", "crlf", "none"],
                     help="line reader's end of read")
    run.add_argument("--pos-port", type=int, help="port of the POS API on 127.0.0.1")
    run.add_argument("--port-file", type=Path, help="write the POS API port here when ready")
    run.add_argument("--sync-interval", type=float, help="seconds between pushes")
    run.add_argument("--pull-interval", type=float, help="seconds between pulls")
    run.add_argument("--metrics-port", type=int,
                     help="serve Prometheus metrics on 127.0.0.1 at this port (0: any free one)")
    run.add_argument("--max-backoff", type=float,
                     help="longest wait in seconds between sync attempts while the central"
                          " is unreachable")
    run.add_argument("--shift-close-at", help="close the shift with a Z report daily at HH:MM")
    run.add_argument("--tax-groups",
                     help="VAT rate to printer tax group, e.g. 22=1,10=2,0=3,none=4")
    run.add_argument("--vat-rate", help="one VAT rate for all the store's goods (22, 10, ...)")
    run.add_argument("--insecure", action="store_true", default=None,
                     help="allow plain http:// to a central off this machine")
    run.set_defaults(func=_run)

    status = asub.add_parser("status", help="show the till's state (devices, sync, journal)")
    state_arg(status)
    status.add_argument("--pos-port", type=int, help="POS API port of the running agent")
    status.set_defaults(func=_status)

    jr = asub.add_parser("journal", help="journal tools")
    jsub = jr.add_subparsers(dest="journal_cmd", required=True)
    verify = jsub.add_parser("verify", help="check the journal's sequence and hash chain")
    state_arg(verify)
    verify.set_defaults(func=_verify)

    shift = asub.add_parser("shift", help="fiscal shift")
    ssub = shift.add_subparsers(dest="shift_cmd", required=True)
    close = ssub.add_parser("close", help="close the shift with a Z report")
    state_arg(close)
    close.add_argument("--pos-port", type=int, help="POS API port of the running agent")
    close.set_defaults(func=_shift_close)

    secret = asub.add_parser("pos-secret", help="the secret the POS software proves itself with")
    psub = secret.add_subparsers(dest="pos_secret_cmd", required=True)
    rotate = psub.add_parser(
        "rotate", help="replace the POS secret (the running agent takes the new one at once)")
    state_arg(rotate)
    rotate.add_argument("--group", help="group that may read it: the POS software's"
                                        " (default: pos_group in agent.toml)")
    rotate.set_defaults(func=_pos_secret_rotate)


def _overrides(args: argparse.Namespace) -> dict:
    names = ("printer", "printer_baud", "points_mode", "reader", "reader_kind", "reader_suffix",
             "pos_port", "port_file", "metrics_port", "sync_interval", "pull_interval",
             "max_backoff", "shift_close_at", "tax_groups", "vat_rate", "insecure")
    return {n: getattr(args, n, None) for n in names}


def _enroll(args: argparse.Namespace) -> int:
    try:
        ident = asyncio.run(identity.enroll(
            args.state, args.central, args.token, args.name, card_keys_path=args.card_keys,
            central_ca=args.ca, insecure=args.insecure))
    except identity.EnrolmentFailed as e:
        print(f"enrolment failed: {e}", file=sys.stderr)
        return 1
    print(f"enrolled as {ident.till_id} (store {ident.store}); state in {args.state}")
    if not ident.card_keys_path.exists():
        print("no card keys received: the central sends them only over TLS; cards cannot be"
              " identified until it does", file=sys.stderr)
    cfg = AgentConfig.load(args.state, {})
    try:
        if not cfg.pos_secret_path.exists():
            write_pos_secret(cfg.pos_secret_path, cfg.pos_group)
        print(f"POS secret in {cfg.pos_secret_path}")
    except (OSError, PosSecretError) as e:
        print(f"POS secret not made ({e}): run `tillpoint agent pos-secret rotate`",
              file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.service import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = AgentConfig.load(args.state, _overrides(args))
        asyncio.run(serve(cfg))
    except (identity.NotEnrolled, identity.InsecureCentral, CardKeyError, PosSecretError) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def _pos_port(args: argparse.Namespace) -> int:
    """This till's POS port: `--pos-port`, else where its agent says it listens (the
    state directory's `pos-api.json`), else `agent.toml` or the default. Never simply the
    default first: on a machine with two agents that is the other one's."""
    if args.pos_port is not None:
        return int(args.pos_port)
    listening = pos_listening.port(args.state)
    if listening is not None:
        return listening
    return AgentConfig.load(args.state, {}).pos_port


def _own_till_id(state: Path) -> str | None:
    try:
        return identity.load(state).till_id
    except identity.NotEnrolled:
        return None


def _other_till(args: argparse.Namespace, answer: dict) -> str | None:
    """The till id of the agent that answered, when it is not this state directory's."""
    own = _own_till_id(args.state)
    theirs = answer.get("till_id")
    return theirs if own is not None and theirs != own else None


def _call(args: argparse.Namespace, path: str, method: str = "GET") -> dict:
    """This till's running agent's POS API, as the POS calls it: with the secret, JSON."""
    cfg = AgentConfig.load(args.state, {"pos_port": args.pos_port})
    secret = read_pos_secret(cfg.pos_secret_path)
    req = urllib.request.Request(
        f"http://127.0.0.1:{_pos_port(args)}{path}", method=method,
        data=b"{}" if method == "POST" else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _status(args: argparse.Namespace) -> int:
    out: dict = {"running": False}
    try:
        answer = _call(args, "/pos/v1/status")
    except urllib.error.HTTPError as e:
        if e.code != 401:
            print(f"the agent refused: {json.loads(e.read()).get('error')}", file=sys.stderr)
            return 1
        # Another till's agent (its own secret), or ours with a secret rotated since.
        answer = None
        out["pos_port"] = (f"{_pos_port(args)}: the agent there refused this till's POS secret"
                           " (another till's agent, or the secret was rotated)")
    except (urllib.error.URLError, OSError, ValueError, PosSecretError):
        answer = None
    if answer is not None:
        other = _other_till(args, answer)
        if other is None:
            print(json.dumps(answer, indent=2))
            return 0
        out["pos_port"] = f"{_pos_port(args)} is the POS port of another till's agent ({other})"
    # Not running: say what the files say.
    try:
        ident = identity.load(args.state)
        out.update(till_id=ident.till_id, store=ident.store, central=ident.central_url)
    except identity.NotEnrolled as e:
        out["enrolment"] = str(e)
    db_path = args.state / "agent.db"
    if db_path.exists():
        db = open_store(db_path)
        last_seq, _ = journal.last(db)
        acked = int(get_meta(db, "acked_seq", "0") or 0)
        out["journal"] = {"epoch": journal.epoch(db), "last_seq": last_seq,
                          "acked_seq": acked, "unsent": last_seq - acked,
                          **epochs.describe(db)}
        out["quarantine"] = quarantine_of(db)
        held = get_meta(db, "push_held")
        out["push_held"] = json.loads(held) if held else None
        revoked = get_meta(db, "revoked")
        out["enrolment"] = f"revoked: {revoked}" if revoked else out.get("enrolment", "active")
        db.close()
    print(json.dumps(out, indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    db_path = args.state / "agent.db"
    if not db_path.exists():
        print(f"no journal at {db_path}", file=sys.stderr)
        return 2
    db = open_store(db_path)
    report = journal.verify(db)
    db.close()
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1


def _shift_close(args: argparse.Namespace) -> int:
    try:
        # Never close another till's shift: ask who listens there first.
        other = _other_till(args, _call(args, "/pos/v1/status"))
        if other is not None:
            print(f"shift not closed: port {_pos_port(args)} is another till's agent ({other})",
                  file=sys.stderr)
            return 1
        result = _call(args, "/pos/v1/shift/close", "POST")
    except PosSecretError as e:
        print(f"shift not closed: {e}", file=sys.stderr)
        return 1
    except urllib.error.HTTPError as e:
        if e.code == 401:
            print(f"shift not closed: the agent on port {_pos_port(args)} refused this till's POS"
                  " secret (another till's agent, or the secret was rotated)", file=sys.stderr)
            return 1
        print(f"shift not closed: {json.loads(e.read()).get('error')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"agent not reachable: {e}", file=sys.stderr)
        return 1
    print(f"shift closed: Z report is fiscal document {result['z_report_document']}")
    return 0


def _pos_secret_rotate(args: argparse.Namespace) -> int:
    cfg = AgentConfig.load(args.state, {})
    group = args.group or cfg.pos_group
    try:
        write_pos_secret(cfg.pos_secret_path, group)
    except (OSError, PosSecretError) as e:
        print(f"POS secret not rotated: {e}", file=sys.stderr)
        return 1
    # The secret itself is never printed: the POS software reads the file.
    print(f"new POS secret in {cfg.pos_secret_path}"
          + (f" (group {group}, mode 0640)" if group else " (mode 0640)"))
    return 0
