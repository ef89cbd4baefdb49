"""The resend rule of sign-in codes as a property: over any sequence of requests for one
contact, the codes sent are at least a minute apart and at most three in any ten minutes;
a request is refused only when sending would break that; and the Retry-After it gives is
the first second at which sending would not."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import account_sign_in, db
from central.account_sign_in import Contact, TooSoon

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEY = b"k" * 32
_contacts = itertools.count()


def allowed(sent: list[int], t: int) -> bool:
    """Would a code sent at `t` (seconds) keep the rule, given those sent before?"""
    gap = 60
    window = 600
    if sent and t - sent[-1] < gap:
        return False
    return sum(1 for s in sent if s > t - window) < 3


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory):
    c = db.connect(Path(tmp_path_factory.mktemp("sign-in")) / "central.db")
    yield c
    c.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=12))
def test_codes_keep_the_resend_rule_and_retry_after_is_exact(conn, gaps):
    contact = Contact("sms", f"+7999{next(_contacts):07d}")  # nobody's: nothing is sent
    sent: list[int] = []
    t = 0
    for gap in gaps:
        t += gap
        try:
            account_sign_in.issue(conn, KEY, contact, START + timedelta(seconds=t))
        except TooSoon as e:
            assert not allowed(sent, t)
            assert allowed(sent, t + e.retry_after)
            assert not allowed(sent, t + e.retry_after - 1)
            continue
        assert allowed(sent, t)
        sent.append(t)
