"""The till's card keys: received from the central, kept outside the state directory.

The till needs the keys to turn a presented card into its tokens (one per key version,
newest first). They arrive with enrolment (over TLS or the loopback only) and with every
pull (`GET /sync/v1/card-keys`, signed by the central), and live in a key file of their own
(`card_keys` in till.json, by default `<state>-keys/card-keys`), never beside the database.
"""

from __future__ import annotations

import logging
from pathlib import Path

from protocol.card_keys import CardKeyring, check_outside, read_ring, write_ring

log = logging.getLogger(__name__)


def default_path(state_dir: Path) -> Path:
    return state_dir.parent / f"{state_dir.name}-keys" / "card-keys"


class TillCardKeys:
    """The ring in use, swapped in one step when a pull brings another."""

    def __init__(self, path: Path, state_dir: Path) -> None:
        check_outside(path, state_dir, "the state directory")
        self.path = path
        self.ring = read_ring(path) if path.exists() else CardKeyring()

    def tokens(self, number: str) -> list[tuple[int, str]]:
        """The card's token under each key, newest first; none before the first key came."""
        return self.ring.tokens(number)

    @property
    def versions(self) -> list[int]:
        return self.ring.versions

    def replace(self, ring: CardKeyring) -> bool:
        """Keep `ring` (file first, then memory); False if it is what we have."""
        if ring.to_dict() == self.ring.to_dict():
            return False
        write_ring(self.path, ring)
        self.ring = ring
        log.info("card keys now versions %s", ring.versions)
        return True


__all__ = ["TillCardKeys", "default_path"]
