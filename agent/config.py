"""The agent's settings: `agent.toml` in the state directory, overridden by the command line."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from protocol import vat
from protocol.cards import check_loyalty_ranges

# The spec's example table; a store whose device is set up otherwise says so in agent.toml.
DEFAULT_TAX_GROUPS = {"22": 1, "10": 2, "0": 3, "none": 4}

# systemd lists every StateDirectory= (the card keys have one of their own): the first is ours
DEFAULT_STATE = os.environ.get("STATE_DIRECTORY", "/var/lib/tillpoint-agent").split(":")[0]


@dataclass
class AgentConfig:
    state: Path = Path(DEFAULT_STATE)
    printer: str = "/dev/ttyS0"
    printer_baud: int = 115200
    points_mode: str = "discount"  # how redeemed points show on the fiscal receipt
    reader: str = "/dev/ttyUSB0"
    reader_kind: str = "line"
    reader_suffix: str = "cr"
    # the programme's own card-number prefixes: loyalty cards even inside a payment scheme's
    # range (a card there is otherwise taken for a bank card)
    loyalty_card_ranges: tuple[str, ...] = ()
    pos_host: str = "127.0.0.1"
    pos_port: int = 8700
    # The POS API's shared secret (agent.pos_auth): by default in the state directory; in
    # production /etc/tillpoint/pos-secret, group-readable by `pos_group`.
    pos_secret: Path | None = None
    pos_group: str | None = None
    port_file: Path | None = None
    # Prometheus metrics on 127.0.0.1 (agent.metrics); None: not served, 0: any free port
    metrics_port: int | None = None
    sync_interval: float = 5.0  # seconds between pushes when nothing wakes the client
    pull_interval: float = 30.0  # seconds between rule-set and customer pulls
    # longest wait between attempts while the central is away (agent.retry_policy)
    max_backoff: float = 10.0
    shift_close_at: str | None = None  # "HH:MM" local time for the daily Z report
    # VAT rate -> tax group 1..4 of the printer (its own tables say which group is which)
    tax_groups: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TAX_GROUPS))
    vat_rate: str | None = None  # one rate for all the store's goods, if it declares one
    insecure: bool = False  # allow plain http:// to a central off this machine

    @classmethod
    def load(cls, state: Path, overrides: dict[str, Any]) -> AgentConfig:
        values: dict[str, Any] = {}
        path = state / "agent.toml"
        if path.exists():
            values.update(tomllib.loads(path.read_text()))
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["state"] = state
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        cfg = cls(**values)
        if cfg.shift_close_at is not None:
            hour, _, minute = cfg.shift_close_at.partition(":")
            if not (hour.isdigit() and minute.isdigit() and int(hour) < 24
                    and int(minute) < 60):
                raise ValueError("shift_close_at must be HH:MM, e.g. 23:55")
        _check_vat(cfg)
        _check_intervals(cfg)
        if cfg.metrics_port is not None and (
                isinstance(cfg.metrics_port, bool) or not isinstance(cfg.metrics_port, int)
                or not 0 <= cfg.metrics_port <= 65535):
            raise ValueError(f"metrics_port must be a port number, not {cfg.metrics_port!r}")
        cfg.loyalty_card_ranges = check_loyalty_ranges(cfg.loyalty_card_ranges)
        cfg.state = Path(cfg.state)
        if cfg.port_file is not None:
            cfg.port_file = Path(cfg.port_file)
        cfg.pos_secret = Path(cfg.pos_secret) if cfg.pos_secret else cfg.state / "pos-secret"
        return cfg

    @property
    def pos_secret_path(self) -> Path:
        return self.pos_secret or self.state / "pos-secret"


# Sync timings, in seconds: a zero or negative interval would spin against the central; a
# backoff cap of hours would leave a till silent long after the central came back.
INTERVAL_BOUNDS_S = {"sync_interval": (0.05, 3600.0), "pull_interval": (0.05, 86400.0),
                     "max_backoff": (0.5, 600.0)}


def _check_intervals(cfg: AgentConfig) -> None:
    for name, (low, high) in INTERVAL_BOUNDS_S.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not low <= value <= high:
            raise ValueError(f"{name} must be a number of seconds from {low:g} to {high:g},"
                             f" not {value!r}")


def _check_vat(cfg: AgentConfig) -> None:
    """tax_groups as a table or, from the command line, "22=1,10=2"; vat_rate one rate."""
    raw: Any = cfg.tax_groups
    if isinstance(raw, str):
        pairs = [p.partition("=") for p in raw.split(",") if p.strip()]
        if any(not sep or not g.strip().isdigit() for _, sep, g in pairs):
            raise ValueError("tax_groups must be RATE=GROUP pairs, e.g. 22=1,10=2,0=3,none=4")
        raw = {r.strip(): int(g) for r, _, g in pairs}
    try:
        cfg.tax_groups = vat.parse_tax_groups(raw, "tax_groups")
        if cfg.vat_rate is not None:
            cfg.vat_rate = vat.parse_rate(cfg.vat_rate, "vat_rate")
    except vat.VatError as e:
        raise ValueError(str(e)) from None
    if cfg.vat_rate is not None and cfg.vat_rate not in cfg.tax_groups:
        raise ValueError(f"vat_rate {cfg.vat_rate} has no tax group in tax_groups")
