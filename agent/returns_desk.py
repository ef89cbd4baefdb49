"""The central as a return sees it: the sale, what of it is back, and a lease on the return.

While online, every return asks the central first, even of this till's own sales (another
till may have taken part of it back); offline, a till takes returns of its own sales only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from agent import journal
from agent.central_client import CentralClient, CentralError
from agent.sync import SyncClient

log = logging.getLogger(__name__)

RESERVE_TIMEOUT_S = 3.0  # the cashier is waiting: an unreachable central means offline


class ReturnsDesk:
    def __init__(self, client: CentralClient, sync: SyncClient) -> None:
        self.client = client
        self.sync = sync

    async def reserve(self, receipt_id: str, lines: dict[int, int]) -> dict[str, Any]:
        """The central's answer (sale, returned, lease); raises CentralError."""
        if self.sync.acked_seq() < _last_seq(self.sync) and not self.sync.backing_off():
            # This till's own returns must be at the central before it counts what is back.
            with contextlib.suppress(CentralError):
                await self.sync.push()
        body = json.dumps({"receipt_id": receipt_id,
                           "lines": {str(k): v for k, v in lines.items()}}).encode()
        data, _ = await self.client.request("POST", "/sync/v1/returns/reserve", body,
                                            content_type="application/json",
                                            timeout_s=RESERVE_TIMEOUT_S)
        return json.loads(data)

    async def release(self, lease: str) -> None:
        """Best effort: a lease the central does not hear of times out by itself."""
        try:
            await self.client.request("POST", "/sync/v1/returns/release",
                                      json.dumps({"lease": lease}).encode(),
                                      content_type="application/json",
                                      timeout_s=RESERVE_TIMEOUT_S)
        except CentralError as e:
            log.warning("return lease %s not released now (it times out): %s", lease, e)


def _last_seq(sync: SyncClient) -> int:
    return journal.last(sync.db)[0]
