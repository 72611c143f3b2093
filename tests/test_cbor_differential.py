"""rill.protocol.cbor's fast path (cbor2) against its exact scanner (classify): both accept
exactly the same inputs, an accepted input decodes to the value it encodes (checked
against an independent decoder), a refusal carries the scanner's reason."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import cbor_values, load_vectors
from hypothesis import given, settings
from hypothesis import strategies as st

from rill.protocol import cbor
from rill.protocol.errors import DecodeError

#: Inputs every decoder must accept (boundaries of SPEC §3.2).
VALID = [
    "00", "17", "1818", "18ff", "190100", "1a00010000", "1b0000000100000000",
    "1bffffffffffffffff", "20", "37", "3818", "3bffffffffffffffff",
    "40", "60", "80", "a0", "6161", "62c3a9", "5818" + "00" * 24,
    "a2616100616200", "a2616300626161" + "00",  # length first: "c" before "aa"
    "81" * 8 + "00",  # 8 nested arrays, a leaf at depth 9
    "81" * 7 + "a1616100",  # 7 arrays and a map at depth 8
    "a16161" * 8 + "00",  # 8 nested maps
]


@pytest.mark.parametrize("hexdata", VALID)
def test_accepts(hexdata: str) -> None:
    raw = bytes.fromhex(hexdata)
    assert cbor.classify(raw) is None
    value = cbor.decode(raw)
    assert value == _reference_value(raw)
    assert cbor.encode(value) == raw



def _reference_value(raw: bytes) -> Any:
    """The value of an input :func:`cbor.classify` accepts, decoded independently of
    cbor2 (recursive: valid input nests at most 8 deep)."""

    def item(pos: int) -> tuple[Any, int]:
        ib = raw[pos]
        major, ai = ib >> 5, ib & 31
        pos += 1
        if ai < 24:
            arg = ai
        else:
            w = 1 << (ai - 24)
            arg = int.from_bytes(raw[pos:pos + w], "big")
            pos += w
        if major == 0:
            return arg, pos
        if major == 1:
            return -1 - arg, pos
        if major == 2:
            return raw[pos:pos + arg], pos + arg
        if major == 3:
            return raw[pos:pos + arg].decode("utf-8"), pos + arg
        if major == 4:
            out = []
            for _ in range(arg):
                v, pos = item(pos)
                out.append(v)
            return out, pos
        assert major == 5
        d = {}
        for _ in range(arg):
            k, pos = item(pos)
            d[k], pos = item(pos)
        return d, pos

    value, end = item(0)
    assert end == len(raw)
    return value


def _agree(raw: bytes) -> None:
    """The fast path accepts exactly what the scanner accepts, with the value the input
    encodes; a refusal carries the scanner's code."""
    verdict = cbor.classify(raw)
    try:
        value = cbor.decode(raw, exact=False)  # the fast path alone
    except DecodeError as exc:
        assert exc.code == "malformed"
        assert verdict is not None, f"fast path refuses valid {raw.hex()}"
        with pytest.raises(DecodeError) as info:
            cbor.decode(raw)
        assert info.value.code == verdict.code
        return
    assert verdict is None, f"fast path accepts {raw.hex()}: {verdict.reason}"
    assert value == _reference_value(raw)
    assert cbor.encode(value) == raw
    assert cbor.decode(raw) == value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_differential_random_bytes(raw: bytes) -> None:
    _agree(raw)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(
    [b"\x00", b"\x18", b"\x61", b"\x81", b"\xa1", b"\x9f", b"\xff", b"\xf9", b"\xc2",
     b"\x41", b"\x78", b"\x98"]), max_size=40))
def test_differential_initial_byte_soup(parts: list[bytes]) -> None:
    _agree(b"".join(parts))


_VECTOR_OBJECTS = [bytes.fromhex(v["bytes"]) for v in load_vectors()["positive"]]

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 2**20), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.just(0)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20), st.just(0)),
)


def _mutate(raw: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    for op, where, b in ops:
        at = where % (len(raw) + 1)
        if op == "insert":
            raw = raw[:at] + bytes([b]) + raw[at:]
        elif op == "truncate":
            raw = raw[:at]
        elif at < len(raw):
            if op == "flip":
                raw = raw[:at] + bytes([raw[at] ^ b]) + raw[at + 1:]
            elif op == "set":
                raw = raw[:at] + bytes([b]) + raw[at + 1:]
            else:
                raw = raw[:at] + raw[at + 1:]
    return raw


@settings(max_examples=300, deadline=None)
@given(cbor_values.map(cbor.encode) | st.sampled_from(_VECTOR_OBJECTS),
       st.lists(_mutation, max_size=3))
def test_differential_mutations_of_valid_objects(raw: bytes,
                                                 ops: list[tuple[str, int, int]]) -> None:
    _agree(_mutate(raw, ops))


# Structured generation: items a fault at a time (floats, simple values, tags, reserved
# bytes, indefinite lengths, non-shortest arguments, bad UTF-8, non-text, unsorted and
# duplicate keys, wrong counts, deep nesting).  Draws shrink towards valid items.


def _head(major: int, n: int, width: int) -> bytes:
    """``width`` 0 = shortest; 1, 2, 4, 8 = that many argument bytes if ``n`` fits."""
    if width == 0 or n >= 1 << (8 * width):
        width = 0 if n < 24 else 1 if n < 256 else 2 if n < 65536 else 4 if n < 2**32 else 8
    if width == 0:
        return bytes([major << 5 | n])
    return bytes([major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[width]]) + n.to_bytes(width, "big")


_widths = st.sampled_from([0] * 28 + [1, 2, 4, 8])
_odd_leaves = st.sampled_from([
    b"\xf9\x3c\x00", b"\xfa\x3f\x80\x00\x00", b"\xfb\x3f\xf0" + bytes(6),  # floats
    b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xe0", b"\xf8\x20", b"\xf8\x00",  # simple
    b"\x1c", b"\x3f", b"\x5e", b"\x7d", b"\x9c", b"\xbe", b"\xfc", b"\xff",  # reserved
    b"\x5f\x41\x00\xff", b"\x7f\x61\x61\xff", b"\x61\xff", b"\x62\xc0\x80",
])


@st.composite
def _leaf(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(range(10)))
    if kind <= 3:
        n = draw(st.integers(0, 30) | st.integers(0, 2**64 - 1))
        return _head(draw(st.sampled_from([0, 1])), n, draw(_widths))
    if kind <= 5:
        b = draw(st.binary(max_size=30))
        return _head(2, len(b), draw(_widths)) + b
    if kind <= 7:
        t = draw(st.text(alphabet="ab\u00e9", max_size=26)).encode()
        return _head(3, len(t), draw(_widths)) + t
    return draw(_odd_leaves)


_tag_numbers = st.sampled_from([0, 1, 2, 3, 24, 32, 55799, 2**32])


@st.composite
def _container(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    kind = draw(st.sampled_from(range(6)))
    if kind == 5:
        return _head(6, draw(_tag_numbers), draw(_widths)) + draw(children)
    items = draw(st.lists(children, max_size=4))
    fault = draw(st.sampled_from(range(16)))
    if kind <= 2:  # array
        if fault == 15:
            return b"\x9f" + b"".join(items) + b"\xff"
        n = len(items) + (1 if fault == 14 else -1 if fault == 13 and items else 0)
        return _head(4, n, draw(_widths)) + b"".join(items)
    # map
    keys = draw(st.lists(st.text(alphabet="abc", max_size=3), min_size=len(items),
                         max_size=len(items)))
    pairs = [(_head(3, len(k.encode()), draw(st.sampled_from([0] * 15 + [1]))) + k.encode(), v)
             for k, v in zip(keys, items, strict=True)]
    if fault < 14:
        pairs = sorted(dict(pairs).items(), key=lambda kv: (len(kv[0]), kv[0]))
    if fault == 10 and pairs:
        pairs.insert(draw(st.integers(0, len(pairs))), (draw(children), pairs[0][1]))  # any key
    elif fault == 11 and pairs:
        at = draw(st.integers(0, len(pairs) - 1))
        pairs.insert(at, pairs[at])  # an adjacent duplicate
    elif fault == 12 and pairs:
        pairs.append(pairs[0])  # a duplicate after greater keys: out of order
    elif fault == 13:
        pairs.reverse()
    # fault 14: keys in the order drawn (repeats possible)
    if fault == 15:
        return b"\xbf" + b"".join(k + v for k, v in pairs) + b"\xff"
    return _head(5, len(pairs), draw(_widths)) + b"".join(k + v for k, v in pairs)


_items = st.recursive(_leaf(), lambda children: _container(children), max_leaves=12)


@st.composite
def _nested(draw: st.DrawFn) -> bytes:
    raw = draw(_items)
    for _ in range(draw(st.sampled_from(range(12)))):
        raw = draw(st.sampled_from([b"\x81", b"\xa1\x61\x6b"])) + raw
    end = draw(st.sampled_from(range(10)))
    if end == 8:
        raw += draw(st.binary(min_size=1, max_size=3))
    elif end == 9:
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


@settings(max_examples=600, deadline=None)
@given(_nested())
def test_differential_structured(raw: bytes) -> None:
    _agree(raw)
