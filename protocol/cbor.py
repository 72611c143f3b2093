"""Deterministic CBOR: the one encoder and the strict decoder (SPEC.md §3).

Rill objects use a subset of CBOR (RFC 8949): maps with text keys, arrays,
text strings, byte strings, unsigned and negative integers, and nothing else
(no floats, no tags, no simple values, no indefinite lengths).  The encoding
is cbor2's ``canonical=True`` form; a decoder accepts an input only if its
canonical re-encoding is the same bytes.
"""

from __future__ import annotations

import itertools
from typing import Any

import cbor2

from .errors import DecodeError

#: Deepest nesting of arrays/maps any Rill object needs (envelope > body >
#: lines > line > ... ).  Deeper input is refused before it costs anything.
MAX_DEPTH = 8

#: The largest integer magnitude the protocol carries (see currency.MAX_AMOUNT).
MAX_INT = 2**64 - 1


def encode(value: Any) -> bytes:
    """Canonical CBOR of a value made of dict/list/str/bytes/int."""
    return cbor2.dumps(value, canonical=True)


#: Verdicts of :func:`_keys_in_order` by key tuple (Rill maps have few distinct shapes).
_KEY_ORDER: dict[tuple[str, ...], bool] = {}
_KEY_ORDER_MAX = 4096


def _keys_in_order(value: dict[Any, Any]) -> bool:
    """True if the map's keys are text in canonical order (SPEC §3.2: shorter encoding
    first, then bytewise); raise ``non-text-key`` for a key that is not text."""
    keys = tuple(value)
    ok = _KEY_ORDER.get(keys)
    if ok is None:
        if any(type(k) is not str for k in keys):
            raise DecodeError("map key is not a text string", code="non-text-key")
        enc = [k.encode("utf-8") for k in keys]
        # the header's length grows with the string's, so (length, bytes) order is the
        # order of the encoded keys
        ok = all((len(a), a) < (len(b), b) for a, b in itertools.pairwise(enc))
        if len(_KEY_ORDER) < _KEY_ORDER_MAX:
            _KEY_ORDER[keys] = ok
    return ok


def _check_types(value: Any, depth: int) -> bool:
    """Refuse every decoded type outside SPEC §3.1 (leaves are checked inline: hot path).

    Returns False if some map's keys are out of canonical order (decoded maps keep
    the order of the input).
    """
    if depth > MAX_DEPTH:
        raise DecodeError("nesting too deep", code="too-deep")
    t = type(value)
    if t is dict or t is list:
        ordered = _keys_in_order(value) if t is dict else True
        for item in value.values() if t is dict else value:
            ti = type(item)
            if ti is str or ti is bytes or (ti is int and -MAX_INT - 1 <= item <= MAX_INT):
                continue
            ordered = _check_types(item, depth + 1) and ordered
        return ordered
    if t is int:
        if not -MAX_INT - 1 <= value <= MAX_INT:
            raise DecodeError("integer out of range (bignum tag?)", code="tag")
        return True
    if t is str or t is bytes:
        return True
    if t is float:
        raise DecodeError("floating-point value", code="float")
    if t is bool or value is None or isinstance(value, cbor2.CBORSimpleValue):
        raise DecodeError("simple value (true/false/null/undefined)", code="simple-value")
    if value is cbor2.undefined:
        raise DecodeError("simple value (undefined)", code="simple-value")
    # Everything else can only come from a tag cbor2 decoded for us
    # (datetime, Decimal, UUID, Fraction, CBORTag, set, ...).
    raise DecodeError(f"tagged value ({t.__name__})", code="tag")


def _tag_hook(decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"tag {tag.tag}", code="tag")


def decode(raw: bytes) -> Any:
    """Strictly decode one canonical CBOR item; raise :class:`DecodeError`.

    Reasons (``code``): ``empty``, ``malformed``, ``indefinite-length``,
    ``duplicate-key``, ``tag``, ``float``, ``simple-value``, ``non-text-key``,
    ``too-deep``, ``trailing-bytes``, ``non-canonical``.
    """
    if not raw:
        raise DecodeError("empty input", code="empty")
    try:
        value = cbor2.loads(
            raw,
            tag_hook=_tag_hook,
            max_depth=MAX_DEPTH + 2,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except DecodeError:
        raise
    except cbor2.CBORDecodeError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, DecodeError):
            raise cause from None
        text = str(exc)
        if "indefinite" in text:
            raise DecodeError("indefinite length", code="indefinite-length") from None
        if "Duplicate map key" in text or "duplicate" in text.lower():
            raise DecodeError("duplicate map key", code="duplicate-key") from None
        if "tag" in text:
            raise DecodeError(f"tagged value ({text})", code="tag") from None
        if "depth" in text:
            raise DecodeError("nesting too deep", code="too-deep") from None
        raise DecodeError(f"not CBOR: {text}", code="malformed") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # cbor2 turns most problems into CBORDecodeError, but semantic decoders
        # (dates, decimals, ...) can raise plain built-in errors.
        raise DecodeError(f"not CBOR: {exc}", code="malformed") from None
    ordered = _check_types(value, 0)
    # With every map in canonical key order, the plain encoding (which keeps the
    # decoded order) is the canonical one, and three times cheaper to make.
    canonical = cbor2.dumps(value) if ordered else encode(value)
    if canonical != raw:
        if raw.startswith(canonical):
            raise DecodeError(
                f"{len(raw) - len(canonical)} trailing byte(s) after the item",
                code="trailing-bytes",
            )
        raise DecodeError(
            "not in canonical form (shortest integers and lengths, sorted map keys)",
            code="non-canonical",
        )
    return value
