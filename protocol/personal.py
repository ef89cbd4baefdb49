"""Personal values in journal entries, and cutting them out of an entry's bytes.

Tills of earlier versions journalled the customer's full birthday in a sale's detail (today's
entries carry only what pricing used: protocol.rules.birthdays). Both ends keep such an entry
redacted once it is safe to: the central at ingest, with the signed bytes sealed under the
customer's key (central.journal_personal); the till once the central has acknowledged it
(agent.journal.redact_acknowledged), since until then it may have to send the bytes again.
A redacted entry keeps its hash and prev_hash: its content no longer gives its hash, but its
links still verify. One place for the rule, so that both ends cut out the same values.
"""

from __future__ import annotations

from typing import Any

from protocol.wire import InvalidMessage, pack, unpack

# Keys of an entry's body whose values identify a person. Segments and tier stay: pricing
# used them, re-pricing reads them from the journal, and they name no one once erasure has
# cut the id from the person (central.personal_data).
PERSONAL = frozenset({"birthday"})
# The msgpack of the key "birthday": an entry whose bytes hold it only followed by nil (every
# entry of today's tills) holds nothing personal, and is neither decoded nor rewritten.
PERSONAL_KEY = b"\xa8birthday"


def may_carry_personal(raw: bytes) -> bool:
    """Whether the entry's bytes may hold a personal value (a cheap test on the bytes: a
    product named "birthday" makes it decode the entry for nothing, no more)."""
    at = raw.find(PERSONAL_KEY)
    while at != -1:
        at += len(PERSONAL_KEY)
        if raw[at:at + 1] != b"\xc0":  # not nil
            return True
        at = raw.find(PERSONAL_KEY, at)
    return False


def _redacted(value: Any) -> tuple[Any, bool]:
    if isinstance(value, dict):
        changed = False
        out = {}
        for k, v in value.items():
            if k in PERSONAL and v is not None:
                out[k], changed = None, True
            else:
                out[k], inner = _redacted(v)
                changed |= inner
        return out, changed
    if isinstance(value, list):
        items = [_redacted(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    return value, False


class Unredactable(ValueError):
    """An entry whose personal value cannot be cut out: its body does not decode, or does
    not encode again (a float, keys of two types, nesting past Python's stack). No till
    writes one; ingest refuses it as an entry that does not fit the journal's schema,
    rather than store the value in clear or fail the batch on every resend."""


def redact(raw: bytes) -> bytes | None:
    """The entry's bytes with every personal value made nil; None if it holds none.
    Raises Unredactable."""
    try:
        body, changed = _redacted(unpack(raw))
        return pack(body) if changed else None
    except (InvalidMessage, TypeError, ValueError, RecursionError) as e:
        raise Unredactable(f"its personal values cannot be cut out: {type(e).__name__}"
                           ) from None


