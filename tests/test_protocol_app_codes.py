"""App codes are RFC 6238's (checked against its test vectors and an independent TOTP
implementation), and a journalled presence proof is checked field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from protocol import app_codes
from protocol import presence as proofs
from protocol.card_keys import CardKeyring, new_key
from protocol.journal import JournalEntry
from protocol.wire import InvalidMessage, pack

NOW = datetime(2026, 12, 1, 10, 0, 7, tzinfo=UTC)
RING = CardKeyring([new_key(1, NOW - timedelta(days=1))])

# RFC 6238, appendix B (SHA-1, its 20-byte key), to six digits: the last six of the eight
RFC_VECTORS = [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"),
               (1234567890, "005924"), (2000000000, "279037"), (20000000000, "353130")]


@pytest.mark.parametrize(("unix", "code"), RFC_VECTORS)
def test_codes_are_rfc_6238s(unix: int, code: str):
    assert app_codes.hotp(b"12345678901234567890", unix // app_codes.STEP_S) == code


def test_an_authenticator_app_given_the_uri_shows_the_codes_the_till_takes():
    app = pyotp.parse_uri(app_codes.otpauth_uri(RING.newest, "c-1"))
    assert app.digits == 6 and app.interval == 30 and app.issuer == "Tillpoint"
    for shift in (-30, 0, 30):
        moment = NOW + timedelta(seconds=shift)
        assert app_codes.verify(RING, "c-1", app.at(moment), NOW) is not None
    assert app_codes.verify(RING, "c-1", app.at(NOW + timedelta(seconds=90)), NOW) is None
    assert app_codes.verify(RING, "c-2", app.at(NOW), NOW) is None  # another customer's
    version, step = app_codes.verify(RING, "c-1", app.at(NOW), NOW)
    assert app_codes.matches(RING, "c-1", app.at(NOW), version, step)


def test_a_rotated_ring_takes_codes_under_each_key_in_its_lifetime():
    old = pyotp.parse_uri(app_codes.otpauth_uri(RING.newest, "c-1"))
    rotated = RING.rotated(NOW)
    assert app_codes.verify(rotated, "c-1", old.at(NOW), NOW) == (1, app_codes.step_at(NOW))
    new = pyotp.parse_uri(app_codes.otpauth_uri(rotated.newest, "c-1"))
    assert app_codes.verify(rotated, "c-1", new.at(NOW), NOW)[0] == 2


@pytest.mark.parametrize("code", ["12345", "1234567", "12345a", "１２３４５６", 123456, None])
def test_a_code_is_six_ascii_digits(code):
    with pytest.raises(app_codes.BadCode):
        app_codes.verify(RING, "c-1", code, NOW)


def entry(**presence) -> bytes:
    return pack({"seq": 1, "epoch": "e", "prev_hash": "p", "kind": "sale", "receipt_id": "r",
                 "at": NOW.isoformat(), "store": "s", "customer_id": "c-1",
                 "ruleset_version": 1, "total": 100, "fiscal_doc": 1, "earned": 0, "redeemed": 10,
                 "clawback": 0, "refund": 0,
                 "presence": presence})


def test_a_journalled_proof_is_checked_field_by_field():
    good = proofs.app(1, 5, "123456")
    assert JournalEntry.from_encoded_body(entry(**good)).presence == good
    for bad in ({"method": "app", "key_version": 1, "step": 5, "code": "12345"},
                {"method": "app", "key_version": "1", "step": 5, "code": "123456"},
                {"method": "card", "tokens": ["not-a-token"]},
                {"method": "card", "tokens": []},
                {"method": "card", "token": "x"},
                {"method": "sms", "challenge": ""}, {"method": "voice"}):
        with pytest.raises(InvalidMessage, match="presence"):
            JournalEntry.from_encoded_body(entry(**bad))


values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                      lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                      max_leaves=12)


@seed(20261201)
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["method", "tokens", "challenge", "key_version",
                                        "step", "code", "other"]),
                       values | st.sampled_from(["card", "app", "sms", "123456"]),
                       max_size=5))
def test_any_proof_is_taken_or_refused_as_bad_never_an_error(proof):
    try:
        checked = proofs.check(proof)
    except proofs.BadProof:
        return
    assert checked["method"] in proofs.METHODS
