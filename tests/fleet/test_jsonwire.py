"""fleet/jsonwire: orjson's bytes decode to what the standard library's do, both ways, and
every body the standard library could encode is still encoded."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet import jsonwire

# what an API server sends and we send: objects of strings, 64-bit integers, booleans, null, lists
_scalars = st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1) | st.text()
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_round_trip_equals_the_standard_library(value: object) -> None:
    encoded = jsonwire.dumps(value)
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == value  # what we send means what the standard library's bytes meant
    stdlib = json.dumps(value, separators=(",", ":")).encode()
    assert jsonwire.loads(stdlib) == json.loads(stdlib)  # what we read is what it read


def test_a_lone_surrogate_is_still_encoded() -> None:
    body = {"metadata": {"annotations": {"note": "a\ud800b"}}}
    assert json.loads(jsonwire.dumps(body)) == body


def test_undecodable_bytes_raise_value_error() -> None:
    for data in (b"{", b"NaN?", b'{"a": }', b"\xff"):
        with pytest.raises(ValueError):
            jsonwire.loads(data)


def test_the_implementation_is_named() -> None:
    try:
        import orjson  # noqa: F401
    except ImportError:
        assert jsonwire.IMPLEMENTATION == "json"
    else:
        assert jsonwire.IMPLEMENTATION == "orjson"
