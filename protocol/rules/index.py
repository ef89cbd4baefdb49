"""Which campaigns a receipt can possibly trigger, without scanning all of them.

Each campaign is filed under one key that any receipt it applies to must present: a SKU, a
category (a receipt presents every prefix of its lines' categories), a brand, an activated
offer, a customer segment, a store; campaigns with none of these are always-on. The most
selective key wins, so a 10,000-campaign rule set yields a few dozen candidates per receipt.
Candidates are then checked in full; the index only ever over-approximates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.rules.model import Campaign


class CampaignIndex:
    def __init__(self, campaigns: Sequence[Campaign]) -> None:
        self.by_sku: dict[str, list[int]] = defaultdict(list)
        self.by_category: dict[str, list[int]] = defaultdict(list)
        self.by_brand: dict[str, list[int]] = defaultdict(list)
        self.by_offer: dict[str, list[int]] = defaultdict(list)
        self.by_segment: dict[str, list[int]] = defaultdict(list)
        self.by_store: dict[str, list[int]] = defaultdict(list)
        self.always: list[int] = []
        # filed under their own line selector: only the lines that hit the key can match
        self.line_keyed: set[int] = set()
        for pos, c in enumerate(campaigns):
            self._file(pos, c)
        # plain dicts from here on: a lookup of an absent key must not grow the index
        for name in ("by_sku", "by_category", "by_brand", "by_offer", "by_segment", "by_store"):
            setattr(self, name, dict(getattr(self, name)))

    def _file(self, pos: int, c: Campaign) -> None:
        sel = c.lines
        req = c.when.requires[0] if c.when.requires else None
        for keys, table, own in (
            (sel.skus, self.by_sku, True),
            (req.skus if req else (), self.by_sku, False),
            (c.when.offers and (min(c.when.offers),), self.by_offer, False),
            (sel.categories, self.by_category, True),
            (req.categories if req else (), self.by_category, False),
            (sel.brands, self.by_brand, True),
            (req.brands if req else (), self.by_brand, False),
            (c.when.segments_all and (min(c.when.segments_all),), self.by_segment, False),
            (c.when.segments, self.by_segment, False),
            (c.when.stores, self.by_store, False),
        ):
            if keys:
                for k in keys:
                    table[k].append(pos)
                if own:
                    self.line_keyed.add(pos)
                return
        self.always.append(pos)

    def candidates(
        self, lines: Iterable[tuple[int, str, frozenset[str], str]], offers: Iterable[str],
        segments: Iterable[str], store: str,
    ) -> list[tuple[int, list[int] | None]]:
        """(position, trigger lines) of the campaigns this receipt might trigger, in
        evaluation order. `lines` gives (index, sku, category prefixes, brand) per line.
        Trigger lines are the only lines a line-keyed campaign can match; None means any."""
        found: dict[int, list[int] | None] = dict.fromkeys(self.always)
        keyed = self.line_keyed
        for idx, sku, prefixes, brand in lines:
            hits = [self.by_sku.get(sku), self.by_brand.get(brand)]
            hits += [self.by_category.get(p) for p in prefixes]
            for hit in hits:
                for pos in hit or ():
                    if pos in keyed:
                        trig = found.get(pos)
                        if trig is None:
                            found[pos] = [idx]
                        elif trig[-1] != idx:
                            trig.append(idx)
                    else:
                        found[pos] = None
        for table, keys in (
            (self.by_offer, offers), (self.by_segment, segments), (self.by_store, (store,)),
        ):
            for k in keys:
                for pos in table.get(k) or ():
                    found[pos] = None
        return sorted(found.items())

    def stats(self) -> dict[str, int]:
        return {
            "sku_keys": len(self.by_sku), "category_keys": len(self.by_category),
            "brand_keys": len(self.by_brand), "offer_keys": len(self.by_offer),
            "segment_keys": len(self.by_segment), "store_keys": len(self.by_store),
            "always_on": len(self.always),
        }
