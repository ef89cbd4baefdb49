"""Wire formats both ends share: batches, signed requests, card tokens. Fuzzed where they parse."""

from __future__ import annotations

import contextlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.batches import decode_batch
from protocol.cards import card_token, is_card_token, luhn_valid, normalize_card_number
from protocol.request_auth import sign_request, verify_request
from protocol.signing import BadSignature
from protocol.wire import InvalidMessage, json_in_steps, pack, unpack, unpack_in_steps
from tests.till_double import TestTill


def _till() -> TestTill:
    till = TestTill()
    till.till_id = "till_1"
    till.sale("c1", earned=5)
    till.sale(None)
    return till


def test_a_batch_round_trips_and_verifies():
    till = _till()
    batch = decode_batch(till.batch(), lambda _: till.key.public_key())
    assert batch.till_id == "till_1" and (batch.first_seq, batch.last_seq) == (1, 2)
    assert batch.entries == tuple(till.entries)


def test_pack_is_canonical_and_refuses_floats():
    assert pack({"b": 1, "a": [2, {"d": 3, "c": 4}]}) == pack({"a": [2, {"c": 4, "d": 3}],
                                                              "b": 1})
    with pytest.raises(TypeError):
        pack({"amount": 1.5})


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_random_bytes_never_escape_as_anything_but_a_clear_refusal(data):
    till = _till()
    with pytest.raises((InvalidMessage, BadSignature)):
        decode_batch(data, lambda _: till.key.public_key())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_mutated_batch_is_refused_never_half_believed(data):
    till = _till()
    good = bytearray(till.batch())
    i = data.draw(st.integers(0, len(good) - 1))
    good[i] = data.draw(st.integers(0, 255).filter(lambda b: b != good[i]))
    try:
        batch = decode_batch(bytes(good), lambda _: till.key.public_key())
    except (InvalidMessage, BadSignature):
        return
    # A flip that still decodes must have hit only the envelope's framing, not the signed
    # body: what comes out is exactly what was signed.
    assert batch.entries == tuple(till.entries)


def test_unpack_refuses_oversized_input():
    with pytest.raises(InvalidMessage, match="exceeds"):
        unpack(b"\x00" * 100, max_bytes=10)


def test_signed_request_verifies_and_refuses_changes_and_stale_times():
    key = Ed25519PrivateKey.generate()
    headers = sign_request(key, "till_1", "GET", "/sync/v1/ruleset", b"", 1000)
    assert verify_request(headers, "GET", "/sync/v1/ruleset", b"", 1010,
                          lambda _: key.public_key()) == "till_1"
    for method, path, body, now in [("POST", "/sync/v1/ruleset", b"", 1000),
                                    ("GET", "/sync/v1/customers", b"", 1000),
                                    ("GET", "/sync/v1/ruleset", b"x", 1000),
                                    ("GET", "/sync/v1/ruleset", b"", 5000)]:
        with pytest.raises(BadSignature):
            verify_request(headers, method, path, body, now, lambda _: key.public_key())
    with pytest.raises(BadSignature, match="not signed"):
        verify_request({}, "GET", "/", b"", 1000, lambda _: key.public_key())


def test_card_tokens_are_keyed_stable_and_reveal_nothing():
    a = card_token(b"secret-a", "2990 0000 0001 9")
    assert a == card_token(b"secret-a", "2990000000019")
    assert a != card_token(b"secret-b", "2990000000019")
    assert is_card_token(a) and "2990000000019" not in a
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    with pytest.raises(ValueError) as e:
        normalize_card_number("4276-3800-1234-567x")
    assert "4276" not in str(e.value)  # an error never echoes the number


def test_a_batch_decoded_without_details_keeps_every_other_field_and_the_hashes():
    import dataclasses

    from protocol.wire import UNDECODED

    till = _till()
    batch = decode_batch(till.batch(), lambda _: till.key.public_key(), detail=False)
    assert all(e.detail is UNDECODED for e in batch.entries)
    assert [dataclasses.replace(e, detail={}) for e in batch.entries] == [
        dataclasses.replace(e, detail={}) for e in till.entries]
    with pytest.raises(ValueError, match="re-encoded"):
        batch.entries[0].encoded_body()


def test_skipping_a_map_still_checks_its_framing_and_what_surrounds_it():
    from protocol.wire import UNDECODED, unpack_map_skipping

    good = pack({"a": 1, "detail": {"lines": [1, 2, {"x": "y"}]}, "z": "end"})
    assert unpack_map_skipping(good, "detail") == {"a": 1, "detail": UNDECODED, "z": "end"}
    for bad in [pack({"a": 1, "detail": [1, 2]}),  # not a map
                good + b"\x00",  # trailing bytes
                good[:-3],  # truncated
                pack([1, 2]),  # not a map at all
                b"\x81\xa6detail\x81\xc1\x00"]:  # a byte msgpack never uses, inside
        with pytest.raises(InvalidMessage):
            unpack_map_skipping(bad, "detail")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_skipped_or_not_give_only_clear_refusals(data):
    from protocol.wire import unpack_map_skipping

    with contextlib.suppress(InvalidMessage):
        unpack_map_skipping(data, "detail")


def test_unpack_in_steps_can_leave_an_arrays_items_encoded() -> None:
    items = [{"id": "a", "n": 1}, [1, 2, {"x": "y"}], "text", None]
    data = pack({"doc": {"campaigns": items, "version": 3}, "sig": b"s"})
    out = unpack_in_steps(data, encoded=("doc", "campaigns"))
    assert out["doc"]["version"] == 3 and out["sig"] == b"s"
    assert out["doc"]["campaigns"] == [pack(i) for i in items]
    assert [unpack(b) for b in out["doc"]["campaigns"]] == items
    # Elsewhere the same path decodes as usual; a map there is decoded, not kept.
    assert unpack_in_steps(pack({"doc": {"campaigns": {"a": 1}}}),
                           encoded=("doc", "campaigns"))["doc"]["campaigns"] == {"a": 1}
    for bad in (data[:-3], data + b"\x00"):
        with pytest.raises(InvalidMessage):
            unpack_in_steps(bad, encoded=("doc", "campaigns"))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(value=_JSON_VALUES, depth=st.integers(0, 3), indent=st.sampled_from([None, 1]))
def test_json_in_steps_reads_what_json_loads_reads(value, depth, indent) -> None:
    text = json.dumps(value, indent=indent)
    assert json_in_steps(text, depth) == json.loads(text)
    assert json_in_steps(f" {text} ".encode(), depth) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1,}', '{"a" 1}', '[1 2]', '{"a": [1, 2]', '{1: 2}',
                                  '{"a": 1} x', '', '[1,]', '{"a": tru}'])
def test_json_in_steps_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        json_in_steps(text)
