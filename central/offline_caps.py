"""Offline caps of the programme: how much a till may let customers spend on its own word.

A till prices from the central's last balances plus its own unsynced entries, so two tills
can both spend the same points before either has synced. The caps bound that exposure; what
still gets through is settled in the ledger as debt (central.settlement). Head office sets
them; tills receive them with every customer delta. None means no limit of that kind.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from central.clock import iso
from central.db import Connection
from protocol import bounds


class CapsError(ValueError):
    pass


@dataclass(frozen=True)
class OfflineCaps:
    redeem_per_receipt: int | None = 5_000
    redeem_per_card_day: int | None = 10_000
    till_outstanding: int | None = 50_000  # points redeemed at a till and not yet synced
    max_offline_s: int | None = 72 * 3600  # since the till last reached the central

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OfflineCaps:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise CapsError(f"unknown caps: {', '.join(sorted(unknown))}")
        for k, v in d.items():
            # Bounded like every number that enters: it must fit the column and a double.
            if v is not None and not bounds.COUNTER.holds(v):
                raise CapsError(f"cap {k!r} must be an integer from 0 to {bounds.MAX_COUNTER}"
                                " or null")
        return cls(**{**asdict(cls()), **d})


def current(conn: Connection) -> OfflineCaps:
    row = conn.execute("SELECT * FROM offline_caps WHERE id = 1").fetchone()
    if row is None:
        return OfflineCaps()
    return OfflineCaps(**{f.name: row[f.name] for f in fields(OfflineCaps)})


def set_caps(conn: Connection, caps: OfflineCaps, actor: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO offline_caps (id, redeem_per_receipt, redeem_per_card_day,"
        " till_outstanding, max_offline_s, updated_at, actor) VALUES (1, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET redeem_per_receipt = excluded.redeem_per_receipt,"
        " redeem_per_card_day = excluded.redeem_per_card_day,"
        " till_outstanding = excluded.till_outstanding, max_offline_s = excluded.max_offline_s,"
        " updated_at = excluded.updated_at, actor = excluded.actor",
        (caps.redeem_per_receipt, caps.redeem_per_card_day, caps.till_outstanding,
         caps.max_offline_s, iso(now), actor),
    )
