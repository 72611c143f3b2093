"""Tests of rill.protocol.currency: ISO 4217 table, codes, amount parsing and formatting."""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rill.protocol.currency import (
    CURRENCY_RE,
    MAX_AMOUNT,
    MINOR_UNITS,
    check_currency_code,
    format_amount,
    format_money,
    known_currency,
    parse_amount,
)
from rill.protocol.errors import LocalError, RemoteError, SchemaError

CODES = sorted(MINOR_UNITS)
codes = st.sampled_from(CODES)
amounts = st.integers(min_value=0, max_value=MAX_AMOUNT)

# --------------------------------------------------------------------------- table


def test_table_size_and_shape() -> None:
    assert len(MINOR_UNITS) == 165
    assert list(MINOR_UNITS) == CODES  # written sorted by code
    for code, exponent in MINOR_UNITS.items():
        assert CURRENCY_RE.match(code), code
        assert type(exponent) is int
        assert exponent in (0, 2, 3, 4), code


def test_table_exponent_counts() -> None:
    # List One of 2026-01-01: 17 codes with 0 decimals, 139 with 2, 7 with 3, 2 with 4.
    assert Counter(MINOR_UNITS.values()) == {0: 17, 2: 139, 3: 7, 4: 2}
    zero = {c for c, e in MINOR_UNITS.items() if e == 0}
    assert " ".join(sorted(zero)) == (
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
    )
    three = {c for c, e in MINOR_UNITS.items() if e == 3}
    assert " ".join(sorted(three)) == "BHD IQD JOD KWD LYD OMR TND"
    assert {c for c, e in MINOR_UNITS.items() if e == 4} == {"CLF", "UYW"}


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("EUR", 2),
        ("USD", 2),
        ("GBP", 2),
        ("CHF", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("ISK", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("UYW", 4),
        ("VES", 2),
        ("VED", 2),
        ("ZWG", 2),
        ("SLE", 2),
        ("XCG", 2),
        ("XAD", 2),
        ("MRU", 2),
        ("MGA", 2),
        ("STN", 2),
        ("IDR", 2),
        ("HUF", 2),
        ("USN", 2),
        ("UYI", 0),
    ],
)
def test_table_entries(code: str, exponent: int) -> None:
    assert MINOR_UNITS[code] == exponent


# Minor unit "N.A." in List One.
NOT_APPLICABLE = ["XAU", "XAG", "XPT", "XPD", "XDR", "XBA", "XBB", "XBC", "XBD", "XTS", "XXX"]
NOT_APPLICABLE += ["XSU", "XUA"]
# Withdrawn (List Three).
WITHDRAWN = ["BGN", "HRK", "ANG", "CUC", "SLL", "ZWL", "VEF", "MRO", "STD", "BYR", "LTL", "DEM"]


@pytest.mark.parametrize("code", NOT_APPLICABLE + WITHDRAWN)
def test_table_excludes(code: str) -> None:
    assert code not in MINOR_UNITS


def test_table_is_read_only() -> None:
    table: Any = MINOR_UNITS
    with pytest.raises(TypeError):
        table["EUR"] = 3
    assert MINOR_UNITS["EUR"] == 2


def test_max_amount() -> None:
    assert MAX_AMOUNT == 2**53 - 1 == 9_007_199_254_740_991


# --------------------------------------------------------------------- wire codes


@pytest.mark.parametrize("code", ["EUR", "JPY", "QQQ", "ZZZ", "AAA", "BGN"])
def test_check_currency_code_accepts(code: str) -> None:
    # Well-formed codes pass whether or not they are in the table.
    assert check_currency_code(code) == code


@pytest.mark.parametrize(
    "code",
    ["", "EU", "EURO", "eur", "Eur", "E1R", "123", "ÉUR", "ＥＵＲ", " EUR", "EUR ", "EUR\n", "E-R"],
)
def test_check_currency_code_rejects(code: str) -> None:
    with pytest.raises(SchemaError) as info:
        check_currency_code(code)
    assert info.value.code == "bad-currency"
    assert isinstance(info.value, RemoteError)
    assert not isinstance(info.value, LocalError)


@pytest.mark.parametrize("value", [None, 978, b"EUR", ["EUR"]])
def test_check_currency_code_rejects_non_text(value: Any) -> None:
    with pytest.raises(SchemaError) as info:
        check_currency_code(value)
    assert info.value.code == "bad-currency"


@given(st.text(max_size=6))
def test_check_currency_code_is_the_regex(text: str) -> None:
    ok = re.fullmatch("[A-Z]{3}", text) is not None and text.isascii()
    assert (CURRENCY_RE.match(text) is not None) == ok
    if ok:
        assert check_currency_code(text) == text
    else:
        with pytest.raises(SchemaError):
            check_currency_code(text)


# ---------------------------------------------------------------------- user codes


@pytest.mark.parametrize(
    ("text", "expected"),
    [("EUR", "EUR"), ("eur", "EUR"), (" usd ", "USD"), ("jpy\n", "JPY"), ("\tKwD", "KWD")],
)
def test_known_currency(text: str, expected: str) -> None:
    assert known_currency(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "QQQ", "XAU", "XXX", "BGN", "HRK", "EURO", "EU", "E UR", "€", "ıls", "ＥＵＲ"],
)
def test_known_currency_rejects(text: str) -> None:
    with pytest.raises(LocalError) as info:
        known_currency(text)
    assert info.value.code == "bad-currency"
    assert str(info.value) == f"unknown currency {text!r}: not an ISO 4217 code"


def test_known_currency_rejects_non_text() -> None:
    value: Any = 978
    with pytest.raises(LocalError) as info:
        known_currency(value)
    assert info.value.code == "bad-currency"


@given(st.text(max_size=8))
def test_known_currency_total(text: str) -> None:
    try:
        code = known_currency(text)
    except LocalError as exc:
        assert exc.code == "bad-currency"
    else:
        assert code in MINOR_UNITS


# ------------------------------------------------------------------------- parsing

PARSE_CASES = [
    ("5", "EUR", 500),
    ("5.00", "EUR", 500),
    ("5.5", "EUR", 550),
    ("5.05", "EUR", 505),
    ("0.01", "EUR", 1),
    ("0", "EUR", 0),
    ("0.0", "EUR", 0),
    ("0.00", "EUR", 0),
    ("007", "USD", 700),
    ("00.50", "USD", 50),
    (" 5.00 ", "EUR", 500),
    ("\t12\n", "GBP", 1200),
    ("1234.567", "KWD", 1234567),
    ("0.001", "KWD", 1),
    ("1.5", "KWD", 1500),
    ("5", "JPY", 5),
    ("1000000", "KRW", 1000000),
    ("1.2345", "CLF", 12345),
    ("0.0001", "UYW", 1),
    ("90071992547409.91", "EUR", MAX_AMOUNT),
    ("9007199254740991", "JPY", MAX_AMOUNT),
    ("9007199254740.991", "KWD", MAX_AMOUNT),
    ("900719925474.0991", "CLF", MAX_AMOUNT),
    ("000000000000000000000000000001", "JPY", 1),
]


@pytest.mark.parametrize(("text", "currency", "expected"), PARSE_CASES)
def test_parse_amount(text: str, currency: str, expected: int) -> None:
    result = parse_amount(text, currency)
    assert result == expected
    assert type(result) is int


BAD_AMOUNTS = [
    ("", "EUR", "empty"),
    ("   ", "EUR", "empty"),
    ("-5", "EUR", "negative"),
    ("-0.01", "EUR", "negative"),
    ("+5", "EUR", "sign"),
    ("1e3", "EUR", "exponent"),
    ("1E3", "EUR", "exponent"),
    ("1.5e-2", "EUR", "exponent"),
    ("1,000", "EUR", "thousands"),
    ("1,000.50", "EUR", "thousands"),
    ("1_000", "EUR", "thousands"),
    ("1 000", "EUR", "thousands"),
    ("1'000", "CHF", "thousands"),
    ("5,50", "EUR", "decimal point"),
    (".", "EUR", "decimal point"),
    ("5.", "EUR", "decimal point"),
    (".5", "EUR", "decimal point"),
    ("1.2.3", "EUR", "at most one '.'"),
    ("..", "EUR", "at most one '.'"),
    ("0.001", "EUR", "0.001 has more decimals than EUR allows (2)"),
    ("5.000", "EUR", "5.000 has more decimals than EUR allows (2)"),
    ("5.0", "JPY", "5.0 has more decimals than JPY allows (0)"),
    ("1.0001", "KWD", "more decimals than KWD allows (3)"),
    ("0.00001", "CLF", "more decimals than CLF allows (4)"),
    ("٣", "EUR", "ASCII"),
    ("５", "EUR", "ASCII"),
    ("١٫٥", "EUR", "ASCII"),
    ("1٫5", "EUR", "not an amount"),
    ("five", "EUR", "not an amount"),
    ("5 EUR", "EUR", "not an amount"),
    ("€5", "EUR", "not an amount"),
    ("0x10", "EUR", "not an amount"),
    ("inf", "EUR", "not an amount"),
    ("NaN", "EUR", "not an amount"),
    ("5\x00", "EUR", "not an amount"),
    ("90071992547409.92", "EUR", "largest amount"),
    ("9007199254740992", "JPY", "largest amount"),
    ("9007199254740.992", "KWD", "largest amount"),
    ("99999999999999999999", "EUR", "largest amount"),
    ("1" + "0" * 5000, "JPY", "largest amount"),
]


@pytest.mark.parametrize(("text", "currency", "fragment"), BAD_AMOUNTS)
def test_parse_amount_rejects(text: str, currency: str, fragment: str) -> None:
    with pytest.raises(LocalError) as info:
        parse_amount(text, currency)
    assert info.value.code == "bad-amount"
    assert fragment in str(info.value)


def test_parse_amount_messages_stay_short() -> None:
    for text in ("1" * 100_000, "x" * 100_000, "0." + "1" * 100_000):
        with pytest.raises(LocalError) as info:
            parse_amount(text, "EUR")
        assert info.value.code == "bad-amount"
        assert len(str(info.value)) < 200


def test_parse_amount_max_message_names_the_limit() -> None:
    with pytest.raises(LocalError, match=r"\(90071992547409\.91 EUR\)"):
        parse_amount("100000000000000", "EUR")


@pytest.mark.parametrize("currency", ["QQQ", "XAU", "BGN", "eur", " EUR", "", "EURO"])
def test_parse_amount_unknown_currency(currency: str) -> None:
    with pytest.raises(LocalError) as info:
        parse_amount("5", currency)
    assert info.value.code == "bad-currency"


def test_parse_amount_non_text() -> None:
    value: Any = 5
    with pytest.raises(LocalError) as info:
        parse_amount(value, "EUR")
    assert info.value.code == "bad-amount"


# ---------------------------------------------------------------------- formatting

FORMAT_CASES = [
    (500, "EUR", "5.00"),
    (550, "EUR", "5.50"),
    (1, "EUR", "0.01"),
    (0, "EUR", "0.00"),
    (123456, "USD", "1234.56"),
    (5, "JPY", "5"),
    (0, "JPY", "0"),
    (1, "KWD", "0.001"),
    (1234567, "KWD", "1234.567"),
    (1, "CLF", "0.0001"),
    (10000, "UYW", "1.0000"),
    (MAX_AMOUNT, "EUR", "90071992547409.91"),
    (MAX_AMOUNT, "JPY", "9007199254740991"),
    (MAX_AMOUNT, "KWD", "9007199254740.991"),
    (MAX_AMOUNT, "CLF", "900719925474.0991"),
]


@pytest.mark.parametrize(("minor", "currency", "expected"), FORMAT_CASES)
def test_format_amount(minor: int, currency: str, expected: str) -> None:
    assert format_amount(minor, currency) == expected
    assert format_money(minor, currency) == f"{expected} {currency}"


def test_format_money_examples() -> None:
    assert format_money(500, "EUR") == "5.00 EUR"
    assert format_money(5, "JPY") == "5 JPY"
    assert format_money(1, "KWD") == "0.001 KWD"


@pytest.mark.parametrize("minor", [-1, -500, MAX_AMOUNT + 1, 2**64, True, False, 5.0, "5", None])
def test_format_amount_rejects_bad_amount(minor: Any) -> None:
    for fn in (format_amount, format_money):
        with pytest.raises(LocalError) as info:
            fn(minor, "EUR")
        assert info.value.code == "bad-amount"


def test_format_amount_rejects_huge_integers() -> None:
    # Too many digits for str(int): the error must still be a LocalError.
    for minor in (10**5000, -(10**5000)):
        with pytest.raises(LocalError) as info:
            format_amount(minor, "EUR")
        assert info.value.code == "bad-amount"


@pytest.mark.parametrize("currency", ["QQQ", "XAU", "XXX", "BGN", "eur", "", "EURO", None])
def test_format_amount_rejects_unknown_currency(currency: Any) -> None:
    for fn in (format_amount, format_money):
        with pytest.raises(LocalError) as info:
            fn(500, currency)
        assert info.value.code == "bad-currency"


# ------------------------------------------------------------------------ properties


@given(amounts, codes)
def test_round_trip(minor: int, currency: str) -> None:
    text = format_amount(minor, currency)
    assert parse_amount(text, currency) == minor
    exponent = MINOR_UNITS[currency]
    pattern = r"(0|[1-9][0-9]*)" + (rf"\.[0-9]{{{exponent}}}" if exponent else "")
    assert re.fullmatch(pattern, text), text


@given(st.data())
def test_parse_matches_decimal_oracle(data: st.DataObject) -> None:
    currency = data.draw(codes)
    exponent = MINOR_UNITS[currency]
    whole = data.draw(st.from_regex(r"[0-9]{1,18}", fullmatch=True))
    frac = data.draw(st.from_regex(rf"[0-9]{{0,{exponent}}}", fullmatch=True))
    text = f"{whole}.{frac}" if frac else whole
    expected = Decimal(text).scaleb(exponent)
    assert expected == expected.to_integral_value()
    if expected <= MAX_AMOUNT:
        assert parse_amount(text, currency) == int(expected)
    else:
        with pytest.raises(LocalError) as info:
            parse_amount(text, currency)
        assert info.value.code == "bad-amount"


def _parse_is_total(text: str, currency: str) -> None:
    try:
        minor = parse_amount(text, currency)
    except LocalError as exc:
        assert exc.code in ("bad-amount", "bad-currency")
        assert str(exc)
    else:
        assert type(minor) is int
        assert 0 <= minor <= MAX_AMOUNT
        assert parse_amount(format_amount(minor, currency), currency) == minor


@given(st.text(), codes)
def test_parse_arbitrary_text(text: str, currency: str) -> None:
    _parse_is_total(text, currency)


@given(st.text(alphabet="0123456789.,-+eE _'٣５\t", max_size=24), codes)
def test_parse_amount_like_text(text: str, currency: str) -> None:
    _parse_is_total(text, currency)


@given(st.text(max_size=12), st.text(max_size=5))
def test_parse_arbitrary_currency(text: str, currency: str) -> None:
    _parse_is_total(text, currency)


@given(st.integers(), st.text(max_size=4) | codes)
def test_format_is_total(minor: int, currency: str) -> None:
    try:
        text = format_amount(minor, currency)
    except LocalError as exc:
        assert exc.code in ("bad-amount", "bad-currency")
    else:
        assert 0 <= minor <= MAX_AMOUNT
        assert format_money(minor, currency) == f"{text} {currency}"
