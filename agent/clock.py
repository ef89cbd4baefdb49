"""The agent's one clock. Logic takes `now` as an argument; only the edges call this.

`TILLPOINT_CLOCK_OFFSET_FILE` names a file holding a number of seconds added to the
system clock (read at every call): tests that run whole processes move a store days ahead
by writing it, without sleeping and without touching the machine's clock. Unset, it costs
nothing. The central reads the same variable (central.clock), so both move together.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

_OFFSET_FILE = os.environ.get("TILLPOINT_CLOCK_OFFSET_FILE")


def _offset() -> timedelta:
    if not _OFFSET_FILE:
        return timedelta(0)
    try:
        text = Path(_OFFSET_FILE).read_text().strip()
    except FileNotFoundError:
        return timedelta(0)
    return timedelta(seconds=_seconds(text))


def _seconds(text: str) -> float:
    try:
        return float(text or 0)
    except ValueError:
        raise RuntimeError(f"TILLPOINT_CLOCK_OFFSET_FILE ({_OFFSET_FILE}) must hold a number"
                           f" of seconds, not {text[:40]!r}") from None


def utcnow() -> datetime:
    return datetime.now(UTC) + _offset()


def unix_now() -> int:
    return int(utcnow().timestamp())
