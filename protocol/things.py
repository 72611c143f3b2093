"""Thing identities: the canonical form of the URIs that clicks point at (SPEC.md, "Things").

A *thing* is whatever a supporter can click: a web page (``http``/``https`` URL, a
"web thing") or any other absolute URI (``urn:``, ``did:``, ``ipfs:`` ... an "other URI").
Two clicks are for the same thing exactly when their normalised strings are equal, so
every implementation MUST produce byte-identical output; the algorithm below is the
reference for the SPEC text and is kept deliberately literal.

* :func:`normalise_thing` -- user input -> canonical thing (raises :class:`LocalError`).
* :func:`check_thing` -- a string received from the network must already be canonical
  (raises :class:`SchemaError`).
* :func:`origin_of` -- ``scheme://host[:port]`` of a web thing, ``None`` otherwise.
* :func:`normalise_origin` / :func:`check_origin` -- the same pair for creator origins.

A normalised thing or origin is always pure ASCII.  This module is pure: no I/O, no clock,
no randomness, no logging.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable
from typing import Final, NamedTuple

import idna

from .errors import LocalError, SchemaError

__all__ = [
    "MAX_THING_BYTES",
    "NEW_THING_SCHEMES",
    "check_new_thing",
    "check_origin",
    "check_thing",
    "normalise_origin",
    "normalise_thing",
    "origin_of",
]

#: Maximum UTF-8 length (in bytes) of a normalised thing (and of a normalised origin).
MAX_THING_BYTES: Final = 2048

#: The schemes a new click or subscription may name (SPEC §6.1.6).  Things received from
#: the network are not limited to these (§6.1.3): the list can grow without splitting the
#: network.  ``javascript:``, ``data:``, ``file:`` and every scheme not listed are refused.
NEW_THING_SCHEMES: Final = ("http", "https", "urn", "did", "doi", "ipfs", "ipns", "at")

_THING: Final = "bad-thing"
_ORIGIN: Final = "bad-origin"

# -- character classes (RFC 3986 §2) -----------------------------------------------------

#: Stripped from both ends of user input: the WHATWG "ASCII whitespace".
_STRIP: Final = "\t\n\x0c\r "

#: Anything left in the input that is an ASCII control, a space, a Unicode White_Space
#: character, or a lone surrogate is an error.
_FORBIDDEN_RE: Final = re.compile(
    "[\x00-\x20\x7f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ud800-\udfff]"
)

_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_SCHEME_SLASHES_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")

_DIGITS: Final = frozenset(string.digits)
_HEX: Final = frozenset(string.hexdigits)
_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")
_SUB_DELIMS: Final = frozenset("!$&'()*+,;=")
_GEN_DELIMS: Final = frozenset(":/?#[]@")
_PATH_CHARS: Final = _UNRESERVED | _SUB_DELIMS | frozenset(":@/")
_QUERY_CHARS: Final = _PATH_CHARS | frozenset("?")
_URI_CHARS: Final = _UNRESERVED | _SUB_DELIMS | _GEN_DELIMS
_HOST_CHARS: Final = frozenset(string.ascii_lowercase + string.digits + "-._~")

_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}

# RFC 3986 §3.2.2 IPv6address, written out as a regular expression.
_H16: Final = "[0-9A-Fa-f]{1,4}"
_DEC_OCTET: Final = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LS32: Final = rf"(?:{_H16}:{_H16}|{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}})"
_IPV6_RE: Final = re.compile(
    "|".join(
        (
            rf"(?:{_H16}:){{6}}{_LS32}",
            rf"::(?:{_H16}:){{5}}{_LS32}",
            rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        )
    )
)


class _Invalid(Exception):
    """Internal: the text is not acceptable; the message says why (no code attached)."""


class _WebParts(NamedTuple):
    """The raw pieces of ``scheme "://" authority path ["?" query] ["#" fragment]``."""

    scheme: str
    authority: str
    path: str
    query: str | None
    fragment: str | None


# -- public API ---------------------------------------------------------------------------


def normalise_thing(text: str) -> str:
    """Turn user input into the canonical thing identity (SPEC.md, "Things").

    Raises :class:`LocalError` with code ``bad-thing`` if ``text`` cannot be a thing.
    """
    if not isinstance(text, str):
        raise LocalError("thing must be a string", code=_THING)
    try:
        return _normalise_thing(_prepare(text))
    except _Invalid as exc:
        raise LocalError(str(exc), code=_THING) from None


def check_new_thing(thing: str) -> str:
    """Return the normalised ``thing`` if its scheme may be clicked or subscribed to
    (:data:`NEW_THING_SCHEMES`); raise :class:`LocalError` (``bad-scheme``) otherwise."""
    scheme = thing.partition(":")[0]
    if scheme not in NEW_THING_SCHEMES:
        raise LocalError(f"things with the scheme {scheme + ':'!r} cannot be flattred (Rill "
                         f"takes {', '.join(s + ':' for s in NEW_THING_SCHEMES)})",
                         code="bad-scheme")
    return thing


def check_thing(s: str) -> str:
    """Return ``s`` if it is a canonical thing, else raise :class:`SchemaError`.

    The error code is ``bad-thing``; the message says what is wrong (typically the
    expected normalised form).
    """
    return _check_normal(s, "thing", normalise_thing, _THING)


def origin_of(thing: str) -> str | None:
    """The origin ``scheme://host[:port]`` of a web thing, or ``None`` for any other URI.

    ``thing`` is normalised first (so the result is the normalised origin, without the
    default port); raises :class:`LocalError` (``bad-thing``) if it is not a valid thing.
    """
    canonical = normalise_thing(thing)
    scheme, sep, rest = canonical.partition("://")
    if not sep or scheme not in _DEFAULT_PORTS:
        return None
    return f"{scheme}://{rest.partition('/')[0]}"


def normalise_origin(text: str) -> str:
    """Normalise a creator origin: ``"https://Example.ORG/"`` or ``"example.org"``.

    A bare host (no ``scheme://``) means ``https``.  Returns ``scheme://host[:port]``
    with no trailing slash.  Raises :class:`LocalError` with code ``bad-origin``.
    """
    if not isinstance(text, str):
        raise LocalError("origin must be a string", code=_ORIGIN)
    try:
        return _normalise_origin(_prepare(text))
    except _Invalid as exc:
        raise LocalError(str(exc), code=_ORIGIN) from None


def check_origin(s: str) -> str:
    """Return ``s`` if it is a canonical origin, else raise :class:`SchemaError`.

    The error code is ``bad-origin``.
    """
    return _check_normal(s, "origin", normalise_origin, _ORIGIN)


# -- the algorithm --------------------------------------------------------------------------


def _check_normal(s: object, what: str, normalise: Callable[[str], str], code: str) -> str:
    """Wire rule shared by things and origins: a string already in normal form."""
    if not isinstance(s, str):
        raise SchemaError(f"{what} must be a text string", code=code)
    if len(s) > MAX_THING_BYTES:
        raise SchemaError(
            f"{what} is too long: {len(s)} characters, at most {MAX_THING_BYTES} bytes allowed",
            code=code,
        )
    try:
        expected = normalise(s)
    except LocalError as exc:
        raise SchemaError(f"invalid {what}: {exc}", code=code) from None
    if expected != s:
        raise SchemaError(f"{what} is not normalised: expected {expected!r}", code=code)
    return s


def _prepare(text: str) -> str:
    """Rule A: strip ASCII whitespace at both ends; reject whitespace/controls left inside."""
    s = text.strip(_STRIP)
    bad = _FORBIDDEN_RE.search(s)
    if bad is not None:
        where = f"(U+{ord(bad.group()):04X}) at position {bad.start()}"
        if 0xD800 <= ord(bad.group()) <= 0xDFFF:
            raise _Invalid(f"contains a lone surrogate {where}")
        raise _Invalid(f"contains whitespace or a control character {where}")
    return s


def _normalise_thing(s: str) -> str:
    m = _SCHEME_RE.match(s)
    if m is None:
        raise _Invalid(f"{_short(s)} has no scheme (expected e.g. 'https://...' or 'urn:...')")
    scheme = m.group()[:-1].lower()
    rest = s[m.end() :]
    if scheme in _DEFAULT_PORTS:
        result = _normalise_web(_split_web(scheme, rest))
    else:
        result = _normalise_other(scheme, rest)
    _check_length(result, "thing")
    return result


def _normalise_origin(s: str) -> str:
    if _SCHEME_SLASHES_RE.match(s) is None:
        s = "https://" + s  # a bare host[:port] means https
    m = _SCHEME_RE.match(s)
    assert m is not None  # guaranteed by _SCHEME_SLASHES_RE or by the prefix just added
    scheme = m.group()[:-1].lower()
    if scheme not in _DEFAULT_PORTS:
        raise _Invalid(f"origin scheme must be http or https, not {scheme!r}")
    parts = _split_web(scheme, s[m.end() :])
    if parts.query is not None:
        raise _Invalid("an origin must not have a query ('?...')")
    if parts.fragment is not None:
        raise _Invalid("an origin must not have a fragment ('#...')")
    if parts.path not in ("", "/"):
        raise _Invalid(f"an origin must not have a path (got {_short(parts.path)})")
    result = f"{scheme}://{_normalise_authority(scheme, parts.authority)}"
    _check_length(result, "origin")
    return result


def _check_length(result: str, what: str) -> None:
    size = len(result.encode("utf-8"))
    if size > MAX_THING_BYTES:
        raise _Invalid(f"normalised {what} is {size} bytes long, at most {MAX_THING_BYTES} allowed")


def _split_web(scheme: str, rest: str) -> _WebParts:
    """Split what follows ``scheme:`` (RFC 3986 §3, "hier-part" with authority)."""
    if not rest.startswith("//"):
        raise _Invalid(f"a web thing must start with '{scheme}://' followed by a host")
    rest, hash_sign, fragment = rest[2:].partition("#")
    rest, question_mark, query = rest.partition("?")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    return _WebParts(
        scheme,
        authority,
        path,
        query if question_mark else None,
        fragment if hash_sign else None,
    )


def _normalise_web(parts: _WebParts) -> str:
    """Rule C: ``scheme "://" host [":" port] path ["?" query]``; the fragment is dropped."""
    authority = _normalise_authority(parts.scheme, parts.authority)
    path = _remove_dot_segments(_normalise_percent(parts.path, _PATH_CHARS, "path", decode=True))
    if not path:
        path = "/"
    out = f"{parts.scheme}://{authority}{path}"
    if parts.query:  # None (no '?') and "" (empty query) are both dropped
        out += "?" + _normalise_percent(parts.query, _QUERY_CHARS, "query", decode=True)
    return out


def _normalise_authority(scheme: str, authority: str) -> str:
    if "@" in authority:
        raise _Invalid("user information ('user@') is not allowed in a thing or origin")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _Invalid(f"unterminated IP literal in {_short(authority)}")
        host = f"[{_normalise_ipv6(authority[1:end])}]"
        after = authority[end + 1 :]
        if after and not after.startswith(":"):
            raise _Invalid(f"unexpected {_short(after)} after the IP literal")
        port = after[1:]
    else:
        raw_host, _, port = authority.partition(":")
        host = _normalise_reg_name(raw_host)
    port = _normalise_port(scheme, port)
    return f"{host}:{port}" if port else host


def _normalise_reg_name(raw: str) -> str:
    if not raw:
        raise _Invalid("the host is empty")
    if raw.isascii():
        host = raw.lower()
    else:
        try:
            host = idna.encode(raw, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise _Invalid(f"host {_short(raw)} is not a valid domain name: {exc}") from None
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise _Invalid("the host is empty")
    for c in host:
        if c not in _HOST_CHARS:
            raise _Invalid(f"host {_short(host)} contains {c!r}, which is not allowed")
    if "" in host.split("."):
        raise _Invalid(f"host {_short(host)} has an empty label")
    return host


def _normalise_ipv6(text: str) -> str:
    """RFC 3986 IPv6address -> RFC 5952 §4 text (lowercase, '::' for the longest zero run)."""
    if _IPV6_RE.fullmatch(text) is None:
        raise _Invalid(f"IP literal {_short(text)} is not an IPv6 address")
    value = int(ipaddress.IPv6Address(text))
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len = -1, 0
    i = 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    hextets = [f"{g:x}" for g in groups]
    if best_len < 2:
        return ":".join(hextets)
    head = ":".join(hextets[:best_start])
    tail = ":".join(hextets[best_start + best_len :])
    return f"{head}::{tail}"


def _normalise_port(scheme: str, raw: str) -> str:
    """Return the canonical port, or "" when it is absent, empty or the default."""
    if not raw:
        return ""
    if any(c not in _DIGITS for c in raw):
        raise _Invalid(f"port {_short(raw)} is not a decimal number")
    digits = raw.lstrip("0")
    if not digits or len(digits) > 5 or int(digits) > 65535:
        raise _Invalid(f"port {_short(raw)} is not in the range 1-65535")
    return "" if digits == _DEFAULT_PORTS[scheme] else digits


def _normalise_percent(text: str, allowed: frozenset[str], where: str, *, decode: bool) -> str:
    """Rule C.5 (``decode=True``) and rule D (``decode=False``) for one component.

    ``%xx`` -> ``%XX`` (decoded when it is unreserved and ``decode``); a character in
    ``allowed`` is copied; any other non-ASCII character becomes the ``%XX`` of its UTF-8
    bytes; any other ASCII character is percent-encoded if ``decode`` else an error.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            hh = text[i + 1 : i + 3]
            if len(hh) != 2 or hh[0] not in _HEX or hh[1] not in _HEX:
                raise _Invalid(
                    f"bad percent-encoding {_short(text[i : i + 3])} in the {where}: "
                    "'%' must be followed by two hexadecimal digits"
                )
            decoded = chr(int(hh, 16))
            out.append(decoded if decode and decoded in _UNRESERVED else "%" + hh.upper())
            i += 3
            continue
        if c in allowed:
            out.append(c)
        elif decode or not c.isascii():
            out.append("".join(f"%{b:02X}" for b in c.encode("utf-8")))
        else:
            raise _Invalid(f"character {c!r} is not allowed in a URI")
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute (or empty) path, done segment by segment."""
    if not path:
        return path
    out: list[str] = []
    segments = path.split("/")[1:]  # path starts with "/"
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if seg in (".", ".."):
            if seg == ".." and out:
                out.pop()
            if i == last:
                out.append("")  # "/a/.." -> "/", "/a/." -> "/a/"
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _normalise_other(scheme: str, rest: str) -> str:
    """Rule D: any scheme other than http/https is kept opaque apart from encoding."""
    if not rest:
        raise _Invalid(f"nothing follows the scheme '{scheme}:'")
    return f"{scheme}:{_normalise_percent(rest, _URI_CHARS, 'URI', decode=False)}"


def _short(s: str, limit: int = 60) -> str:
    """``repr`` of ``s`` cut to a readable length for error messages."""
    return repr(s if len(s) <= limit else s[:limit] + "...")
