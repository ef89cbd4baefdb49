"""Cross-offers: a purchase that earns an offer for the next one (cosmetics buyers get bonus
points on perfume next time).

The till's rules grant the offer (`offers_granted` of a settlement) and name the offers a
receipt used (`offers_used`). The central keeps each customer's granted offers with their
expiry and sends the live ones to tills along with the offers head office activated. A
granted offer is good for one purchase: once a receipt used it, it is marked used (kept, so
the re-pricing check still finds that the central gave it). Offers head office activated
stay until head office says otherwise.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from central.clock import parse_iso
from central.db import Connection


class OfferChanges:
    """Grants and uses gathered from a run of journal entries, applied in journal order."""

    def __init__(self) -> None:
        self._events: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)

    def follow(self, customer_id: str, settled: dict[str, Any]) -> None:
        events = self._events[customer_id]
        # Used before granted: a receipt that uses an offer may earn a new one.
        events.extend(("use", str(o), None) for o in settled.get("offers_used", ()))
        events.extend(("grant", str(g["offer"]), str(g["expires_at"]))
                      for g in settled.get("offers_granted", ()))
        if not events:
            del self._events[customer_id]

    def customers(self) -> set[str]:
        return set(self._events)

    def apply(self, conn: Connection) -> None:
        for customer_id, events in self._events.items():
            row = conn.execute("SELECT granted_offers FROM customers WHERE id = ?",
                               (customer_id,)).fetchone()
            if row is None:
                continue  # ingest raised the unknown-customer alert already
            granted = json.loads(row[0])
            for kind, offer, expires in events:
                if kind == "grant":
                    granted[offer] = {"expires": expires, "used": False}
                elif offer in granted:
                    granted[offer]["used"] = True
            conn.execute("UPDATE customers SET granted_offers = ? WHERE id = ?",
                         (json.dumps(granted, sort_keys=True), customer_id))


def live(granted_json: str, now: datetime) -> set[str]:
    """Granted offers a till may apply now: not used, not expired."""
    return {offer for offer, g in json.loads(granted_json).items()
            if not g["used"] and parse_iso(g["expires"]) > now}


def ever_granted(granted_json: str) -> set[str]:
    return set(json.loads(granted_json))
