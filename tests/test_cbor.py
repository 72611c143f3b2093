"""The strict decoder of rill.protocol.cbor: reasons in byte order (SPEC §3.2).

tests/test_cbor_differential.py checks the fast path against the exact scanner."""

from __future__ import annotations

import contextlib
import random

import cbor2
import pytest
from helpers import cbor_values as values
from hypothesis import given
from hypothesis import strategies as st

from rill.protocol import cbor
from rill.protocol.errors import DecodeError, RillError

# (hex, reason): one or more inputs per step of SPEC §3.2
CASES = [
    ("", "empty"),
    # a. / i. the bytes run out
    ("18", "malformed"),
    ("1900", "malformed"),
    ("5a0fffffff00", "malformed"),  # claims a 256 MiB byte string
    ("6261", "malformed"),
    ("8201", "malformed"),
    ("a1", "malformed"),
    ("a16161", "malformed"),
    # d. e. f. reserved initial bytes, a break outside an indefinite item
    ("ff", "malformed"),
    ("81ff", "malformed"),
    ("fc", "malformed"),
    ("1c", "malformed"),
    ("3d", "malformed"),
    ("5e", "malformed"),
    ("1f", "malformed"),
    ("3f", "malformed"),
    # i. invalid UTF-8 (a lone continuation byte, an overlong form, a surrogate)
    ("61ff", "malformed"),
    ("62c080", "malformed"),
    ("63eda080", "malformed"),
    # trailing bytes
    ("0102", "trailing-bytes"),
    ("a000", "trailing-bytes"),
    # g. arguments not in their shortest form
    ("1801", "non-canonical"),
    ("1817", "non-canonical"),
    ("1900ff", "non-canonical"),
    ("1a0000ffff", "non-canonical"),
    ("1b00000000ffffffff", "non-canonical"),
    ("1b0000000000000001", "non-canonical"),
    ("3800", "non-canonical"),
    ("5800", "non-canonical"),
    ("7800", "non-canonical"),
    ("9800", "non-canonical"),
    ("b800", "non-canonical"),
    # j. key order: length first, then bytewise; equal -> duplicate
    ("a2616201616101", "non-canonical"),  # keys b, a
    ("a262616100616200", "non-canonical"),  # keys aa, b: the shorter key first
    ("a2616101616102", "duplicate-key"),
    ("a3616100616200616100", "non-canonical"),  # a, b, a: the second a is out of order
    # f. indefinite lengths
    ("5f4101ff", "indefinite-length"),
    ("7f6161ff", "indefinite-length"),
    ("9f01ff", "indefinite-length"),
    ("bf616101ff", "indefinite-length"),
    # d. floats and simple values, decided on the initial byte alone
    ("f93c00", "float"),
    ("fa3f800000", "float"),
    ("fb3ff0000000000000", "float"),
    ("f9", "float"),
    ("f4", "simple-value"),
    ("f5", "simple-value"),
    ("f6", "simple-value"),
    ("f7", "simple-value"),
    ("e0", "simple-value"),
    ("f3", "simple-value"),
    ("f820", "simple-value"),
    ("f800", "simple-value"),
    ("f8", "simple-value"),
    # c. every tag, bignums included, decided on the initial byte alone
    ("c0", "tag"),
    ("c2", "tag"),
    ("c11a514b67b0", "tag"),
    ("c249010000000000000000", "tag"),  # bignum 2**64
    ("c24101", "tag"),  # bignum 1: a value that fits a uint
    ("c34100", "tag"),  # negative bignum -1
    ("d82072687474703a2f2f6578616d706c652e6f7267", "tag"),  # tag 32 URI
    ("d9d9f7a0", "tag"),  # self-described CBOR
    # j. map keys: the key's initial byte first
    ("a1016161", "non-text-key"),
    ("a1416101", "non-text-key"),  # byte-string key
    ("a1c000", "non-text-key"),  # a tag as key: non-text-key, not tag
    ("a1f93c0000", "non-text-key"),
    ("a1a000", "non-text-key"),
    ("a1ff", "non-text-key"),
    ("a17f6161ff00", "indefinite-length"),  # an indefinite text key
    ("a178016100", "non-canonical"),  # a key with a non-shortest length
    ("a161ff00", "malformed"),  # a key that is not UTF-8
    # j. depth: the top level is depth 1, an array or map at depth 9 is refused
    ("81" * 9 + "00", "too-deep"),
    ("81" * 8 + "80", "too-deep"),
    ("81" * 8 + "a0", "too-deep"),
    ("a16161" * 9 + "00", "too-deep"),  # 9 nested maps
    ("81" * 20 + "00", "too-deep"),
    # two faults: the first in byte order wins
    ("f93c0000", "float"),  # float, then a trailing byte
    ("a3616200616100616200", "non-canonical"),  # unsorted key, then a duplicate
    ("a2616100616100f93c00", "duplicate-key"),  # duplicate key, then a float value
    ("a20af93c00616100", "non-text-key"),  # non-text key whose value is a float
    ("81" * 9, "too-deep"),  # too deep, then truncated
    ("9fc0", "indefinite-length"),  # a tag inside an indefinite array
    ("82c0f9", "tag"),  # a tag, then a truncated float
    ("821801c0", "non-canonical"),  # a non-shortest integer, then a tag
    ("9903e801f93c00", "float"),  # a count beyond the end: the float comes first
    ("81" * 8 + "9800", "non-canonical"),  # the depth-9 header is read completely first
    ("81" * 8 + "9f", "indefinite-length"),
    ("81" * 8 + "1c", "malformed"),  # leaves at depth 9 are read as usual
    ("81" * 8 + "c0", "tag"),
    ("a2616200" + "61ff00", "malformed"),  # bad UTF-8 in a key that would sort first
    ("a16161f8", "simple-value"),  # a truncated simple value inside a map
]

@pytest.mark.parametrize(("hexdata", "code"), CASES)
def test_rejections(hexdata: str, code: str) -> None:
    raw = bytes.fromhex(hexdata)
    with pytest.raises(DecodeError) as info:
        cbor.decode(raw)
    assert info.value.code == code, str(info.value)
    verdict = cbor.classify(raw)
    assert verdict is not None and verdict.code == code
    with pytest.raises(DecodeError) as info:
        cbor.decode(raw, exact=False)
    assert info.value.code == "malformed"


def test_accepts_the_canonical_subset() -> None:
    value = {"a": 1, "bb": [b"\x00", "x", -5, 2**64 - 1, -(2**64)], "c": {}}
    raw = cbor.encode(value)
    assert cbor.decode(raw) == value


def test_key_order_is_length_first_then_bytewise() -> None:
    raw = cbor.encode({"bb": 1, "a": 2, "c": 3, "aa": 4})
    assert raw.hex() == "a461610261630362616104626262" + "01"


def test_failures_name_their_offset() -> None:
    with pytest.raises(DecodeError, match="at byte 2"):
        cbor.decode(bytes.fromhex("8301f93c00"))


def test_decoders_that_disagree_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    # cannot happen (tests/test_cbor_differential.py); if it did: refuse, never crash
    monkeypatch.setattr(cbor, "classify", lambda raw: None)
    with pytest.raises(DecodeError, match="disagree") as info:
        cbor.decode(b"\xf6")
    assert info.value.code == "malformed"


# -- large adversarial input -----------------------------------------------------------

SIZE = 266_240  # the sealed-claim cap (SPEC §3.3)


def _array_of(item: bytes, tail: bytes) -> bytes:
    k = (SIZE - 5 - len(tail)) // len(item)
    return b"\x9a" + (k + 1).to_bytes(4, "big") + item * k + tail


def test_the_scanner_is_iterative_and_reads_to_the_first_failure() -> None:
    raw = _array_of(b"\xa0", b"\xf9\x00\x00")  # ~266k empty maps, then a float
    verdict = cbor.classify(raw)
    assert verdict is not None and verdict.code == "float"
    assert f"at byte {len(raw) - 3}" in str(verdict)
    deep = b"\x81" * SIZE  # no recursion: stops at depth 9
    verdict = cbor.classify(deep)
    assert verdict is not None and verdict.code == "too-deep" and "at byte 8" in str(verdict)
    with pytest.raises(DecodeError) as info:
        cbor.decode(raw, exact=False)
    assert info.value.code == "malformed" and str(info.value) == "not canonical Rill CBOR"


# -- property tests ----------------------------------------------------------------------


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
