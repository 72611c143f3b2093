"""Armour, did:key identities, payto URIs and months."""

from __future__ import annotations

import calendar
import time

import pytest
from helpers import load_vectors, signing_key
from hypothesis import given
from hypothesis import strategies as st

from rill.protocol import armour, keys, months, payto
from rill.protocol.errors import ArmourError, BadKey, LocalError, SchemaError

DATA = load_vectors()


@given(st.binary(min_size=1, max_size=500), st.sampled_from(["claim", "sealed-claim", "key"]))
def test_armour_round_trip(raw: bytes, type_name: str) -> None:
    text = armour.armour(raw, type_name)
    assert all(len(line) <= 76 for line in text.splitlines())
    assert armour.dearmour(text) == [(type_name.upper(), raw)]
    assert armour.dearmour("\n\n" + text + "\n" + text) == [(type_name.upper(), raw)] * 2


def _verdict(read: object, text: str) -> object:
    try:
        return read(text)  # type: ignore[operator]
    except ArmourError as exc:
        return ("error", str(exc))


_layout = st.sampled_from(["\n", "\r\n", " \n", "\n\n", "\t\n", "\u2028"])


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=200),
                          st.sampled_from(["claim", "receipt", "key"])), min_size=1, max_size=3),
       st.data())
def test_armour_fast_path_agrees_with_the_line_reader(blocks: list[tuple[bytes, str]],
                                                       data: st.DataObject) -> None:
    # dearmour's one-regex fast path must give exactly what the line-by-line reader
    # gives (objects or the same error) whatever the layout and whatever the damage.
    text = "".join(armour.armour(raw, t) for raw, t in blocks)
    if data.draw(st.booleans()):  # change some line breaks
        parts = text.split("\n")
        text = "".join(p + (data.draw(_layout) if i < len(parts) - 1 else "")
                       for i, p in enumerate(parts))
    if data.draw(st.booleans()):  # damage one character
        at = data.draw(st.integers(0, len(text) - 1))
        text = text[:at] + data.draw(st.sampled_from("A_-=+ \nZ!")) + text[at + 1:]
    assert _verdict(armour.dearmour, text) == _verdict(armour._dearmour_lines, text)


@pytest.mark.parametrize("text", [
    "",
    "hello\n",
    "-----BEGIN RILL CLAIM-----\nAAAA\n",  # no end line
    "-----BEGIN RILL CLAIM-----\nAA==\n-----END RILL CLAIM-----\n",  # padding
    "-----BEGIN RILL CLAIM-----\nAA+/\n-----END RILL CLAIM-----\n",  # not url-safe
    "-----BEGIN RILL CLAIM-----\nA\n-----END RILL CLAIM-----\n",  # impossible length
    "-----BEGIN RILL CLAIM-----\nAB\n-----END RILL CLAIM-----\n",  # stray bits
    "-----BEGIN RILL CLAIM-----\n" + "A" * 80 + "\n-----END RILL CLAIM-----\n",
    "-----BEGIN RILL CLAIM-----\nAA\n-----END RILL KEY-----\n",
    "-----BEGIN RILL CLAIM-----\nAA\n-----END RILL CLAIM-----\ntrailing words\n",
])
def test_bad_armour(text: str) -> None:
    with pytest.raises(ArmourError):
        armour.dearmour(text)


def test_did_key_round_trip_and_known_value() -> None:
    # the did:key test vector of the W3C did:key spec (Ed25519 key)
    did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    key = keys.key_from_did(did)
    assert keys.did_from_key(key) == did
    for v in DATA["positive"]:
        assert keys.did_from_key(keys.key_from_did(v["signer"])) == v["signer"]


@pytest.mark.parametrize("text", [
    "", "did:key:", "did:key:z", "did:web:example.org",
    "z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0",  # '0' is not base58
    "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",  # secp256k1 key
    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW",  # truncated
])
def test_bad_did(text: str) -> None:
    with pytest.raises(LocalError):
        keys.key_from_did(text)


def test_small_order_did_is_refused() -> None:
    bad = keys.did_from_key(bytes([1] + [0] * 31))
    with pytest.raises(LocalError, match="prime order"):
        keys.key_from_did(bad)
    with pytest.raises(BadKey):
        keys.admit_key(bytes(32))
    keys.admit_key(keys.public_key(signing_key("x")))


def test_payto() -> None:
    assert payto.parse_payto(" PAYTO://IBAN/DE75512108001245126199 ") == \
        "payto://iban/DE75512108001245126199"
    for bad in ("iban/DE75", "payto://", "payto://iban", "payto://iban/ with space",
                "payto://iban/DE#frag", "payto://iban/é", "payto://1ban/x" * 100):
        with pytest.raises(LocalError):
            payto.parse_payto(bad)
    with pytest.raises(SchemaError):
        payto.check_payto("payto://IBAN/DE75")  # wire form has a lowercase type
    uri = payto.payment_uri("payto://iban/DE75512108001245126199?receiver-name=A%20B&amount=X:1",
                            "5.00", "EUR", "ab" * 32)
    assert uri == ("payto://iban/DE75512108001245126199?receiver-name=A%20B"
                   "&amount=EUR:5.00&message=" + "ab" * 32)


def test_months() -> None:
    assert months.month_start("2026-01") == 1767225600
    assert months.month_end("2026-12") == months.month_start("2027-01")
    assert months.month_of(months.month_end("2026-02") - 1) == "2026-02"
    assert months.next_month("2026-12") == "2027-01"
    assert months.previous_month("2026-01") == "2025-12"
    for bad in ("2026-13", "2026-00", "26-01", "2026-1", "1999-12", "2026-01-01", " ",
                "10000-01", "２０２６-10", "٢٠٢٦-10", "2026-１0", "+2026-10"):
        with pytest.raises(LocalError):
            months.parse_month(bad)
    for wire in ("2026-10\n", " 2026-10", 202610, b"2026-10", None, "2026-13", "２０２６-10"):
        with pytest.raises(SchemaError) as info:
            months.check_month(wire)
        assert info.value.code == "bad-month"
    assert months.parse_month(" 2026-10\n") == "2026-10"  # user input is trimmed


ALL_MONTHS = [f"{y:04d}-{mo:02d}" for y in range(2000, 10000) for mo in range(1, 13)]


def test_every_month_of_the_domain() -> None:
    """2000-01 .. 9999-12: valid, consecutive, and starting where the calendar says."""
    assert months.month_end("9999-12") == 253402300800
    assert months.month_start("2000-01") == 946684800
    prev_end = months.month_start("2000-01")
    for i, month in enumerate(ALL_MONTHS):
        assert months.check_month(month) == month
        start = months.month_start(month)
        assert start == prev_end
        assert calendar.timegm((int(month[:4]), int(month[5:]), 1, 0, 0, 0)) == start
        prev_end = months.month_end(month)
        assert prev_end - start in (28 * 86400, 29 * 86400, 30 * 86400, 31 * 86400)
        assert months.month_of(start) == month and months.month_of(prev_end - 1) == month
        if i:
            assert months.previous_month(month) == ALL_MONTHS[i - 1]
            assert months.next_month(ALL_MONTHS[i - 1]) == month
            assert months.months_between(ALL_MONTHS[0], month) == i
            assert months.months_back(month, i) == "2000-01"
    assert prev_end == 253402300800
    # the edges give month text outside the wire range, never an exception
    assert months.next_month("9999-12") == "10000-01"
    assert months.previous_month("2000-01") == "1999-12"
    assert months.month_start(months.next_month("9999-12")) == 253402300800
    assert not months.is_month("10000-01") and not months.is_month("1999-12")


@given(st.integers(0, 2**53 - 1))
def test_month_of_is_total(t: int) -> None:
    month = months.month_of(t)
    assert months.month_start(month) <= t < months.month_end(month)
    assert months.is_month(month) == (946684800 <= t < 253402300800)
    if t < 253402300800:
        tm = time.gmtime(t)
        assert month == f"{tm.tm_year:04d}-{tm.tm_mon:02d}"


def test_month_of_edges() -> None:
    assert months.month_of(0) == "1970-01"
    assert months.month_of(253402300799) == "9999-12"
    assert months.month_of(253402300800) == "10000-01"
    assert months.month_of(2**53 - 1) == "285428751-11"
    for bad in (-1, 2**53):
        with pytest.raises(LocalError):
            months.month_of(bad)


@given(st.integers(0, 12 * 300_000_000))
def test_month_index_round_trip(i: int) -> None:
    month = months.month_from_index(i)
    assert months.month_index(month) == i
    assert months.month_end(month) == months.month_start(months.next_month(month))
    assert months.previous_month(months.next_month(month)) == month
