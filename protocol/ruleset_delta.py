"""A rule set sent as what changed since a version the till holds, signed by the central.

A new version usually changes a few of thousands of campaigns, so instead of the whole
document (2 MB at 10,000 campaigns) the central may send: the new document without its
campaigns (`rest`), the campaigns the base version did not carry in the same bytes
(`changed`, each encoded), and the new list as `layout`: for each campaign in order, its
index in the base document's list (n >= 0) or in `changed` (-1 - n). With it comes the
SHA-256 of the whole new document as the central would have sent it (canonical msgpack,
protocol.wire), signed with the rest: the till rebuilds the document from its copy of the
base and accepts it only if the hash matches, so what it prices with is byte for byte the
document it would have verified whole. Anything else (no such base, another hash) and the
till asks for the whole document.

Pure: bytes in, bytes out; no I/O.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.signing import sign, verify
from protocol.wire import InvalidMessage, pack, require, unpack, unpack_in_steps

KIND = "ruleset-delta"
# The answer's content type says which of the two it is, so a till never decodes a whole
# document to find out; the signed body says so too (`kind`).
CONTENT_TYPE = "application/vnd.tillpoint.ruleset-delta+msgpack"
CAMPAIGNS = "campaigns"


class DeltaMismatch(ValueError):
    """The delta does not rebuild the signed document from the base this till holds."""


@dataclass(frozen=True)
class RuleSetDelta:
    base: int
    version: int
    activates_at: str
    rest: dict[str, Any]  # the new document without "campaigns"
    changed: list[bytes]  # encoded campaigns
    layout: list[int]
    doc_hash: str  # hex SHA-256 of the whole new document, packed


def doc_hash(packed_doc: bytes) -> str:
    return hashlib.sha256(packed_doc).hexdigest()


def make(base_doc: Mapping[str, Any], doc: Mapping[str, Any], base: int, version: int,
         activates_at: str) -> RuleSetDelta:
    """What turns `base_doc` (version `base`) into `doc` (version `version`)."""
    at_base: dict[bytes, int] = {}
    for i, c in enumerate(base_doc.get(CAMPAIGNS) or ()):
        at_base.setdefault(pack(c), i)
    changed: list[bytes] = []
    layout: list[int] = []
    for c in doc.get(CAMPAIGNS) or ():
        encoded = pack(c)
        i = at_base.get(encoded)
        if i is None:
            changed.append(encoded)
            layout.append(-len(changed))
        else:
            layout.append(i)
    rest = {k: v for k, v in doc.items() if k != CAMPAIGNS}
    return RuleSetDelta(base, version, activates_at, rest, changed, layout,
                        doc_hash(pack(dict(doc))))


def encode(key: Ed25519PrivateKey, d: RuleSetDelta) -> bytes:
    body = pack({"kind": KIND, "base": d.base, "version": d.version,
                 "activates_at": d.activates_at, "rest": d.rest, "changed": d.changed,
                 "layout": d.layout, "doc_hash": d.doc_hash})
    return pack({"body": body, "sig": sign(key, body)})


def decode(data: bytes, central_key: Ed25519PublicKey) -> RuleSetDelta:
    """Raises BadSignature for a forged or tampered delta, InvalidMessage if malformed."""
    outer = unpack(data)
    body_bytes = require(outer, "body", bytes)
    verify(central_key, body_bytes, require(outer, "sig", bytes))
    body = unpack_in_steps(body_bytes, depth=1)
    if body.get("kind") != KIND:
        raise InvalidMessage("not a rule-set delta")
    changed = require(body, "changed", list)
    layout = require(body, "layout", list)
    if not all(isinstance(c, bytes) for c in changed) or not all(
            type(n) is int for n in layout):
        raise InvalidMessage("a delta's changed campaigns are bytes, its layout integers")
    rest = require(body, "rest", dict)
    if CAMPAIGNS in rest:
        raise InvalidMessage("a delta's rest carries no campaigns")
    return RuleSetDelta(require(body, "base", int), require(body, "version", int),
                        require(body, "activates_at", str), rest, changed, layout,
                        require(body, "doc_hash", str))


def apply(base_campaigns: Sequence[bytes], d: RuleSetDelta) -> tuple[dict[str, Any], bytes]:
    """The new document (its campaigns still encoded, as agent.rules_cache compiles them)
    and its packed bytes, rebuilt from the base's encoded campaigns; DeltaMismatch if they
    are not what the central signed."""
    campaigns: list[bytes] = []
    for n in d.layout:
        if n >= 0:
            if n >= len(base_campaigns):
                raise DeltaMismatch(f"the delta names campaign {n} of version {d.base},"
                                    f" which has {len(base_campaigns)}")
            campaigns.append(base_campaigns[n])
        else:
            if -1 - n >= len(d.changed):
                raise DeltaMismatch(f"the delta names changed campaign {-1 - n} of"
                                    f" {len(d.changed)}")
            campaigns.append(d.changed[-1 - n])
    packed = pack_with_encoded(d.rest, CAMPAIGNS, campaigns)
    if doc_hash(packed) != d.doc_hash:
        raise DeltaMismatch(f"version {d.version} rebuilt from version {d.base} is not the"
                            " document the central signed")
    return {**d.rest, CAMPAIGNS: campaigns}, packed


def pack_with_encoded(rest: Mapping[str, Any], key: str, items: Sequence[bytes]) -> bytes:
    """pack({**rest, key: [decoded items]}) without decoding the items: canonical msgpack
    is a map of sorted keys, each value encoded on its own, so the array can be spliced
    in from its items' bytes."""
    keys = sorted([*rest, key])
    out = [_header(len(keys), 0x80, 0xDE, 0xDF)]
    for k in keys:
        out.append(pack(k))
        if k == key:
            out.append(_header(len(items), 0x90, 0xDC, 0xDD))
            out.extend(items)
        else:
            out.append(pack(rest[k]))
    return b"".join(out)


def _header(n: int, fix: int, b16: int, b32: int) -> bytes:
    if n < 16:
        return bytes([fix | n])
    if n < 1 << 16:
        return bytes([b16]) + struct.pack(">H", n)
    return bytes([b32]) + struct.pack(">I", n)
