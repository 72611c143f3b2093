"""Boundary values for structured fuzzing, one generator per field kind (SPEC.md §5).

Every generator takes a :class:`random.Random` and returns either a value valid for
its field (``valid_*``) or, with the ``Values`` helper, a value that is valid most of
the time and otherwise just outside the rule (``Values.month()`` ...).  Nothing here
imports rill: the fuzzer must be able to build what the product would refuse.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import nacl.bindings as nb
import nacl.signing

MAX_SAFE = 2**53 - 1
MAX_U64 = 2**64 - 1
#: Integers around every boundary a field may have (valid or not for a given field).
INT_EDGES = [0, 1, 2, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 2, MAX_SAFE,
             2**53, 2**63 - 1, 2**63, MAX_U64 - 1, MAX_U64]
#: Outside the CBOR subset or any field: negative, and 2**64 (a bignum tag on the wire).
INT_OUTSIDE = [-1, -2, -(2**63), -(2**64), 2**64]
WRONG_TYPES: list[Any] = ["1", "", b"", b"\x01", [], [1], {}, {"a": 1}, -1]

# -- months -------------------------------------------------------------------------

#: Digit sets Python's ``\d`` and ``int()`` accept besides ASCII.
DIGIT_SETS = {
    "fullwidth": 0xFF10, "arabic-indic": 0x0660, "extended-arabic-indic": 0x06F0,
    "devanagari": 0x0966, "math-bold": 0x1D7CE,
}
MONTH_EDGES = ["2000-01", "9999-12", "9999-11", "2000-02"]
MONTH_INVALID = ["1999-12", "10000-01", "0000-00", "2026-13", "2026-00", "2026-1", "226-01",
                 "2026/01", " 2026-01", "2026-01 ", "2026-01\n", "2026-01\x00", "", "2026",
                 "9999-13", "1999-01", "+999-12", "-001-01", "2026-1a", "2026--1"]


def to_digits(text: str, zero: int, only_year: bool = False) -> str:
    """Replace ASCII digits of ``text`` (only the year's if ``only_year``)."""
    out = []
    for i, ch in enumerate(text):
        if ch.isascii() and ch.isdigit() and (not only_year or i < 4):
            out.append(chr(zero + int(ch)))
        else:
            out.append(ch)
    return "".join(out)


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (integer arithmetic only)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_ascii_month(month: object) -> tuple[int, int] | None:
    """(year, month) of a month valid per SPEC §5 (ASCII digits only), else None."""
    if type(month) is not str or len(month) != 7 or month[4] != "-":
        return None
    y, mo = month[:4], month[5:]
    if not (y.isascii() and y.isdigit() and mo.isascii() and mo.isdigit()):
        return None
    yi, mi = int(y), int(mo)
    return (yi, mi) if 2000 <= yi <= 9999 and 1 <= mi <= 12 else None


def month_start(y: int, m: int) -> int:
    return days_from_civil(y, m, 1) * 86400


def month_end(month: str) -> int | None:
    """First second after ``month`` (valid months only), computed without calendar."""
    ym = parse_ascii_month(month)
    if ym is None:
        return None
    y, m = ym
    return month_start(y + (m == 12), 1 if m == 12 else m + 1)


# -- texts --------------------------------------------------------------------------

#: Pieces from every Unicode category a label or reference may meet.
TEXT_PIECES = {
    "ascii": ["Alice", "a", "Z", "0", "~", "-", "_", "名"],
    "c0": ["\x00", "\x01", "\t", "\n", "\x0b", "\x0c", "\r", "\x1b", "\x1f"],
    "del-c1": ["\x7f", "\x80", "\x85", "\x9b", "\x9f"],
    "bidi": ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
             "\u2069", "\u200e", "\u200f", "\u061c"],
    "separators": ["\u2028", "\u2029", "\u00a0", "\u3000", "\u2000", "\u200b", "\u1680"],
    "combining": ["e\u0301", "\u0301", "a" + "\u0300" * 40, "\u20dd"],
    "emoji": ["\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1eb\U0001f1f7",
              "\u2764\ufe0f"],
    "specials": ["\ufeff", "\ufffd", "\uffff", "\U0010ffff", "\U000e0001", "\ufdd0"],
    "scripts": ["\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u05e2\u05d1\u05e8\u05d9\u05ea",
                "\u4e2d\u6587", "\u0939\u093f\u0928\u094d\u0926\u0940", "\u00e9t\u00e9"],
    "spaces": [" ", "  "],
}
#: Categories a valid label/reference may contain (SPEC §5 and DESIGN decision B).
CLEAN_CATEGORIES = ["ascii", "combining", "emoji", "scripts", "specials"]


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8"))


def fill_to(rnd: random.Random, n_bytes: int, pieces: list[str]) -> str:
    """A text of exactly ``n_bytes`` UTF-8 bytes (pads with ASCII when a piece overshoots)."""
    out, size = [], 0
    while size < n_bytes:
        p = rnd.choice(pieces)
        if size + utf8_len(p) > n_bytes:
            p = "x" * (n_bytes - size)
        out.append(p)
        size += utf8_len(p)
    return "".join(out)


def text(rnd: random.Random, max_bytes: int, *, clean: bool, allow_empty: bool) -> str:
    """A text for a label (``allow_empty`` False) or a reference.  ``clean``: only
    characters the rules allow, trimmed; otherwise at least one forbidden piece."""
    cats = CLEAN_CATEGORIES if clean else list(TEXT_PIECES)
    shape = rnd.random()
    if shape < 0.15:
        s = fill_to(rnd, max_bytes, [p for c in cats for p in TEXT_PIECES[c]])
    elif shape < 0.2:
        s = fill_to(rnd, max_bytes + 1, [p for c in cats for p in TEXT_PIECES[c]])
    elif shape < 0.25 and allow_empty:
        s = ""
    else:
        s = "".join(rnd.choice(TEXT_PIECES[rnd.choice(cats)]) for _ in range(rnd.randint(1, 6)))
    if clean:
        s = s.strip() or ("" if allow_empty else "x")
        while utf8_len(s) > max_bytes:
            s = s[:-1].rstrip() or "x"
    elif not any(ch in s for c in ("c0", "del-c1", "bidi", "separators", "spaces")
                 for p in TEXT_PIECES[c] for ch in p):
        bad = rnd.choice(TEXT_PIECES[rnd.choice(["c0", "del-c1", "bidi", "separators"])])
        s = rnd.choice([bad + s, s + bad, s[:1] + bad + s[1:], " " + s, s + " "])
    return s


# -- keys ---------------------------------------------------------------------------

#: The eight points of small order, canonical encodings (RFC 8032 / speccheck).
SMALL_ORDER = [bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
)]
#: y >= p (non-canonical) encodings.
NON_CANONICAL = [bytes.fromhex(h) for h in (
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
)]


def off_curve(rnd: random.Random) -> bytes:
    while True:
        k = rnd.randbytes(32)
        if not nb.crypto_core_ed25519_is_valid_point(k) and k not in SMALL_ORDER:
            return k


def mixed_order(pub: bytes) -> bytes:
    """A valid point plus a point of order 8: on the curve, not in the prime subgroup."""
    return nb.crypto_core_ed25519_add(pub, SMALL_ORDER[4])


def bad_key(rnd: random.Random, pub: bytes) -> Any:
    kind = rnd.randrange(7)
    if kind == 0:
        return rnd.choice(SMALL_ORDER)
    if kind == 1:
        return rnd.choice(NON_CANONICAL)
    if kind == 2:
        return off_curve(rnd)
    if kind == 3:
        return mixed_order(pub)
    if kind == 4:
        return rnd.choice([pub[:31], pub + b"\x00", b"", bytes(64)])
    if kind == 5:
        return pub.hex()
    return rnd.choice(WRONG_TYPES)


def signing_key(name: str) -> nacl.signing.SigningKey:
    import hashlib

    return nacl.signing.SigningKey(hashlib.sha256(b"rill fuzz key " + name.encode()).digest())


# -- things, origins, payto -----------------------------------------------------------

VALID_THINGS = [
    "urn:isbn:0451450523", "mailto:Alice@Example.org", "ipfs://bafy/Caf%C3%A9#%C3%9C",
    "http://[2001:db8::1]:8080/", "https://xn--bcher-kva.example/",
    "https://example.org/~user/%2Fa%3F?q=A%E2%82%AC", "https://192.168.0.1/",
    "https://a.example/?b=2&a=1/?c", "x:!$&'()*+,;=:@/?#[]",
    "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd",
    "https://example.org/" + "a" * 2028,  # exactly 2048 bytes
]
INVALID_THINGS = [
    "https://Example.org/", " https://example.org/", "https://example.org", "https://example.org/#x",
    "https://example.org/?", "https://example.org:443/", "https://example.org/%7E",
    "https://example.org/%e2%82%ac", "https://example.org/" + "a" * 2029, "urn:", "urn:a<b",
    "https://exa mple.org/", "https://ex\u00e4mple.org/", "https://example.org/caf\u00e9",
    "https://[fe80::1%25eth0]/", "https://user@example.org/", "", "example.org",
    "https://example.org/\u202e", "HTTPS://example.org/", "https://example.org/a/../b",
]
VALID_ORIGINS = ["http://[::1]:8443", "https://xn--bcher-kva.example", "https://example.org:8443",
                 "http://192.168.0.1", "https://example.org"]
INVALID_ORIGINS = ["https://Example.org", "https://example.org/", "example.org",
                   "https://example.org:443", "ftp://example.org", "https://example.org?",
                   "https://u@example.org", "https://example.org/a", ""]
VALID_PAYTO = ["payto://iban/DE75512108001245126199", "payto://bitcoin/bc1qxy2kgdygjrsqtzq2n0yrf",
               "payto://x-ln/lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfq",
               "payto://iban/DE75512108001245126199?receiver-name=A%20B",
               "payto://a/" + "b" * 502]  # exactly 512 bytes
INVALID_PAYTO = ["payto://IBAN/DE75", "payto://iban/DE 75", "mailto:x@example.org",
                 "payto://iban/", "payto://iban/x#y", "payto://a/" + "b" * 503,
                 "payto://iban/\u00e9"]


class Values:
    """Field values for one object: valid, but with probability ``p`` just outside."""

    def __init__(self, rnd: random.Random, p: float) -> None:
        self.r = rnd
        self.p = p
        self.bent: list[str] = []  # which fields were made invalid (a description)

    def bend(self, name: str) -> bool:
        if self.r.random() < self.p:
            self.bent.append(name)
            return True
        return False

    def either(self, name: str, valid: Callable[[], Any], invalid: Callable[[], Any]) -> Any:
        return invalid() if self.bend(name) else valid()

    def uint(self, name: str, lo: int = 0, hi: int = MAX_SAFE) -> Any:
        r = self.r

        def valid() -> int:
            c = r.random()
            if c < 0.3:
                return r.choice([lo, min(lo + 1, hi), hi, max(hi - 1, lo)])
            if c < 0.6:
                return r.randint(lo, min(hi, lo + 100))
            if c < 0.8:
                edges = [e for e in INT_EDGES if lo <= e <= hi]
                return r.choice(edges) if edges else lo
            return r.randint(lo, hi)

        def invalid() -> Any:
            c = r.random()
            if c < 0.5:
                out = [e for e in INT_EDGES + INT_OUTSIDE + [lo - 1, hi + 1] if not lo <= e <= hi]
                return r.choice(out)
            return r.choice(WRONG_TYPES)

        return self.either(name, valid, invalid)

    def month(self, name: str, recent: list[str]) -> Any:
        r = self.r

        def valid() -> str:
            c = r.random()
            if c < 0.75:
                return r.choice(recent)
            if c < 0.9:
                return r.choice(MONTH_EDGES)
            return f"{r.randint(2000, 9999):04d}-{r.randint(1, 12):02d}"

        def invalid() -> Any:
            c = r.random()
            if c < 0.4:
                return to_digits(valid(), r.choice(list(DIGIT_SETS.values())),
                                 only_year=r.random() < 0.5)
            if c < 0.9:
                return r.choice(MONTH_INVALID)
            return r.choice([202609, b"2026-09", ["2026-09"]])

        return self.either(name, valid, invalid)

    def currency(self, name: str) -> Any:
        r = self.r
        return self.either(
            name, lambda: r.choice(["EUR", "EUR", "USD", "JPY", "KWD", "CLF", "XXX", "ZZZ"]),
            lambda: r.choice(["eur", "EU", "EURO", "\uff25\uff35\uff32", "E\x00R", "", "E R",
                              "\u00c9UR", 978, b"EUR"]))

    def hash(self, name: str, known: list[bytes] | None = None) -> Any:
        r = self.r

        def valid() -> bytes:
            c = r.random()
            if known and c < 0.6:
                return r.choice(known)
            if c < 0.75:
                return bytes(32)
            return r.randbytes(32)

        return self.either(name, valid, lambda: r.choice(
            [r.randbytes(31), r.randbytes(33), b"", r.randbytes(32).hex(), 0]))

    def key(self, name: str, pub: bytes) -> Any:
        return self.either(name, lambda: pub, lambda: bad_key(self.r, pub))

    def label(self, name: str, max_bytes: int) -> Any:
        return self.either(name, lambda: text(self.r, max_bytes, clean=True, allow_empty=False),
                           lambda: text(self.r, max_bytes, clean=False, allow_empty=True))

    def reference(self, name: str) -> Any:
        return self.either(name, lambda: text(self.r, 256, clean=True, allow_empty=True),
                           lambda: text(self.r, 256, clean=False, allow_empty=True))

    def thing(self, name: str, own: list[str]) -> Any:
        r = self.r
        return self.either(name, lambda: r.choice(own if own and r.random() < 0.7
                                                   else VALID_THINGS),
                           lambda: r.choice([*INVALID_THINGS, b"https://a.example/", 7]))

    def time(self, name: str, near: list[int]) -> Any:
        r = self.r
        if not self.bend(name):
            c = r.random()
            if c < 0.7:
                return max(0, min(MAX_SAFE, r.choice(near) + r.choice([-301, -1, 0, 1, 299,
                                                                        301, 3600])))
            return r.choice([0, 1, MAX_SAFE, 253402300799, 253402300800, 2**31 - 1, 2**32])
        return r.choice([MAX_SAFE + 1, -1, MAX_U64, "0", b""])

    def strings(self, name: str, pool: list[str], bad: list[str], lo: int, hi: int,
                *, ordered: bool) -> Any:
        """An array of strings with its count and order rules (sorted or just unique)."""
        r = self.r
        c = r.random()
        n = r.choice([lo, hi]) if c < 0.2 else r.randint(lo, min(hi, lo + 3))
        items = list(dict.fromkeys(r.choice(pool) for _ in range(n))) or [pool[0]]
        if ordered:
            items.sort(key=lambda s: s.encode("utf-8"))
        if self.bend(name):
            kind = r.randrange(5)
            if kind == 0:
                items = []
            elif kind == 1:
                items = [*items, items[-1]]  # duplicate
            elif kind == 2 and len(items) > 1:
                items = items[::-1]
            elif kind == 3:
                items = [*items, r.choice(bad)]
            else:
                items = (pool * (hi // len(pool) + 2))[:hi + 1]  # one too many
        return items
