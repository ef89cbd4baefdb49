"""Whether the customer is present at this checkout, which spending points needs.

An identification ties to the receipt that follows it: the card presented at the reader,
or a one-time code (from the customer's app, checked here offline; or sent by SMS through
the central while online) makes the customer present for this checkout, for at most
PRESENCE_TTL_S; the next receipt takes it, whoever it is for. A typed card number or a bare
`customer_id` identifies the customer to earn points, never to spend them.

Codes have attempt limits: WRONG_PER_CUSTOMER wrong codes for one customer, or
WRONG_PER_TILL for all, in WRONG_WINDOW_S, and the till refuses codes (429) until the window
lets the oldest go; an app code (its step) is taken once per customer at this till; the
central sees each proof in the journal and re-checks it (central.presence).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.card_lookup import SlidingWindow
from agent.central_client import CentralClient, CentralError
from protocol import app_codes
from protocol import presence as proofs
from protocol.card_keys import CardKeyring

PRESENCE_TTL_S = 300.0  # a presence proven is good for the checkout under way, not longer
WRONG_PER_CUSTOMER = 5
WRONG_PER_TILL = 20
WRONG_WINDOW_S = 600.0
MAX_TRACKED = 10_000  # customers whose wrong codes or used steps are remembered


class BoundedDict(OrderedDict[str, str]):
    """Forgets the oldest beyond MAX_TRACKED."""

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        while len(self) > MAX_TRACKED:
            self.popitem(last=False)


@dataclass(frozen=True)
class Present:
    customer_id: str
    proof: dict[str, Any]  # protocol.presence, journalled with the receipt
    at: float  # monotonic

    @property
    def method(self) -> str:
        return str(self.proof["method"])


class TooManyCodes(Exception):
    def __init__(self, retry_after: int, whose: str) -> None:
        super().__init__(f"too many wrong one-time codes {whose}: try again in"
                         f" {retry_after} s, or present the card at the reader")
        self.retry_after = retry_after


class CheckoutPresence:
    """The one presence this till's checkout holds, and the limits on codes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._current: Present | None = None
        self._wrong_till = SlidingWindow(WRONG_PER_TILL, WRONG_WINDOW_S, clock)
        self._wrong: OrderedDict[str, SlidingWindow] = OrderedDict()
        self._used_steps: OrderedDict[tuple[str, int], None] = OrderedDict()
        # customer -> the SMS challenge the central sent them, until a code settles it
        self.sms_sent: BoundedDict = BoundedDict()

    # -- holding one --------------------------------------------------------------------

    def shown(self, customer_id: str, proof: dict[str, Any]) -> Present:
        self._current = Present(customer_id, proofs.check(proof), self.clock())
        return self._current

    def forget(self) -> None:
        """A new identification replaces it; a receipt takes it."""
        self._current = None

    def of(self, customer_id: str | None) -> Present | None:
        """The presence this checkout holds for `customer_id`, if fresh."""
        p = self._current
        if p is None or customer_id is None or p.customer_id != customer_id:
            return None
        if self.clock() - p.at > PRESENCE_TTL_S:
            self._current = None
            return None
        return p

    # -- codes --------------------------------------------------------------------------

    def may_try(self, customer_id: str) -> None:
        """TooManyCodes if this customer, or this till, has had too many wrong codes."""
        wait = self._wrong_till.retry_after()
        if wait is not None:
            raise TooManyCodes(wait, "at this till")
        mine = self._wrong.get(customer_id)
        wait = mine.retry_after() if mine else None
        if wait is not None:
            raise TooManyCodes(wait, "for this customer")

    def wrong(self, customer_id: str) -> None:
        self._wrong_till.take()
        window = self._wrong.pop(customer_id, None) or SlidingWindow(
            WRONG_PER_CUSTOMER, WRONG_WINDOW_S, self.clock)
        window.take()
        self._wrong[customer_id] = window
        while len(self._wrong) > MAX_TRACKED:
            self._wrong.popitem(last=False)

    def app_code(self, ring: CardKeyring, customer_id: str, code: str,
                 now: datetime) -> dict[str, Any] | None:
        """The proof for a right app code not used here before, else None (the caller
        counts it wrong, unless it is the customer's SMS code)."""
        found = app_codes.verify(ring, customer_id, code, now)
        if found is None or (customer_id, found[1]) in self._used_steps:
            return None
        self._used_steps[(customer_id, found[1])] = None
        while len(self._used_steps) > MAX_TRACKED:
            self._used_steps.popitem(last=False)
        return proofs.app(found[0], found[1], code)


class SmsDesk:
    """SMS codes through the central (online only): it sends them and checks them."""

    def __init__(self, client: CentralClient) -> None:
        self.client = client

    async def send(self, customer_id: str) -> dict[str, Any]:
        """{"challenge", "expires_at"}; CentralError if the central refused or is away."""
        data, _ = await self.client.request(
            "POST", "/sync/v1/presence/sms", json.dumps({"customer_id": customer_id}).encode(),
            content_type="application/json")
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("challenge"), str):
            raise CentralError("the central's answer names no challenge", 502)
        return answer

    async def check(self, challenge: str, code: str) -> None:
        """Returns if right; CentralError 422 if wrong, 410 once void or expired."""
        await self.client.request("POST", "/sync/v1/presence/sms/check",
                                  json.dumps({"challenge": challenge, "code": code}).encode(),
                                  content_type="application/json")

    async def relink_card(self, challenge: str, token: str, key_version: int,
                          last4: str) -> None:
        """Link a card whose key retired to the customer who proved their phone with the
        SMS code of `challenge` (central.card_relink), which it uses up; CentralError with
        the central's reason otherwise."""
        await self.client.request(
            "POST", "/sync/v1/cards/relink",
            json.dumps({"challenge": challenge, "token": token, "key_version": key_version,
                        "last4": last4}).encode(),
            content_type="application/json")
