"""The agent's settings: `agent.toml` in the state directory, overridden by the command line."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_STATE = os.environ.get("STATE_DIRECTORY", "/var/lib/tillpoint-agent")


@dataclass
class AgentConfig:
    state: Path = Path(DEFAULT_STATE)
    printer: str = "/dev/ttyS0"
    printer_baud: int = 115200
    points_mode: str = "discount"  # how redeemed points show on the fiscal receipt
    reader: str = "/dev/ttyUSB0"
    reader_kind: str = "line"
    reader_suffix: str = "cr"
    pos_host: str = "127.0.0.1"
    pos_port: int = 8700
    port_file: Path | None = None
    sync_interval: float = 5.0  # seconds between pushes when nothing wakes the client
    pull_interval: float = 30.0  # seconds between rule-set and customer pulls
    max_backoff: float = 60.0  # longest wait between attempts while the central is away
    shift_close_at: str | None = None  # "HH:MM" local time for the daily Z report

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
        cfg.state = Path(cfg.state)
        if cfg.port_file is not None:
            cfg.port_file = Path(cfg.port_file)
        return cfg
