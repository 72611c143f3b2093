"""``payto:`` URIs (RFC 8905): the payment addresses creators publish."""

from __future__ import annotations

import re
import urllib.parse

from .errors import LocalError, SchemaError

MAX_PAYTO_BYTES = 512
# payto://TARGET-TYPE/TARGET[?query]; printable ASCII without spaces.
_PAYTO_RE = re.compile(r"\Apayto://([a-z][a-z0-9.-]*)/([\x21-\x7e]+)\Z")


def check_payto(value: object, name: str = "payto") -> str:
    """Wire rule for one payment address (SPEC.md §5.2)."""
    if type(value) is not str:
        raise SchemaError(f"{name}: expected text", code="bad-payto")
    if len(value.encode("utf-8")) > MAX_PAYTO_BYTES:
        raise SchemaError(f"{name}: longer than {MAX_PAYTO_BYTES} bytes", code="bad-payto")
    match = _PAYTO_RE.match(value)
    if not match or "#" in value:
        raise SchemaError(
            f"{name}: not a payto URI (payto://TYPE/TARGET, lowercase type, ASCII): {value!r}",
            code="bad-payto",
        )
    return value


def parse_payto(text: str) -> str:
    """User input; the target type is lowercased.  Raises :class:`LocalError`."""
    text = text.strip()
    if text[:8].lower() == "payto://":
        rest = text[8:]
        ttype, sep, target = rest.partition("/")
        text = "payto://" + ttype.lower() + sep + target
    try:
        return check_payto(text)
    except SchemaError as exc:
        raise LocalError(str(exc), code="bad-payto") from None


def payment_uri(payto: str, amount: str, currency: str, message: str) -> str:
    """``payto`` with ``amount=CUR:X.YY`` and ``message=...`` set (RFC 8905 §5).

    ``amount`` is the decimal text of the amount (see currency.format_amount).
    Existing ``amount``/``message`` parameters are replaced.
    """
    base, _, query = payto.partition("?")
    params = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)
        if k not in ("amount", "message")
    ]
    params += [("amount", f"{currency}:{amount}"), ("message", message)]
    return base + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe=":")
