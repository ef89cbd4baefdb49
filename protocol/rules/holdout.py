"""Control groups: who a campaign holds out, decided alike at every till and at the central.

A campaign may hold out a share of its audience (`holdout`, basis points here) so head
office can measure what it adds (central.campaign_roi). Who is held out must not depend on
where the receipt is priced, on the order of sales, or on anything the till cannot see
offline: it is a hash of the rule set's salt, the campaign id and the customer id, read as
a number in [0, 10000) and compared with the share. The same customer stays in (or out of)
the same campaign for as long as the salt stays, across receipts, tills and rule-set
versions; a new salt draws new groups. Anonymous receipts have no customer and are never
held out.
"""

from __future__ import annotations

import hashlib

BP = 10_000


def holdout_point(salt: str, campaign_id: str, customer_id: str) -> int:
    """Where (salt, campaign, customer) falls in [0, 10000): uniform over customers."""
    # Length-prefixed parts, so ("a", "bc") and ("ab", "c") never hash alike.
    h = hashlib.sha256()
    for part in (salt, campaign_id, customer_id):
        b = part.encode()
        h.update(len(b).to_bytes(4, "big"))
        h.update(b)
    # 64 bits mod 10,000: the bias is below 1e-15, far under any share one can declare.
    return int.from_bytes(h.digest()[:8], "big") % BP


def held_out(salt: str, campaign_id: str, customer_id: str | None, share_bp: int) -> bool:
    """Whether the customer is in the campaign's control group (never without a customer)."""
    if not customer_id or share_bp <= 0:
        return False
    return holdout_point(salt, campaign_id, customer_id) < share_bp
