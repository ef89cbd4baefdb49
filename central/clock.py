"""The central's one clock. Logic takes `now` as an argument; only the edges call this.

`TILLPOINT_CLOCK_OFFSET_FILE` names a file holding a number of seconds added to the
system clock (read at every call), as for the agent (agent.clock): tests of whole processes
move the store's time by writing it. Unset, it costs nothing.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

_OFFSET_FILE = os.environ.get("TILLPOINT_CLOCK_OFFSET_FILE")


def utcnow() -> datetime:
    now = datetime.now(UTC)
    if not _OFFSET_FILE:
        return now
    try:
        text = Path(_OFFSET_FILE).read_text().strip()
    except FileNotFoundError:
        return now
    try:
        return now + timedelta(seconds=float(text or 0))
    except ValueError:
        raise RuntimeError(f"TILLPOINT_CLOCK_OFFSET_FILE ({_OFFSET_FILE}) must hold a number"
                           f" of seconds, not {text[:40]!r}") from None


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
