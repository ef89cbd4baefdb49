"""Where this till's agent listens for the POS, kept in its state directory.

The agent writes `pos-api.json` once its POS API is up and removes it when it stops, so that
`tillpoint agent status --state DIR` asks this till's own agent, whatever port it was given,
and not whichever agent listens on the default port. A file left by a killed agent may name a
port another agent took since: readers check the till id in the answer.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

FILE = "pos-api.json"


def write(state: Path, host: str, port: int, till_id: str,
          metrics_port: int | None = None) -> None:
    path = state / FILE
    tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"host": host, "port": port, "till_id": till_id,
                               "pid": os.getpid(), "metrics_port": metrics_port}))
    tmp.replace(path)


def port(state: Path) -> int | None:
    try:
        value = json.loads((state / FILE).read_text()).get("port")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def remove(state: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state / FILE).unlink()
