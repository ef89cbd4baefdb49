"""Why the receipt came out as it did, in words a cashier can read out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ExplainEntry:
    campaign: str
    name: str
    applied: bool
    reason: str  # for an applied campaign what it gave, otherwise why it did not apply
    code: str = ""  # machine-readable kind of miss: group, stop, budget, basket, excluded, ...
    points: int = 0
    unit: str = ""
    discount: int = 0  # kopecks

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign, "name": self.name, "applied": self.applied,
            "reason": self.reason, "code": self.code, "points": self.points, "unit": self.unit,
            "discount": self.discount,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExplainEntry:
        return cls(
            campaign=d["campaign"], name=d["name"], applied=d["applied"], reason=d["reason"],
            code=d.get("code", ""), points=d.get("points", 0), unit=d.get("unit", ""),
            discount=d.get("discount", 0),
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    entries: tuple[ExplainEntry, ...] = ()
    excluded: tuple[tuple[int, str], ...] = ()  # (line index, why it is outside the programme)
    redeem: str = ""

    @property
    def applied(self) -> tuple[ExplainEntry, ...]:
        return tuple(e for e in self.entries if e.applied)

    @property
    def not_applied(self) -> tuple[ExplainEntry, ...]:
        return tuple(e for e in self.entries if not e.applied)

    def find(self, campaign: str) -> ExplainEntry | None:
        for e in self.entries:
            if e.campaign == campaign:
                return e
        return None

    def text(self) -> list[str]:
        """Lines for the cashier's screen."""
        out = [f"+ {e.name}: {e.reason}" for e in self.applied]
        out += [f"- {e.name}: {e.reason}" for e in self.not_applied]
        out += [f"  line {i + 1} outside the programme ({why})" for i, why in self.excluded]
        if self.redeem:
            out.append(f"  points: {self.redeem}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": [e.to_dict() for e in self.entries],
            "excluded": [[i, why] for i, why in self.excluded],
            "redeem": self.redeem,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Explanation:
        return cls(
            entries=tuple(ExplainEntry.from_dict(e) for e in d.get("entries", ())),
            excluded=tuple((int(i), str(why)) for i, why in d.get("excluded", ())),
            redeem=d.get("redeem", ""),
        )
