"""Named points where a test can have the agent killed, to prove crash safety on real processes.

`TILLPOINT_FAILPOINTS=after_print` makes the agent SIGKILL itself the first time it reaches
that point: no cleanup, no flush, exactly like a power cut. Unset, a failpoint costs a dict
lookup and does nothing.
"""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(filter(None, os.environ.get("TILLPOINT_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
