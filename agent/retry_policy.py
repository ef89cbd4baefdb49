"""How long the sync client waits after a failed attempt while the central is away.

The wait doubles per failure up to a cap and is jittered, so that when the central comes back
after an outage a chain's tills neither sit out a long backoff (the cap bounds how late a till
notices) nor arrive in the same instant (the jitter spreads them over the cap). A
`Retry-After` from the central (an overloaded or failing-over central answers 503 with one)
is honoured, within a limit, so a confused central cannot park its tills for hours.
"""

from __future__ import annotations

import random

FIRST_WAIT_S = 0.5
DEFAULT_CAP_S = 10.0
RETRY_AFTER_LIMIT_S = 120.0


def next_wait(failures: int, cap_s: float, rng: random.Random,
              retry_after_s: float | None = None) -> float:
    """Seconds to wait after the `failures`-th failure in a row (failures >= 1).

    "Equal jitter": half the doubled wait is fixed, the other half random, so a failing link
    is never hammered (at least half the ceiling passes) and tills spread over the rest.
    """
    ceiling = min(cap_s, FIRST_WAIT_S * 2 ** min(failures, 16))
    wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after_s is not None:
        wait = max(wait, min(float(retry_after_s), RETRY_AFTER_LIMIT_S))
    return wait
