"""How long the event loop was kept from running: the longest the POS API made anyone wait
on this till's own account, measured by the agent itself (`status.loop`)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

INTERVAL_S = 0.01
STALL_MS = 20.0  # a wait longer than this is kept in the list of recent stalls


class LoopWatch:
    def __init__(self) -> None:
        self.longest_ms = 0.0
        # (monotonic time the loop ran again, milliseconds it was held): kept for the
        # status, so that a benchmark or store IT can tell when the stalls happened.
        self.stalls: deque[tuple[float, float]] = deque(maxlen=200)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(INTERVAL_S)
            held_ms = (loop.time() - before - INTERVAL_S) * 1000
            if held_ms > self.longest_ms:
                self.longest_ms = held_ms
            if held_ms > STALL_MS:
                self.stalls.append((round(time.monotonic(), 3), round(held_ms, 1)))

    def to_dict(self) -> dict[str, Any]:
        return {"longest_stall_ms": round(self.longest_ms, 1),
                "stalls": [list(s) for s in self.stalls]}
