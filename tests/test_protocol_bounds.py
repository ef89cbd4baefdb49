"""protocol.bounds: ranges, text, and JSON depth measured without parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import bounds

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="[]{}\"\\ab,:"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet="[]{}\"\\ab", max_size=4), inner, max_size=3),
    max_leaves=60,
)


def depth(v: object) -> int:
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    return 0


@settings(derandomize=True, max_examples=200)
@given(json_values, st.integers(min_value=0, max_value=40))
def test_json_depth_is_the_nesting_of_arrays_and_objects(value, extra):
    wrapped = value
    for _ in range(extra):
        wrapped = [wrapped]
    raw = json.dumps(wrapped).encode()
    measured = bounds.json_depth(raw)
    # Below the cheap threshold it only promises "not deeper than MAX_DEPTH".
    assert measured == depth(wrapped) or (depth(wrapped) <= measured == bounds.MAX_DEPTH)
    if depth(wrapped) > bounds.MAX_DEPTH:
        with pytest.raises(bounds.BadJson, match="deeper"):
            bounds.loads(raw)
    else:
        assert bounds.loads(raw) == wrapped


def test_ranges_refuse_booleans_floats_and_overflow_naming_the_field():
    assert bounds.POINTS.check(10**9, "points") == 10**9
    for bad in (True, 1.0, "1", 10**9 + 1, -1, 2**63):
        with pytest.raises(bounds.OutOfBounds, match="'points'"):
            bounds.POINTS.check(bad, "points")


def test_text_must_be_unicode_short_and_without_control_characters():
    assert bounds.text("Анна", "name") == "Анна"
    for bad in ("a\ud800", "x" * 201, "a\x00b", 5):
        with pytest.raises(bounds.OutOfBounds, match="'name'"):
            bounds.text(bad, "name")


def test_json_refuses_nan_and_giant_numbers():
    for raw in (b"NaN", b"[Infinity]", b"1" * 5000, b"\xff"):
        with pytest.raises(bounds.BadJson):
            bounds.loads(raw)


def test_check_tree_names_the_place():
    with pytest.raises(bounds.OutOfBounds, match=r"doc\.a\[1\]\.b"):
        bounds.check_tree({"a": [1, {"b": "\udc00"}]}, "doc")
    with pytest.raises(bounds.OutOfBounds, match=r"doc\.n"):
        bounds.check_tree({"n": 2**64}, "doc")
    with pytest.raises(bounds.OutOfBounds, match=r"doc\.f"):
        bounds.check_tree({"f": 1.5}, "doc")
