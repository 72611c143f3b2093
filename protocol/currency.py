"""Currencies and amounts: ISO 4217 codes, minor units, parsing and formatting.

Every amount in Rill is a non-negative integer count of the currency's *minor
unit* (cents for EUR, yen for JPY, fils for KWD), never a float.  This module
converts between that integer and the decimal text a person types or reads.

Two ways of accepting a currency code:

* :func:`check_currency_code` is the wire rule: three ASCII uppercase letters.
  It does *not* require the code to be in :data:`MINOR_UNITS`, because a node
  must keep accepting objects in currencies that ISO 4217 adds after this table
  was written.  It raises :class:`~rill.protocol.errors.SchemaError`.
* :func:`known_currency` is for user input: it tidies the text and requires a
  code from :data:`MINOR_UNITS`.  It raises
  :class:`~rill.protocol.errors.LocalError`.

:func:`parse_amount`, :func:`format_amount` and :func:`format_money` need the
currency's exponent, so they accept only codes in :data:`MINOR_UNITS` (exactly,
as returned by :func:`known_currency`).

The module is pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .errors import LocalError, SchemaError

__all__ = [
    "CURRENCY_RE",
    "MAX_AMOUNT",
    "MINOR_UNITS",
    "check_currency_code",
    "format_amount",
    "format_money",
    "known_currency",
    "parse_amount",
]

# ISO 4217 List One (SIX Financial Information), published list of 2026-01-01,
# i.e. as amended up to Amendment 180 (BGN withdrawn: Bulgaria adopted the euro
# on 2026-01-01).  Recent amendments reflected here: ZWG added and ZWL withdrawn
# (177), XCG added and ANG withdrawn (176), CUC withdrawn (178), XAD added (179);
# HRK and SLL were withdrawn earlier.  That list has 178 distinct codes; the 13
# whose minor unit is "N.A." (XAG, XAU, XBA, XBB, XBC, XBD, XDR, XPD, XPT, XSU,
# XTS, XUA, XXX) are left out, leaving 165: 17 with exponent 0, 139 with 2, 7
# with 3 and 2 with 4.  Fund codes with a defined minor unit (BOV, CHE, CHW, CLF,
# COU, MXV, USN, UYI, UYW) are included.  Sorted by code; the value is the number
# of decimal digits of the minor unit ("CcyMnrUnts").
MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "AED": 2,  # UAE Dirham
        "AFN": 2,  # Afghani
        "ALL": 2,  # Lek
        "AMD": 2,  # Armenian Dram
        "AOA": 2,  # Kwanza
        "ARS": 2,  # Argentine Peso
        "AUD": 2,  # Australian Dollar
        "AWG": 2,  # Aruban Florin
        "AZN": 2,  # Azerbaijan Manat
        "BAM": 2,  # Convertible Mark
        "BBD": 2,  # Barbados Dollar
        "BDT": 2,  # Taka
        "BHD": 3,  # Bahraini Dinar
        "BIF": 0,  # Burundi Franc
        "BMD": 2,  # Bermudian Dollar
        "BND": 2,  # Brunei Dollar
        "BOB": 2,  # Boliviano
        "BOV": 2,  # Mvdol
        "BRL": 2,  # Brazilian Real
        "BSD": 2,  # Bahamian Dollar
        "BTN": 2,  # Ngultrum
        "BWP": 2,  # Pula
        "BYN": 2,  # Belarusian Ruble
        "BZD": 2,  # Belize Dollar
        "CAD": 2,  # Canadian Dollar
        "CDF": 2,  # Congolese Franc
        "CHE": 2,  # WIR Euro
        "CHF": 2,  # Swiss Franc
        "CHW": 2,  # WIR Franc
        "CLF": 4,  # Unidad de Fomento
        "CLP": 0,  # Chilean Peso
        "CNY": 2,  # Yuan Renminbi
        "COP": 2,  # Colombian Peso
        "COU": 2,  # Unidad de Valor Real
        "CRC": 2,  # Costa Rican Colon
        "CUP": 2,  # Cuban Peso
        "CVE": 2,  # Cabo Verde Escudo
        "CZK": 2,  # Czech Koruna
        "DJF": 0,  # Djibouti Franc
        "DKK": 2,  # Danish Krone
        "DOP": 2,  # Dominican Peso
        "DZD": 2,  # Algerian Dinar
        "EGP": 2,  # Egyptian Pound
        "ERN": 2,  # Nakfa
        "ETB": 2,  # Ethiopian Birr
        "EUR": 2,  # Euro
        "FJD": 2,  # Fiji Dollar
        "FKP": 2,  # Falkland Islands Pound
        "GBP": 2,  # Pound Sterling
        "GEL": 2,  # Lari
        "GHS": 2,  # Ghana Cedi
        "GIP": 2,  # Gibraltar Pound
        "GMD": 2,  # Dalasi
        "GNF": 0,  # Guinean Franc
        "GTQ": 2,  # Quetzal
        "GYD": 2,  # Guyana Dollar
        "HKD": 2,  # Hong Kong Dollar
        "HNL": 2,  # Lempira
        "HTG": 2,  # Gourde
        "HUF": 2,  # Forint
        "IDR": 2,  # Rupiah
        "ILS": 2,  # New Israeli Sheqel
        "INR": 2,  # Indian Rupee
        "IQD": 3,  # Iraqi Dinar
        "IRR": 2,  # Iranian Rial
        "ISK": 0,  # Iceland Krona
        "JMD": 2,  # Jamaican Dollar
        "JOD": 3,  # Jordanian Dinar
        "JPY": 0,  # Yen
        "KES": 2,  # Kenyan Shilling
        "KGS": 2,  # Som
        "KHR": 2,  # Riel
        "KMF": 0,  # Comorian Franc
        "KPW": 2,  # North Korean Won
        "KRW": 0,  # Won
        "KWD": 3,  # Kuwaiti Dinar
        "KYD": 2,  # Cayman Islands Dollar
        "KZT": 2,  # Tenge
        "LAK": 2,  # Lao Kip
        "LBP": 2,  # Lebanese Pound
        "LKR": 2,  # Sri Lanka Rupee
        "LRD": 2,  # Liberian Dollar
        "LSL": 2,  # Loti
        "LYD": 3,  # Libyan Dinar
        "MAD": 2,  # Moroccan Dirham
        "MDL": 2,  # Moldovan Leu
        "MGA": 2,  # Malagasy Ariary
        "MKD": 2,  # Denar
        "MMK": 2,  # Kyat
        "MNT": 2,  # Tugrik
        "MOP": 2,  # Pataca
        "MRU": 2,  # Ouguiya
        "MUR": 2,  # Mauritius Rupee
        "MVR": 2,  # Rufiyaa
        "MWK": 2,  # Malawi Kwacha
        "MXN": 2,  # Mexican Peso
        "MXV": 2,  # Mexican Unidad de Inversion (UDI)
        "MYR": 2,  # Malaysian Ringgit
        "MZN": 2,  # Mozambique Metical
        "NAD": 2,  # Namibia Dollar
        "NGN": 2,  # Naira
        "NIO": 2,  # Cordoba Oro
        "NOK": 2,  # Norwegian Krone
        "NPR": 2,  # Nepalese Rupee
        "NZD": 2,  # New Zealand Dollar
        "OMR": 3,  # Rial Omani
        "PAB": 2,  # Balboa
        "PEN": 2,  # Sol
        "PGK": 2,  # Kina
        "PHP": 2,  # Philippine Peso
        "PKR": 2,  # Pakistan Rupee
        "PLN": 2,  # Zloty
        "PYG": 0,  # Guarani
        "QAR": 2,  # Qatari Rial
        "RON": 2,  # Romanian Leu
        "RSD": 2,  # Serbian Dinar
        "RUB": 2,  # Russian Ruble
        "RWF": 0,  # Rwanda Franc
        "SAR": 2,  # Saudi Riyal
        "SBD": 2,  # Solomon Islands Dollar
        "SCR": 2,  # Seychelles Rupee
        "SDG": 2,  # Sudanese Pound
        "SEK": 2,  # Swedish Krona
        "SGD": 2,  # Singapore Dollar
        "SHP": 2,  # Saint Helena Pound
        "SLE": 2,  # Leone
        "SOS": 2,  # Somali Shilling
        "SRD": 2,  # Surinam Dollar
        "SSP": 2,  # South Sudanese Pound
        "STN": 2,  # Dobra
        "SVC": 2,  # El Salvador Colon
        "SYP": 2,  # Syrian Pound
        "SZL": 2,  # Lilangeni
        "THB": 2,  # Baht
        "TJS": 2,  # Somoni
        "TMT": 2,  # Turkmenistan New Manat
        "TND": 3,  # Tunisian Dinar
        "TOP": 2,  # Pa'anga
        "TRY": 2,  # Turkish Lira
        "TTD": 2,  # Trinidad and Tobago Dollar
        "TWD": 2,  # New Taiwan Dollar
        "TZS": 2,  # Tanzanian Shilling
        "UAH": 2,  # Hryvnia
        "UGX": 0,  # Uganda Shilling
        "USD": 2,  # US Dollar
        "USN": 2,  # US Dollar (Next day)
        "UYI": 0,  # Uruguay Peso en Unidades Indexadas (UI)
        "UYU": 2,  # Peso Uruguayo
        "UYW": 4,  # Unidad Previsional
        "UZS": 2,  # Uzbekistan Sum
        "VED": 2,  # Bolivar Soberano
        "VES": 2,  # Bolivar Soberano
        "VND": 0,  # Dong
        "VUV": 0,  # Vatu
        "WST": 2,  # Tala
        "XAD": 2,  # Arab Accounting Dinar
        "XAF": 0,  # CFA Franc BEAC
        "XCD": 2,  # East Caribbean Dollar
        "XCG": 2,  # Caribbean Guilder
        "XOF": 0,  # CFA Franc BCEAO
        "XPF": 0,  # CFP Franc
        "YER": 2,  # Yemeni Rial
        "ZAR": 2,  # Rand
        "ZMW": 2,  # Zambian Kwacha
        "ZWG": 2,  # Zimbabwe Gold
    }
)

#: Largest amount, in minor units, anywhere in the protocol (exact in an IEEE
#: double, so JSON tooling cannot silently round it).
MAX_AMOUNT: Final = 2**53 - 1

#: The wire form of a currency code: exactly three ASCII uppercase letters.
CURRENCY_RE: Final = re.compile(r"\A[A-Z]{3}\Z")

# A well-formed amount: ASCII digits, optionally a '.' followed by more digits.
_AMOUNT_RE: Final = re.compile(r"\A(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?\Z")
# Shapes that are not amounts but deserve a specific message.
_EXPONENT_RE: Final = re.compile(r"\A[0-9.]*[0-9][0-9.]*[eE][+-]?[0-9]+\Z")
_GROUPED_RE: Final = re.compile(r"\A[0-9]{1,3}(?:[,_' ][0-9]{3})+(?:\.[0-9]+)?\Z")
_DECIMAL_COMMA_RE: Final = re.compile(r"\A[0-9]+,[0-9]+\Z")
_DOTTED_RE: Final = re.compile(r"\A[0-9]*\.[0-9]*\Z")

_MAX_DIGITS: Final = len(str(MAX_AMOUNT))


def check_currency_code(code: str) -> str:
    """Return ``code`` if it is a well-formed wire currency code.

    The rule is exactly three ASCII uppercase letters (``[A-Z]{3}``).  Codes not
    (yet) in :data:`MINOR_UNITS` are accepted.

    :raises SchemaError: with code ``bad-currency`` otherwise.
    """
    if not isinstance(code, str) or CURRENCY_RE.match(code) is None:
        raise SchemaError(
            f"currency code {code!r} is not three ASCII uppercase letters",
            code="bad-currency",
        )
    return code


def known_currency(code: str) -> str:
    """Normalise a currency code typed by a user and require it to be known.

    Surrounding whitespace is removed and ASCII letters are uppercased, so
    ``" eur "`` gives ``"EUR"``.  The result must be a key of
    :data:`MINOR_UNITS`.

    :raises LocalError: with code ``bad-currency`` otherwise.
    """
    if isinstance(code, str):
        tidy = code.strip()
        if tidy.isascii():
            tidy = tidy.upper()
            if tidy in MINOR_UNITS:
                return tidy
    raise LocalError(f"unknown currency {code!r}: not an ISO 4217 code", code="bad-currency")


def _exponent(currency: str) -> int:
    """The minor-unit exponent of ``currency``, which must be a known code as is."""
    exponent = MINOR_UNITS.get(currency) if isinstance(currency, str) else None
    if exponent is None:
        raise LocalError(
            f"unknown currency {currency!r}: not an ISO 4217 code", code="bad-currency"
        )
    return exponent


def _bad_amount(message: str) -> LocalError:
    return LocalError(message, code="bad-amount")


def _clip(text: str, limit: int = 40) -> str:
    """``text`` shortened for an error message, so huge input gives a short message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explain_malformed(text: str) -> str:
    """A message saying why ``text`` (stripped, non-empty) is not an amount."""
    shown = repr(_clip(text))
    if text.startswith("-"):
        return f"{shown}: negative amounts are not allowed"
    if text.startswith("+"):
        return f"{shown}: write the amount without a sign"
    if _EXPONENT_RE.match(text):
        return f"{shown}: exponent notation is not allowed; write the digits out"
    if _GROUPED_RE.match(text):
        return f"{shown}: thousands separators are not allowed"
    if _DECIMAL_COMMA_RE.match(text):
        return f"{shown}: use '.' as the decimal point"
    if _DOTTED_RE.match(text):
        return f"{shown}: the decimal point needs digits on both sides, as in '0.50' or '5'"
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        return f"{shown}: only the ASCII digits 0-9 are allowed"
    return f"{shown} is not an amount: use digits and at most one '.', as in '5' or '5.00'"


def parse_amount(text: str, currency: str) -> int:
    """Parse a decimal amount typed by a user into an integer of minor units.

    ``parse_amount("5.5", "EUR") == 550``, ``parse_amount("1234.567", "KWD") ==
    1234567``, ``parse_amount("5", "JPY") == 5``.  Surrounding whitespace is
    ignored.  The accepted form is one or more ASCII digits, optionally followed
    by ``.`` and one or more digits, with at most as many decimals as the
    currency's minor unit has.  Signs, exponents, digit-group separators,
    non-ASCII digits and a bare or dangling ``.`` are refused, as is anything
    above :data:`MAX_AMOUNT` minor units.  No floating point is involved.

    :raises LocalError: code ``bad-currency`` if ``currency`` is not a key of
        :data:`MINOR_UNITS`; code ``bad-amount`` if ``text`` is not acceptable.
    """
    exponent = _exponent(currency)
    if not isinstance(text, str):
        raise _bad_amount(f"amount must be text, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise _bad_amount("empty amount")
    match = _AMOUNT_RE.match(stripped)
    if match is None:
        raise _bad_amount(_explain_malformed(stripped))
    whole: str = match["int"].lstrip("0")
    frac: str = match["frac"] or ""
    if len(frac) > exponent:
        raise _bad_amount(
            f"{_clip(stripped)} has more decimals than {currency} allows ({exponent})"
        )
    # The length test comes first so that int() never sees a huge string.
    if len(whole) <= _MAX_DIGITS:
        scale: int = 10**exponent
        minor = int(whole or "0") * scale + int(frac.ljust(exponent, "0") or "0")
        if minor <= MAX_AMOUNT:
            return minor
    raise _bad_amount(
        f"{_clip(stripped)} {currency} is more than the largest amount allowed "
        f"({format_money(MAX_AMOUNT, currency)})"
    )


def format_amount(minor: int, currency: str) -> str:
    """Format an integer of minor units as decimal text, with every decimal.

    ``format_amount(500, "EUR") == "5.00"``, ``format_amount(5, "JPY") == "5"``,
    ``format_amount(1, "KWD") == "0.001"``.  The result always parses back to
    ``minor`` with :func:`parse_amount`.

    :raises LocalError: code ``bad-currency`` if ``currency`` is not a key of
        :data:`MINOR_UNITS`; code ``bad-amount`` if ``minor`` is not an ``int``
        in ``[0, MAX_AMOUNT]``.
    """
    exponent = _exponent(currency)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise _bad_amount(f"amount must be an integer of minor units, not {minor!r}")
    if minor < 0:
        raise _bad_amount("negative amounts are not allowed")
    if minor > MAX_AMOUNT:
        raise _bad_amount(f"amount is above the maximum of {MAX_AMOUNT} minor units")
    if exponent == 0:
        return str(minor)
    scale: int = 10**exponent
    whole, frac = divmod(minor, scale)
    return f"{whole}.{frac:0{exponent}d}"


def format_money(minor: int, currency: str) -> str:
    """Format an amount with its currency code: ``format_money(500, "EUR") == "5.00 EUR"``.

    :raises LocalError: as :func:`format_amount`.
    """
    return f"{format_amount(minor, currency)} {currency}"
