"""One-shot faults on the printer's replies, applied where the reply frame is written."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReplyFaults:
    drop_next_reply: bool = False
    corrupt_next_reply: bool = False

    def tap(self, frame: bytes) -> bytes | None:
        """The bytes to put on the wire for ``frame``: None drops it, a flipped LRC corrupts it."""
        if self.drop_next_reply:
            self.drop_next_reply = False
            return None
        if self.corrupt_next_reply:
            self.corrupt_next_reply = False
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame

    def clear(self) -> None:
        self.drop_next_reply = False
        self.corrupt_next_reply = False
