"""protocol.weak_keys: keys of small or mixed order, the identity and bad encodings are named;
sound keys pass."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.signing import public_key_hex
from protocol.weak_keys import IDENTITY, L, P, _add, _decode, _times, weakness

# Points of small order in their encodings, after libsodium's blocklist.
SMALL_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]
NOT_CANONICAL = [
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0100000000000000000000000000000000000000000000000000000000000080",  # negative zero
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # and its twin
]


def _encode(point: tuple[int, int, int, int]) -> bytes:
    x, y, z, _ = point
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def test_small_order_points_are_refused():
    for h in SMALL_ORDER:
        assert weakness(bytes.fromhex(h)) == "a point of small order", h


def test_the_identity_and_bad_encodings_are_refused():
    assert weakness(bytes.fromhex("01" + "00" * 31)) == "the identity point"
    for h in NOT_CANONICAL:
        assert weakness(bytes.fromhex(h)) is not None, h
    assert weakness(b"\x00" * 31) is not None


def test_a_sound_key_plus_a_torsion_point_is_refused():
    sound = _decode(bytes.fromhex(public_key_hex(Ed25519PrivateKey.generate())))
    torsion = _decode(bytes.fromhex(SMALL_ORDER[2]))
    assert sound is not None and torsion is not None
    mixed = _encode(_add(sound, torsion))
    assert weakness(mixed) == "a point outside the prime-order subgroup"
    assert _times(L, _decode(mixed)) != IDENTITY


@settings(max_examples=30, derandomize=True)
@given(st.binary(min_size=32, max_size=32))
def test_generated_keys_are_sound(seed: bytes):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert weakness(bytes.fromhex(public_key_hex(key))) is None
