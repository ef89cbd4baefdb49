"""Rule-set deltas (protocol.ruleset_delta): whatever changed, reordered, added or removed,
the till rebuilds byte for byte the document the central signed, or refuses it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ruleset_delta as rd
from protocol.rules import default_ruleset_doc
from protocol.signing import BadSignature, sign
from protocol.wire import InvalidMessage, pack, unpack, unpack_in_steps

KEY = Ed25519PrivateKey.generate()


def campaign(i: int, percent: int) -> dict:
    return {"id": f"c{i}", "priority": i % 7, "effect": {"type": "percent", "percent": percent}}


def base_campaigns(doc: dict) -> list[bytes]:
    """The base's encoded campaigns as a till holds them (its stored document)."""
    return unpack_in_steps(pack(doc), depth=2, encoded=("campaigns",))["campaigns"]


docs = st.builds(
    lambda cs, rate, zone: {**default_ruleset_doc(), "version": 1,
                            "campaigns": [campaign(i, p) for i, p in cs],
                            **({"programme": {**default_ruleset_doc()["programme"],
                                              "return_window_days": rate}} if zone else {})},
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 30)), max_size=40,
             unique_by=lambda t: t[0]),
    st.integers(0, 30), st.booleans())


@settings(max_examples=200, deadline=None)
@given(base=docs, new=docs, shuffle=st.randoms())
def test_any_change_rebuilds_the_signed_document_exactly(base, new, shuffle):
    shuffle.shuffle(new["campaigns"])
    new["version"] = 2
    blob = rd.encode(KEY, rd.make(base, new, 1, 2, "2026-11-23T10:00:00+00:00"))
    d = rd.decode(blob, KEY.public_key())
    doc, packed = rd.apply(base_campaigns(base), d)
    assert packed == pack(new)
    assert {**doc, "campaigns": [unpack(c) for c in doc["campaigns"]]} == new
    # Only what the base did not carry travels.
    carried = {pack(c) for c in base["campaigns"]}
    assert sorted(d.changed) == sorted(pack(c) for c in new["campaigns"]
                                       if pack(c) not in carried)


def test_a_few_changes_of_thousands_travel_small():
    base = {**default_ruleset_doc(), "campaigns": [campaign(i, 5) for i in range(10_000)]}
    new = {**base, "version": 2, "campaigns": [campaign(i, 6 if i == 17 else 5)
                                               for i in range(10_000) if i != 3]}
    blob = rd.encode(KEY, rd.make(base, new, 1, 2, "2026-11-23T10:00:00+00:00"))
    assert len(blob) * 10 < len(pack(new))
    assert rd.apply(base_campaigns(base), rd.decode(blob, KEY.public_key()))[1] == pack(new)


def test_another_base_tampering_and_forgery_are_refused():
    base = {**default_ruleset_doc(), "campaigns": [campaign(i, 5) for i in range(5)]}
    new = {**base, "version": 2, "campaigns": [campaign(0, 9), *base["campaigns"][1:]]}
    blob = rd.encode(KEY, rd.make(base, new, 1, 2, "2026-11-23T10:00:00+00:00"))
    d = rd.decode(blob, KEY.public_key())
    other = {**base, "campaigns": [campaign(i, 4) for i in range(5)]}
    with pytest.raises(rd.DeltaMismatch):
        rd.apply(base_campaigns(other), d)  # a till holding something else
    with pytest.raises(rd.DeltaMismatch):
        rd.apply(base_campaigns(base)[:2], d)  # fewer campaigns than the delta names
    with pytest.raises(BadSignature):
        rd.decode(blob, Ed25519PrivateKey.generate().public_key())
    outer = unpack(blob)
    body = unpack(outer["body"])
    forged = pack({"body": pack({**body, "layout": [0, 0, 0, 0, 0]}), "sig": outer["sig"]})
    with pytest.raises(BadSignature):
        rd.decode(forged, KEY.public_key())
    wrong = pack({**body, "changed": ["x"]})  # signed, but not bytes where bytes belong
    signed_wrong = pack({"body": wrong, "sig": sign(KEY, wrong)})
    with pytest.raises(InvalidMessage):
        rd.decode(signed_wrong, KEY.public_key())
