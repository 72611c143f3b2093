"""Reading the fields of a decoded map, one kind of field at a time (SPEC.md §5).

A :class:`Reader` takes the fields of one map in the order of its type's field
table and checks each one completely before the next: presence (a missing
field is ``schema``), CBOR type, range or normal form, and for an array its
count, then its items in order, then its sort or uniqueness rule.  The fields
left over are unknown (``schema``), checked by :meth:`Reader.done` last.

A field of a kind that has its own reason code fails with that code for *any*
value that is not valid, whatever its CBOR type or length:

====================  ==================
kind                  code
====================  ==================
key                   ``bad-key``
month                 ``bad-month``
currency              ``bad-currency``
thing                 ``bad-thing``
origin                ``bad-origin``
payto                 ``bad-payto``
====================  ==================

Every other field (uint, hash and other byte strings, label and text, array,
map) fails with ``schema``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from . import keys
from .currency import CURRENCY_RE, MAX_AMOUNT
from .errors import BadKey, SchemaError
from .months import check_month
from .payto import check_payto
from .things import check_origin, check_thing

HASH_BYTES = 32
ZERO_HASH = bytes(HASH_BYTES)
MAX_TIME = 2**53 - 1

#: Text (labels, receipt references) never holds these code points: C0 controls,
#: DEL, C1 controls, line and paragraph separators, bidi embeddings and overrides
#: (U+2028-U+202E), bidi isolates (U+2066-U+2069).
FORBIDDEN_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")
#: The Unicode White_Space code points, none of which may begin or end a label.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)

_MISSING = object()


def text_problem(value: str) -> str | None:
    """Why ``value`` breaks the text rule, or ``None`` (SPEC §5, common field types)."""
    bad = FORBIDDEN_TEXT.search(value)
    if bad is not None:
        return f"code point U+{ord(bad.group()):04X} is not allowed"
    return None


def label_problem(value: str, max_bytes: int) -> str | None:
    """Why ``value`` is not a label of at most ``max_bytes`` bytes, or ``None``."""
    if not value:
        return "must not be empty"
    if len(value) > max_bytes or len(value.encode("utf-8")) > max_bytes:
        return f"longer than {max_bytes} bytes"
    if value[0] in WHITE_SPACE or value[-1] in WHITE_SPACE:
        return "must not begin or end with white space"
    return text_problem(value)


@functools.lru_cache(maxsize=65536)
def _thing_ok(value: str) -> bool:
    """Cached verdict of check_thing (things repeat: every click, claim, settlement)."""
    try:
        check_thing(value)
    except SchemaError:
        return False
    return True


def check_thing_field(value: object, where: str) -> str:
    """A thing field: normalised text (``bad-thing`` for anything else)."""
    if type(value) is str and _thing_ok(value):
        return value
    try:
        return check_thing(value)  # type: ignore[arg-type]  # raises for any non-thing
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}", code="bad-thing") from None


def check_origin_field(value: object, where: str) -> str:
    try:
        return check_origin(value)  # type: ignore[arg-type]  # raises for any non-origin
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}", code="bad-origin") from None


def check_payto_field(value: object, where: str) -> str:
    return check_payto(value, where)


def check_key_field(value: object, where: str) -> bytes:
    """A key field: ``bad-key`` for any value that is not an admitted 32-byte key."""
    if type(value) is not bytes:
        raise BadKey(f"{where}: expected a 32-byte key, got {type(value).__name__}")
    try:
        return keys.admit_key(value)
    except BadKey as exc:
        raise BadKey(f"{where}: {exc}") from None


class Reader:
    """Reads the fields of one decoded map (see the module doc)."""

    __slots__ = ("_m", "_seen", "_where")

    def __init__(self, value: object, where: str) -> None:
        if type(value) is not dict:
            raise SchemaError(f"{where}: expected a map")
        self._m: dict[str, Any] = value
        self._seen: list[str] = []  # fields read so far
        self._where = where

    def _get(self, name: str, optional: bool) -> Any:
        v = self._m.get(name, _MISSING)
        if v is _MISSING:
            if optional:
                return _MISSING
            raise SchemaError(f"{self._where}: missing field {name!r}")
        self._seen.append(name)
        return v

    def _err(self, name: str, what: str) -> SchemaError:
        return SchemaError(f"{self._where}.{name}: {what}")

    def uint(self, name: str, *, lo: int = 0, hi: int = MAX_AMOUNT,
             optional: bool = False) -> Any:
        """An unsigned integer in ``lo..hi`` (``None`` for a missing optional field)."""
        v = self._get(name, optional)
        if v is _MISSING:
            return None
        if type(v) is not int or not lo <= v <= hi:
            raise self._err(name, f"expected an unsigned integer {lo}..{hi}")
        return v

    def bstr(self, name: str, *, lo: int = 0, hi: int, optional: bool = False) -> Any:
        """A byte string of ``lo..hi`` bytes (``None`` for a missing optional field)."""
        v = self._get(name, optional)
        if v is _MISSING:
            return None
        if type(v) is not bytes or not lo <= len(v) <= hi:
            raise self._err(name, f"expected a byte string of {lo}..{hi} bytes")
        return v

    def hash(self, name: str, length: int = HASH_BYTES) -> bytes:
        """A byte string of exactly ``length`` bytes (a hash, an ID, a salt)."""
        v = self._get(name, False)
        if type(v) is not bytes or len(v) != length:
            raise self._err(name, f"expected a byte string of {length} bytes")
        return v

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        """Text that is one of ``options``."""
        v = self._get(name, False)
        if type(v) is not str or v not in options:
            raise self._err(name, f"expected one of {', '.join(options)}")
        return v

    def label(self, name: str, *, max_bytes: int) -> str:
        """Human text: 1..max_bytes, the text rule, no white space at either end."""
        v = self._get(name, False)
        if type(v) is not str:
            raise self._err(name, "expected text")
        problem = label_problem(v, max_bytes)
        if problem is not None:
            raise self._err(name, problem)
        return v

    def text(self, name: str, *, max_bytes: int) -> str:
        """Text of 0..max_bytes bytes under the text rule."""
        v = self._get(name, False)
        if type(v) is not str:
            raise self._err(name, "expected text")
        if len(v) > max_bytes or len(v.encode("utf-8")) > max_bytes:
            raise self._err(name, f"longer than {max_bytes} bytes")
        problem = text_problem(v)
        if problem is not None:
            raise self._err(name, problem)
        return v

    def key(self, name: str, *, optional: bool = False) -> Any:
        v = self._get(name, optional)
        if v is _MISSING:
            return None
        if type(v) is bytes and len(v) == keys.KEY_BYTES:
            try:
                return keys.admit_key(v)
            except BadKey:
                pass
        return check_key_field(v, f"{self._where}.{name}")

    def month(self, name: str = "month") -> str:
        return check_month(self._get(name, False), f"{self._where}.{name}")

    def currency(self, name: str = "currency") -> str:
        v = self._get(name, False)
        if type(v) is not str or CURRENCY_RE.match(v) is None:
            raise SchemaError(f"{self._where}.{name}: expected three ASCII capitals A-Z",
                              code="bad-currency")
        return v

    def thing(self, name: str, *, optional: bool = False) -> Any:
        v = self._get(name, optional)
        if v is _MISSING:
            return None
        if type(v) is str and _thing_ok(v):
            return v
        return check_thing_field(v, f"{self._where}.{name}")

    def array(self, name: str, *, lo: int = 0, hi: int) -> list[Any]:
        """An array of ``lo..hi`` items (the items are the caller's to check)."""
        v = self._get(name, False)
        if type(v) is not list:
            raise self._err(name, "expected an array")
        if not lo <= len(v) <= hi:
            raise self._err(name, f"expected {lo}..{hi} items, got {len(v)}")
        return v

    def things(self, name: str, *, lo: int, hi: int) -> tuple[str, ...]:
        """A sorted array of things: count, every item (``bad-thing``), then the order."""
        items = self.array(name, lo=lo, hi=hi)
        for i, v in enumerate(items):
            if type(v) is not str or not _thing_ok(v):
                check_thing_field(v, f"{self._where}.{name}[{i}]")
        self._ascending(name, items)
        return tuple(items)

    def origins(self, name: str, *, lo: int, hi: int) -> tuple[str, ...]:
        """A sorted array of origins: count, every item (``bad-origin``), then the order."""
        items = self.array(name, lo=lo, hi=hi)
        for i, v in enumerate(items):
            check_origin_field(v, f"{self._where}.{name}[{i}]")
        self._ascending(name, items)
        return tuple(items)

    def paytos(self, name: str, *, lo: int, hi: int) -> tuple[str, ...]:
        """An array of payto URIs in the author's order: count, every item (``bad-payto``),
        then no duplicates."""
        items = self.array(name, lo=lo, hi=hi)
        for i, v in enumerate(items):
            check_payto_field(v, f"{self._where}.{name}[{i}]")
        if len(set(items)) != len(items):
            raise self._err(name, "duplicate items")
        return tuple(items)

    def _ascending(self, name: str, items: list[Any]) -> None:
        # text: code point order is the order of the UTF-8 bytes
        for i in range(1, len(items)):
            if not items[i - 1] < items[i]:
                raise self._err(name, "items must be strictly ascending (sorted, no "
                                      "duplicates)")

    def map(self, name: str) -> Reader:
        """A nested map, read field by field at this point."""
        return Reader(self._get(name, False), f"{self._where}.{name}")

    def done(self) -> None:
        """Refuse unknown fields (after every known field was read)."""
        if len(self._seen) == len(self._m):  # every field read (and only those exist)
            return
        extra = sorted(set(self._m) - set(self._seen))
        raise SchemaError(f"{self._where}: unknown field(s) {extra}")

    def where(self, name: str) -> str:
        return f"{self._where}.{name}"
