"""Deterministic CBOR: the one encoder and the strict decoder (SPEC.md §3).

Rill objects use a subset of CBOR (RFC 8949): maps with text keys, arrays,
text strings, byte strings, unsigned and negative integers, and nothing else
(no floats, no tags, no simple values, no indefinite lengths).  The encoding
is cbor2's ``canonical=True`` form; an input is valid exactly when its
canonical re-encoding is the same bytes.

Decoding has two halves.  The fast path (cbor2, a type walk, a plain
re-encoding compared with the input) accepts valid input and notices that an
input is invalid, but cannot say *why* in the order SPEC §3.2 prescribes.  Only
then, :func:`classify` scans the bytes from first to last and names the first
failure it meets ("first failure in byte order").  Both agree on validity for
every input (tests/test_cbor_differential.py checks this).
"""

from __future__ import annotations

import itertools
from typing import Any, NoReturn

import cbor2

from .errors import DecodeError

#: Deepest nesting of arrays/maps (SPEC §3.2): the top-level item is at depth 1, an
#: array or map at depth 9 is refused.  cbor2's ``max_depth`` counts the same way.
MAX_DEPTH = 8

#: The largest integer magnitude the protocol carries (see currency.MAX_AMOUNT).
MAX_INT = 2**64 - 1


def encode(value: Any) -> bytes:
    """Canonical CBOR of a value made of dict/list/str/bytes/int."""
    return cbor2.dumps(value, canonical=True)


# -- fast path ---------------------------------------------------------------------------

#: Verdicts of :func:`_keys_in_order` by key tuple (Rill maps have few distinct shapes).
_KEY_ORDER: dict[tuple[str, ...], bool] = {}
_KEY_ORDER_MAX = 4096


def _keys_in_order(value: dict[Any, Any]) -> bool:
    """True if the map's keys are text in canonical order (SPEC §3.2: shorter encoding
    first, then bytewise), which also means no key repeats."""
    keys = tuple(value)
    ok = _KEY_ORDER.get(keys)
    if ok is None:
        if any(type(k) is not str for k in keys):
            return False  # not cached: (1,) == (True,) and other non-text coincidences
        enc = [k.encode("utf-8") for k in keys]
        # the header's length grows with the string's, so (length, bytes) order is the
        # order of the encoded keys
        ok = all((len(a), a) < (len(b), b) for a, b in itertools.pairwise(enc))
        if len(_KEY_ORDER) < _KEY_ORDER_MAX:
            _KEY_ORDER[keys] = ok
    return ok


def _plain(value: Any, depth: int) -> bool:
    """True if ``value`` (an item at ``depth``) holds only the types of SPEC §3.1, nests
    no array/map deeper than :data:`MAX_DEPTH` and has every map's keys in canonical
    order.  Then its plain cbor2 encoding (which keeps the decoded key order) is its
    canonical one.  Leaves are checked inline: this is the hot path."""
    t = type(value)
    if t is dict:
        if depth > MAX_DEPTH or not _keys_in_order(value):
            return False
        items: Any = value.values()
    elif t is list:
        if depth > MAX_DEPTH:
            return False
        items = value
    else:
        return t is str or t is bytes or (t is int and -MAX_INT - 1 <= value <= MAX_INT)
    for item in items:
        ti = type(item)
        if ti is str or ti is bytes or (ti is int and -MAX_INT - 1 <= item <= MAX_INT):
            continue
        if (ti is dict or ti is list) and _plain(item, depth + 1):
            continue
        return False
    return True


def _tag_hook(decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"tag {tag.tag}", code="tag")  # any tag: invalid, stop early


def decode(raw: bytes, *, exact: bool = True) -> Any:
    """Strictly decode one canonical CBOR item; raise :class:`DecodeError`.

    Reasons (``code``, SPEC §3.2, the first failure in byte order): ``empty``,
    ``malformed``, ``trailing-bytes``, ``non-canonical``, ``duplicate-key``,
    ``indefinite-length``, ``float``, ``simple-value``, ``tag``, ``non-text-key``,
    ``too-deep``.

    ``exact=False`` skips the reason: every invalid input is refused as ``malformed``
    without the byte scan of :func:`classify`, whose cost grows with the number of
    items.  For callers that only need the verdict, such as the gossip path, where
    any CBOR failure is a rejection.
    """
    try:
        value = cbor2.loads(
            raw,
            tag_hook=_tag_hook,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except Exception:  # cbor2's own errors, ours from _tag_hook, and semantic decoders'
        # built-in ones (dates, decimals...): invalid, the scanner names the reason
        _refuse(raw, exact)
    if _plain(value, 1) and cbor2.dumps(value) == raw:
        return value
    _refuse(raw, exact)


def _refuse(raw: bytes, exact: bool) -> NoReturn:
    if not exact:
        raise DecodeError("not canonical Rill CBOR", code="malformed") from None
    err = classify(raw)
    if err is None:  # the differential tests say this cannot happen
        err = DecodeError("the CBOR decoders disagree on this input", code="malformed")
    raise err from None


# -- the exact scanner (SPEC §3.2) -------------------------------------------------------


def _fail(code: str, what: str, at: int) -> DecodeError:
    return DecodeError(f"{what} at byte {at}", code=code)


def classify(raw: bytes) -> DecodeError | None:
    """The reference verdict of SPEC §3.2: None if ``raw`` is valid, else the first
    failure in byte order, as a :class:`DecodeError` (returned, not raised).

    Iterative (no recursion limit), total (never raises), linear in ``len(raw)``.
    """
    if type(raw) is not bytes:
        raw = bytes(raw)
    n = len(raw)
    if not n:
        return DecodeError("empty input", code="empty")
    pos = 0
    depth = 1  # depth of the next item
    left = 1  # items still to read in the current container (a map's keys and values)
    in_map = False
    prev = b""  # the current map's previous key, encoded; b"" before its first key
    stack: list[tuple[int, bool, bytes]] = []
    while True:
        if not left:
            if not stack:
                break
            left, in_map, prev = stack.pop()
            depth -= 1
            continue
        is_key = in_map and not left & 1
        left -= 1
        if pos >= n:  # a.
            return _fail("malformed", "truncated: an item is missing", pos)
        start = pos
        ib = raw[pos]  # b.
        pos += 1
        major = ib >> 5
        ai = ib & 31
        if is_key and major != 3:
            return _fail("non-text-key", "map key is not a text string", start)
        if major == 6:  # c.
            return _fail("tag", "tagged item", start)
        if major == 7:  # d.
            if 25 <= ai <= 27:
                return _fail("float", "floating-point value", start)
            if ai <= 24:
                return _fail("simple-value", "simple value (true/false/null/undefined...)",
                             start)
            return _fail("malformed", f"reserved initial byte 0x{ib:02x}", start)
        if ai < 24:
            arg = ai
        elif ai < 28:  # g.
            if ai == 24:
                if pos >= n:
                    return _fail("malformed", "truncated argument", start)
                arg = raw[pos]
                pos += 1
                if arg < 24:
                    return _fail("non-canonical", "argument not in its shortest form", start)
            else:
                w = 1 << (ai - 24)
                if pos + w > n:
                    return _fail("malformed", "truncated argument", start)
                arg = int.from_bytes(raw[pos:pos + w], "big")
                pos += w
                if arg < 1 << (4 * w):  # 256, 65536, 2**32: fits in half the bytes
                    return _fail("non-canonical", "argument not in its shortest form",
                                 start)
        elif ai == 31 and major >= 2:  # f.
            return _fail("indefinite-length", "indefinite length", start)
        else:  # e. (and f. for majors 0, 1)
            return _fail("malformed", f"reserved initial byte 0x{ib:02x}", start)
        if major < 2:  # h.
            continue
        if major < 4:  # i.
            end = pos + arg
            if end > n:
                return _fail("malformed", f"truncated: {arg}-byte string", start)
            if major == 3:
                try:
                    raw[pos:end].decode("utf-8")
                except UnicodeDecodeError:
                    return _fail("malformed", "text string is not valid UTF-8", start)
                if is_key:
                    key = raw[start:end]
                    if prev and (len(key), key) <= (len(prev), prev):
                        if key == prev:
                            return _fail("duplicate-key", "map key repeated", start)
                        return _fail("non-canonical", "map key out of canonical order",
                                     start)
                    prev = key
            pos = end
            continue
        if depth > MAX_DEPTH:  # j.
            return _fail("too-deep", f"array or map nested deeper than {MAX_DEPTH}", start)
        if arg:  # an empty array or map is complete already
            stack.append((left, in_map, prev))
            depth += 1
            in_map = major == 5
            left = arg << 1 if in_map else arg
            prev = b""
    if pos < n:
        return _fail("trailing-bytes", f"{n - pos} trailing byte(s) after the item", pos)
    return None
