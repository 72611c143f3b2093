"""The strict decoder of rill.protocol.cbor, reason by reason."""

from __future__ import annotations

import contextlib
import random

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rill.protocol import cbor
from rill.protocol.errors import DecodeError, RillError

CASES = [
    ("", "empty"),
    ("ff", "malformed"),
    ("c0", "malformed"),
    ("5a0fffffff00", "malformed"),  # claims a 256 MiB byte string
    ("0102", "trailing-bytes"),
    ("1801", "non-canonical"),  # 1 written with a one-byte argument
    ("1b0000000000000001", "non-canonical"),
    ("a2616201616101", "non-canonical"),  # keys b, a: unsorted
    ("a2616101616102", "duplicate-key"),
    ("5f4101ff", "indefinite-length"),
    ("9f01ff", "indefinite-length"),
    ("bf616101ff", "indefinite-length"),
    ("f93c00", "float"),
    ("fb3ff0000000000000", "float"),
    ("f5", "simple-value"),
    ("f6", "simple-value"),
    ("f7", "simple-value"),
    ("e0", "simple-value"),
    ("c11a514b67b0", "tag"),
    ("c249010000000000000000", "tag"),  # bignum 2**64
    ("d82072687474703a2f2f6578616d706c652e6f7267", "tag"),  # tag 32 URI
    ("a1016161", "non-text-key"),
    ("a14161 01".replace(" ", ""), "non-text-key"),  # byte-string key
    ("81" * 20 + "00", "too-deep"),
]


@pytest.mark.parametrize(("hexdata", "code"), CASES)
def test_rejections(hexdata: str, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        cbor.decode(bytes.fromhex(hexdata))
    assert info.value.code == code


def test_accepts_the_canonical_subset() -> None:
    value = {"a": 1, "bb": [b"\x00", "x", -5, 2**64 - 1, -(2**64)], "c": {}}
    raw = cbor.encode(value)
    assert cbor.decode(raw) == value


def test_key_order_is_length_first_then_bytewise() -> None:
    raw = cbor.encode({"bb": 1, "a": 2, "c": 3, "aa": 4})
    assert raw.hex() == "a461610261630362616104626262" + "01"


values = st.recursive(
    st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20,
)


@given(values)
def test_round_trip(value: object) -> None:
    raw = cbor.encode(value)
    assert cbor.decode(raw) == value


@given(st.binary(max_size=200))
def test_fuzz_only_our_errors(raw: bytes) -> None:
    with contextlib.suppress(RillError):
        cbor.decode(raw)


@given(values, st.data())
def test_any_single_byte_change_is_rejected_or_decodes_to_a_different_value(
        value: object, data: st.DataObject) -> None:
    raw = cbor.encode(value)
    at = data.draw(st.integers(0, len(raw) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    mutated = raw[:at] + bytes([new]) + raw[at + 1:]
    try:
        decoded = cbor.decode(mutated)
    except RillError:
        return
    assert decoded != value  # canonical form: one value, one encoding


def _shuffled(value: object, rnd: random.Random) -> object:
    """The same value with every map's keys in a random insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    return value


@given(values, st.randoms(use_true_random=False))
def test_an_encoding_in_any_key_order_is_accepted_only_if_canonical(
        value: object, rnd: random.Random) -> None:
    # The decoder's fast path trusts a plain re-encoding once every map's keys are in
    # canonical order; cross-check it against cbor2's own canonical encoder.
    raw = cbor2.dumps(_shuffled(value, rnd))
    canonical = cbor2.dumps(value, canonical=True)
    if raw == canonical:
        assert cbor.decode(raw) == value
    else:
        with pytest.raises(DecodeError) as info:
            cbor.decode(raw)
        assert info.value.code == "non-canonical"


def test_key_order_verdicts_are_cached_per_key_tuple_and_bounded() -> None:
    cbor.decode(cbor.encode({"zz": 1, "a": 2}))
    assert cbor._KEY_ORDER[("a", "zz")] is True
    with pytest.raises(DecodeError, match="canonical"):
        cbor.decode(bytes.fromhex("a2626262016161" + "02"))  # keys "bb", "a"
    assert cbor._KEY_ORDER[("bb", "a")] is False
    saved = dict(cbor._KEY_ORDER)
    try:
        for i in range(cbor._KEY_ORDER_MAX + 10):
            cbor.decode(cbor.encode({f"k{i}": 0}))
        assert len(cbor._KEY_ORDER) == cbor._KEY_ORDER_MAX
        # beyond the cap, verdicts are still computed (uncached)
        with pytest.raises(DecodeError, match="canonical"):
            cbor.decode(bytes.fromhex("a2626363016162" + "02"))  # keys "cc", "b"
        assert ("cc", "b") not in cbor._KEY_ORDER
        assert cbor.decode(cbor.encode({"cc": 1, "b": 2})) == {"b": 2, "cc": 1}
    finally:
        cbor._KEY_ORDER.clear()
        cbor._KEY_ORDER.update(saved)
