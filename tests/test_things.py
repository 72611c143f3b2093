"""Tests of rill.protocol.things (SPEC.md, "Things")."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rill.protocol.errors import LocalError, SchemaError
from rill.protocol.things import (
    MAX_THING_BYTES,
    check_origin,
    check_thing,
    normalise_origin,
    normalise_thing,
    origin_of,
)

# The example table of the SPEC section (docs/_spec_things.md), in the same order.
EXAMPLES: list[tuple[str, str]] = [
    ("  HTTPS://Example.ORG  ", "https://example.org/"),
    ("https://example.org:443/", "https://example.org/"),
    ("http://example.org:0080", "http://example.org/"),
    ("https://example.org:/x", "https://example.org/x"),
    ("https://Example.org.:08443/a/./b/../c", "https://example.org:8443/a/c"),
    ("https://Bücher.example/", "https://xn--bcher-kva.example/"),
    ("http://ｅｘａｍｐｌｅ.org/", "http://example.org/"),
    (
        "https://example.org/%7euser/%2fa%3f?q=%41%e2%82%ac",
        "https://example.org/~user/%2Fa%3F?q=A%E2%82%AC",
    ),
    ("https://example.org/café?tag=été", "https://example.org/caf%C3%A9?tag=%C3%A9t%C3%A9"),
    ("https://example.org/{x}^?a[]=1", "https://example.org/%7Bx%7D%5E?a%5B%5D=1"),
    ("https://example.org/a/%2E%2E/b", "https://example.org/b"),
    ("https://example.org/page#section", "https://example.org/page"),
    ("https://example.org/?#top", "https://example.org/"),
    ("https://example.org?b=2&a=1/?c", "https://example.org/?b=2&a=1/?c"),
    ("http://[2001:DB8:0:0:0:0:0:1]:8080", "http://[2001:db8::1]:8080/"),
    ("https://192.168.0.1:443", "https://192.168.0.1/"),
    ("URN:ISBN:0451450523", "urn:ISBN:0451450523"),
    (
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    ),
    (
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3e/Caf%c3%a9#Ü",
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3e/Caf%C3%A9#%C3%9C",
    ),
    ("mailto:Alice@Example.org", "mailto:Alice@Example.org"),
]

# Inputs that normalise_thing rejects, with a fragment of the expected message.
ERRORS: list[tuple[str, str]] = [
    ("example.org", "no scheme"),
    ("", "no scheme"),
    ("   ", "no scheme"),
    ("1http://example.org/", "no scheme"),
    ("https://exa mple.org/", "U+0020"),
    ("https://example.org/\x00", "U+0000"),
    ("https://example.org/\x7f", "U+007F"),
    ("https://example.org/a\u00a0b", "U+00A0"),
    ("https://example.org/\u3000", "U+3000"),
    ("https://example.org/\ud800", "lone surrogate"),
    ("\vhttps://example.org/", "U+000B"),
    ("https:/example.org", "must start with 'https://'"),
    ("http:example.org", "must start with 'http://'"),
    ("https://", "host is empty"),
    ("https:///path", "host is empty"),
    ("https://:8080/", "host is empty"),
    ("https://./", "host is empty"),
    ("https://user@example.org/", "user information"),
    ("https://user:pw@example.org/", "user information"),
    ("https://@example.org/", "user information"),
    ("https://a..b/", "empty label"),
    ("https://.example.org/", "empty label"),
    ("https://example.org../", "empty label"),
    ("https://ex%41mple.org/", "contains '%'"),
    ("https://example.org\\foo", "contains '\\\\'"),
    ("https://exa!mple.org/", "contains '!'"),
    ("https://bad_ü.de/", "not a valid domain name"),
    ("https://-bücher.de/", "not a valid domain name"),
    ("https://example.org:0/", "range 1-65535"),
    ("https://example.org:000/", "range 1-65535"),
    ("https://example.org:65536/", "range 1-65535"),
    ("https://example.org:1000000/", "range 1-65535"),
    ("https://example.org:8o/", "not a decimal number"),
    ("https://example.org:+80/", "not a decimal number"),
    ("https://example.org:٨٠/", "not a decimal number"),
    ("https://example.org:80:80/", "not a decimal number"),
    ("https://[::1/", "unterminated IP literal"),
    ("https://[::1]x/", "after the IP literal"),
    ("https://[fe80::1%25eth0]/", "not an IPv6 address"),
    ("https://[1.2.3.4]/", "not an IPv6 address"),
    ("https://[v1.fe]/", "not an IPv6 address"),
    ("https://[1:2:3:4:5:6:7:8:9]/", "not an IPv6 address"),
    ("https://[1::2::3]/", "not an IPv6 address"),
    ("https://[::01.2.3.4]/", "not an IPv6 address"),
    ("https://[]/", "not an IPv6 address"),
    ("https://example.org/%zz", "bad percent-encoding '%zz' in the path"),
    ("https://example.org/%", "bad percent-encoding '%' in the path"),
    ("https://example.org/%4", "bad percent-encoding '%4' in the path"),
    ("https://example.org/?q=100%", "in the query"),
    ("https://example.org/%٤١", "bad percent-encoding"),
    ("urn:", "nothing follows the scheme"),
    ("urn:a<b", "'<' is not allowed"),
    ("urn:a\\b", "is not allowed"),
    ("did:x%g0", "bad percent-encoding"),
    ("https://example.org/" + "a" * (MAX_THING_BYTES - 19), "2049 bytes long"),
    ("https://example.org/" + "é" * 400, "bytes long, at most 2048"),
    ("urn:" + "x" * MAX_THING_BYTES, "bytes long"),
]


# -- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), EXAMPLES)
def test_examples(text: str, expected: str) -> None:
    assert normalise_thing(text) == expected
    assert normalise_thing(expected) == expected
    assert check_thing(expected) == expected


@pytest.mark.parametrize(("text", "fragment"), ERRORS)
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(LocalError) as info:
        normalise_thing(text)
    assert info.value.code == "bad-thing"
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)  # LocalError is a ValueError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://example.org:80/a", "http://example.org/a"),
        ("https://example.org:80/", "https://example.org:80/"),
        ("http://example.org:443/", "http://example.org:443/"),
        ("https://example.org:00000000000000000000443/", "https://example.org/"),
        ("https://example.org:65535", "https://example.org:65535/"),
        ("https://example.org:1", "https://example.org:1/"),
        ("https://example.org", "https://example.org/"),
        ("https://example.org#", "https://example.org/"),
        ("https://example.org?", "https://example.org/"),
        ("https://example.org?#", "https://example.org/"),
        ("https://example.org/?%", None),
        ("https://example.org/#%zz", "https://example.org/"),  # the fragment is not checked
        ("https://example.org/#a#b", "https://example.org/"),
        ("https://example.org/a?b#c?d", "https://example.org/a?b"),
        ("https://example.org/a/b/.", "https://example.org/a/b/"),
        ("https://example.org/a/b/..", "https://example.org/a/"),
        ("https://example.org/..", "https://example.org/"),
        ("https://example.org/../../a", "https://example.org/a"),
        ("https://example.org/a//../b", "https://example.org/a/b"),
        ("https://example.org/.//a", "https://example.org//a"),
        ("https://example.org/a/.b/..c/b..", "https://example.org/a/.b/..c/b.."),
        ("https://example.org/%2e/x/%2E%2e/", "https://example.org/"),
        ("https://example.org/a%2Fb/../c", "https://example.org/c"),
        ("https://example.org/%41%5a%61%7A%30%39%2D%2E%5F%7E", "https://example.org/AZaz09-._~"),
        ("https://example.org/%25%20%2f%3F%23%40", "https://example.org/%25%20%2F%3F%23%40"),
        ("https://example.org/!$&'()*+,;=:@", "https://example.org/!$&'()*+,;=:@"),
        ("https://example.org/?!$&'()*+,;=:@/?", "https://example.org/?!$&'()*+,;=:@/?"),
        ('https://example.org/"<>`|[]', "https://example.org/%22%3C%3E%60%7C%5B%5D"),
        (
            'https://example.org/?"<>`|[]{}^\\',
            "https://example.org/?%22%3C%3E%60%7C%5B%5D%7B%7D%5E%5C",
        ),
        ("https://example.org/\U0001f600", "https://example.org/%F0%9F%98%80"),
        ("https://example.org/\u0085x", None),
        ("https://example.org/\u200bx", "https://example.org/%E2%80%8Bx"),  # not White_Space
        ("https://EXAMPLE.org./", "https://example.org/"),
        ("https://a_b~c.example/", "https://a_b~c.example/"),
        ("https://XN--BCHER-KVA.example/", "https://xn--bcher-kva.example/"),
        ("https://bücher.example。/", "https://xn--bcher-kva.example/"),
        ("https://１.２.３.４/", "https://1.2.3.4/"),
        ("https://1.2.3.4./", "https://1.2.3.4/"),
        ("https://192.168.000.001/", "https://192.168.000.001/"),  # not an IPv4 literal: a name
        ("https://0x7F.1/", "https://0x7f.1/"),
        ("https://[::]/", "https://[::]/"),
        ("https://[::1]:443/", "https://[::1]/"),
        ("https://[::1]:/", "https://[::1]/"),
        ("https://[0:0:0:0:0:0:0:1]", "https://[::1]/"),
        ("https://[1:0:0:2:0:0:0:3]", "https://[1:0:0:2::3]/"),
        ("https://[1:0:0:2:0:0:3:4]", "https://[1::2:0:0:3:4]/"),
        ("https://[1:0:2:3:4:5:6:7]", "https://[1:0:2:3:4:5:6:7]/"),
        ("https://[1:2:3:4:5:6:7::]", "https://[1:2:3:4:5:6:7:0]/"),
        ("https://[::FFFF:192.0.2.1]/", "https://[::ffff:c000:201]/"),
        ("https://[0001:0DB8::00AB]/", "https://[1:db8::ab]/"),
        ("x:%2f%7e", "x:%2F%7E"),  # other URIs: hex uppercased, never decoded
        ("X-Y+Z.1:ok", "x-y+z.1:ok"),
        ("urn:a:b#Frag%aa?/", "urn:a:b#Frag%AA?/"),
        ("urn:[]@!$&'()*+,;=#x#y", "urn:[]@!$&'()*+,;=#x#y"),
        ("urn:ü", "urn:%C3%BC"),
        ("localhost:8080", "localhost:8080"),  # a bare host:port reads as scheme "localhost"
        ("ipfs://Bafy/Path", "ipfs://Bafy/Path"),
        ("ws://Example.ORG:80/", "ws://Example.ORG:80/"),
        ("https://example.org/" + "a" * (MAX_THING_BYTES - 19), None),
    ],
)
def test_more_cases(text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(LocalError):
            normalise_thing(text)
    else:
        assert normalise_thing(text) == expected
        assert check_thing(expected) == expected


def test_length_limit_boundary() -> None:
    ok = "https://example.org/" + "a" * (MAX_THING_BYTES - 20)
    assert len(ok) == MAX_THING_BYTES
    assert check_thing(ok) == ok
    with pytest.raises(LocalError, match="2049 bytes"):
        normalise_thing(ok + "b")
    with pytest.raises(SchemaError, match="too long") as info:
        check_thing(ok + "b")
    assert info.value.code == "bad-thing"
    # the limit applies to the normalised form, not to the input
    assert normalise_thing(ok + "#" + "f" * 5000) == ok
    assert normalise_thing("https://example.org/a/.." + "/." * 3000) == "https://example.org/"


def test_non_string_input() -> None:
    with pytest.raises(LocalError):
        normalise_thing(b"https://example.org/")  # type: ignore[arg-type]
    with pytest.raises(SchemaError) as info:
        check_thing(None)  # type: ignore[arg-type]
    assert info.value.code == "bad-thing"
    with pytest.raises(LocalError) as linfo:
        normalise_origin(42)  # type: ignore[arg-type]
    assert linfo.value.code == "bad-origin"
    with pytest.raises(SchemaError):
        check_origin(42)  # type: ignore[arg-type]


# -- check_thing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        ("https://Example.org/", "https://example.org/"),  # uppercase host
        ("HTTPS://example.org/", "https://example.org/"),  # uppercase scheme
        ("https://example.org:443/", "https://example.org/"),  # default port
        ("http://example.org:80/", "http://example.org/"),
        ("https://example.org:/", "https://example.org/"),  # empty port
        ("https://example.org:08080/", "https://example.org:8080/"),
        ("https://example.org", "https://example.org/"),  # no slash for the empty path
        ("https://example.org?q", "https://example.org/?q"),
        ("https://example.org/%e2%82%ac", "https://example.org/%E2%82%AC"),  # lowercase hex
        ("https://example.org/%7E", "https://example.org/~"),  # encoded unreserved
        ("https://example.org/#x", "https://example.org/"),  # fragment
        ("https://example.org/?", "https://example.org/"),  # empty query
        ("https://example.org/a/../b", "https://example.org/b"),  # dot segments
        ("https://example.org./", "https://example.org/"),  # trailing dot
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),  # not ASCII
        ("https://example.org/é", "https://example.org/%C3%A9"),
        ("https://[::0001]/", "https://[::1]/"),
        (" https://example.org/", "https://example.org/"),  # surrounding whitespace
        ("https://example.org/\n", "https://example.org/"),
        ("URN:x", "urn:x"),
        ("urn:x%2f", "urn:x%2F"),
    ],
)
def test_check_thing_rejects_non_normalised(received: str, expected: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_thing(received)
    assert info.value.code == "bad-thing"
    assert str(info.value) == f"thing is not normalised: expected {expected!r}"
    assert info.value.reason.startswith("bad-thing: thing is not normalised")


@pytest.mark.parametrize(("text", "fragment"), ERRORS[:-3])
def test_check_thing_rejects_invalid(text: str, fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_thing(text)
    assert info.value.code == "bad-thing"
    assert str(info.value).startswith("invalid thing: ")
    assert fragment in str(info.value)


# -- origins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://Example.ORG", "https://example.org"),
        ("https://example.org/", "https://example.org"),
        ("example.org", "https://example.org"),
        (" Example.org.:443 ", "https://example.org"),
        ("example.org:8443", "https://example.org:8443"),
        ("HTTP://example.org:80/", "http://example.org"),
        ("http://example.org:443", "http://example.org:443"),
        ("bücher.example", "https://xn--bcher-kva.example"),
        ("[::1]:8443", "https://[::1]:8443"),
        ("https://[2001:DB8::0:1]", "https://[2001:db8::1]"),
        ("localhost:3000", "https://localhost:3000"),
        ("192.168.0.1", "https://192.168.0.1"),
    ],
)
def test_normalise_origin(text: str, expected: str) -> None:
    assert normalise_origin(text) == expected
    assert normalise_origin(expected) == expected
    assert check_origin(expected) == expected
    assert origin_of(expected + "/") == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("https://example.org/a", "must not have a path"),
        ("https://example.org//", "must not have a path"),
        ("https://example.org/.", "must not have a path"),
        ("example.org/a", "must not have a path"),
        ("https://example.org?", "must not have a query"),
        ("https://example.org/?a=1", "must not have a query"),
        ("https://example.org#", "must not have a fragment"),
        ("https://example.org/#x", "must not have a fragment"),
        ("https://user@example.org", "user information"),
        ("user@example.org", "user information"),
        ("ftp://example.org", "must be http or https"),
        ("urn:x", "not a decimal number"),  # read as bare host "urn", port "x"
        ("http:example.org", "not a decimal number"),
        ("", "host is empty"),
        ("https://", "host is empty"),
        ("https://:443", "host is empty"),
        ("example.org:0", "range 1-65535"),
        ("exa mple.org", "U+0020"),
        ("https://a..b", "empty label"),
        ("https://[::1", "unterminated"),
        ("https://" + "a" * MAX_THING_BYTES, "bytes long"),
    ],
)
def test_normalise_origin_errors(text: str, fragment: str) -> None:
    with pytest.raises(LocalError) as info:
        normalise_origin(text)
    assert info.value.code == "bad-origin"
    assert fragment in str(info.value)
    with pytest.raises(SchemaError) as sinfo:
        check_origin(text)
    assert sinfo.value.code == "bad-origin"


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        ("https://Example.org", "https://example.org"),
        ("https://example.org/", "https://example.org"),
        ("example.org", "https://example.org"),
        ("https://example.org:443", "https://example.org"),
        ("https://example.org.", "https://example.org"),
    ],
)
def test_check_origin_rejects_non_normalised(received: str, expected: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_origin(received)
    assert info.value.code == "bad-origin"
    assert str(info.value) == f"origin is not normalised: expected {expected!r}"


def test_check_origin_too_long() -> None:
    with pytest.raises(SchemaError, match="too long"):
        check_origin("https://" + "a" * MAX_THING_BYTES)


@pytest.mark.parametrize(
    ("thing", "origin"),
    [
        ("https://example.org/a/b?c#d", "https://example.org"),
        ("HTTPS://Example.org:443", "https://example.org"),
        ("http://example.org:8080/x", "http://example.org:8080"),
        ("https://[::1]:8443/", "https://[::1]:8443"),
        ("https://Bücher.example/x", "https://xn--bcher-kva.example"),
        ("urn:isbn:0451450523", None),
        ("ipfs://bafy/x", None),
        ("ws://example.org/", None),
        ("httpx://example.org/", None),
        ("mailto:a@example.org", None),
    ],
)
def test_origin_of(thing: str, origin: str | None) -> None:
    assert origin_of(thing) == origin


def test_origin_of_invalid() -> None:
    with pytest.raises(LocalError) as info:
        origin_of("https://user@example.org/")
    assert info.value.code == "bad-thing"


# -- reference implementations for cross-checks -----------------------------------------------


def rfc3986_remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, transcribed literally (slow, obviously right)."""
    inp, out = path, ""
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./") or inp.startswith("/./"):
            inp = inp[2:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = inp[3:]
            out = out[: max(out.rfind("/"), 0)]
        elif inp == "/..":
            inp = "/"
            out = out[: max(out.rfind("/"), 0)]
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            end = inp.find("/", start)
            end = len(inp) if end < 0 else end
            out += inp[:end]
            inp = inp[end:]
    return out


_SEGMENT = st.sampled_from(["", ".", "..", "a", "b", "c.d", ".e", "f..", "..."])


@given(st.lists(_SEGMENT, max_size=12))
@example(["", ".."])
@example([".", ""])
def test_dot_segment_removal_matches_rfc(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    expected = rfc3986_remove_dot_segments(path) or "/"
    assert normalise_thing("https://example.org" + path) == "https://example.org" + expected


@given(st.integers(min_value=0, max_value=2**128 - 1), st.data())
@example(0, None)
@example(1, None)
@example(0x20010DB8000000000001000000000001, None)
@example(0x00010000000000000000000000000000, None)
def test_ipv6_matches_ipaddress(value: int, data: st.DataObject | None) -> None:
    addr = ipaddress.IPv6Address(value)
    if addr.ipv4_mapped is not None:  # Python >= 3.13 prints these in dotted form
        return
    forms = [addr.exploded, addr.exploded.upper(), addr.compressed]
    if data is not None:
        groups = addr.exploded.split(":")
        forms.append(":".join(g.lstrip("0") or "0" for g in groups))
        if data.draw(st.booleans()):
            v4 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
            forms.append(":".join(groups[:6]) + ":" + str(v4))
    for form in forms:
        assert normalise_thing(f"https://[{form}]/") == f"https://[{addr.compressed}]/"


# -- properties -------------------------------------------------------------------------------

_PIECES = [
    "", "a", "B", "0", ".", "..", "%2e", "%2E%2e", "%7e", "%7E", "%2f", "%2F", "%41", "%c3%a9",
    "é", "€", "\U0001f600", "{", "}", "|", "^", "`", "\\", '"', "<", ">", "[", "]", ";", "=",
    "&", ":", "@", "~", "!", "'", "(", "*", "+", ",", "$", "-", "_", "?", "/", "\u200b", "Ü",
    "ß", "xn--",
]  # fmt: skip
_BAD_PIECES = ["%", "%z", "%zz", "%4", "#", " ", "\t", "\x00", "\x7f", "\u00a0", "\ud800"]
_PRINTABLE = st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"))

_HOSTS = [
    "example.org", "Example.ORG", "EXAMPLE.org.", "bücher.example", "Bücher.Example.",
    "ｅｘａｍｐｌｅ.org", "例え.テスト", "xn--bcher-kva.example", "a_b.example", "localhost",
    "1.2.3.4", "1.2.3.4.", "１.２.３.４", "256.1.1.1", "[::1]", "[2001:DB8::0:1]",
    "[::FFFF:1.2.3.4]", "[fe80::1%25eth0]", "[v1.x]", "", ".", "a..b", "-x.ü", "ü_x.de",
    "user@example.org", "@example.org", "ex%41mple.org", "x.ü。", "ß.de", "a\u200db.de",
]  # fmt: skip

_PORTS = ["", ":", ":0", ":80", ":443", ":0080", ":00443", ":8080", ":65535", ":65536", ":x"]


@st.composite
def urlish(draw: st.DrawFn) -> str:
    """Strings that look like URLs, with all the awkward bits the rules care about."""
    pad = st.sampled_from(["", " ", "\t", "\n ", "\r\n"])
    good = st.sampled_from(_PIECES)
    piece = good | good | st.text(_PRINTABLE, max_size=3)
    text = st.lists(piece, max_size=6).map("".join)
    scheme = draw(
        st.sampled_from(
            ["http", "https", "HTTP", "hTtPs", "urn", "URN", "did", "ipfs", "x-y+z.1", "1x", ""]
        )
    )
    colon = draw(st.sampled_from(["://", "://", ":", ":/", ""]))
    host = draw(st.sampled_from(_HOSTS) | st.text(_PRINTABLE, max_size=8))
    port = draw(st.sampled_from(_PORTS))
    segments = draw(st.lists(text, max_size=5))
    path = "".join("/" + s for s in segments)
    query = draw(st.none() | text)
    fragment = draw(st.none() | text)
    out = scheme + colon + host + port + path
    if query is not None:
        out += "?" + query
    if fragment is not None:
        out += "#" + fragment
    if draw(st.integers(0, 4)) == 0:  # now and then, one bad piece somewhere
        at = draw(st.integers(0, len(out)))
        out = out[:at] + draw(st.sampled_from(_BAD_PIECES)) + out[at:]
    return draw(pad) + out + draw(pad)


_ANY_TEXT = st.text() | st.text(alphabet=st.characters(codec=None, exclude_categories=()))
_PROPERTY = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])


def _try_normalise(text: str) -> str | None:
    """normalise_thing, or None when it refuses; any other exception fails the test."""
    try:
        return normalise_thing(text)
    except LocalError as exc:
        assert exc.code == "bad-thing"
        assert str(exc)
        return None


@_PROPERTY
@given(_ANY_TEXT | urlish())
def test_only_local_error_escapes(text: str) -> None:
    _try_normalise(text)


@_PROPERTY
@given(_ANY_TEXT | urlish())
def test_only_schema_error_escapes_check(text: str) -> None:
    try:
        assert check_thing(text) == text
    except SchemaError as exc:
        assert exc.code == "bad-thing"


@_PROPERTY
@given(_ANY_TEXT | urlish())
@example("https://example.org/%2e%2E/%2e")
@example("https://example.org/.//a/..")
@example("https://bücher.example。/")
def test_idempotent_and_checkable(text: str) -> None:
    once = _try_normalise(text)
    if once is None:
        return
    assert normalise_thing(once) == once
    assert check_thing(once) == once
    assert once.isascii()
    assert len(once.encode("utf-8")) <= MAX_THING_BYTES
    scheme = once.partition(":")[0]
    origin = origin_of(once)
    if scheme in ("http", "https"):
        assert origin is not None
        assert once.startswith(origin + "/")
        assert "#" not in once
        assert normalise_origin(origin) == origin
        assert check_origin(origin) == origin
    else:
        assert origin is None


@_PROPERTY
@given(_ANY_TEXT | urlish())
def test_origin_idempotent(text: str) -> None:
    try:
        once = normalise_origin(text)
    except LocalError as exc:
        assert exc.code == "bad-origin"
        return
    assert normalise_origin(once) == once
    assert check_origin(once) == once
    assert once.isascii()
    assert origin_of(once + "/") == once
    assert normalise_thing(once) == once + "/"
