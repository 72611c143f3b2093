"""What the dashboard's pages show, apart from serving them: money and keys as text,
people with names, QR codes, the income chart, the favicon.  Pure helpers; the
one that reads the wallet (:func:`names_of`) runs in the daemon's worker thread."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from ..protocol import keys
from ..protocol.currency import format_amount
from ..protocol.errors import LocalError


def money(amount: int | None, currency: str | None) -> str:
    if amount is None or currency is None:
        return "–"
    try:
        return f"{format_amount(amount, currency)} {currency}"
    except LocalError:
        return f"{amount} {currency}"


def short_id(did: str | None) -> str:
    if not did:
        return "unknown"
    return did[:14] + "…" + did[-6:]


def who(did: str | None, names: dict[str, str] | None = None) -> Markup:
    """A person: the name from their key document (if held) beside the shortened key;
    the whole key is the element's title."""
    if not did:
        return Markup('<span class="mono">unknown</span>')
    name = (names or {}).get(did)
    key = Markup('<span class="mono key" title="{}">{}</span>').format(did, short_id(did))
    if name:
        return Markup('<span class="name">{}</span> {}').format(name, key)
    return key


def qr_data_uri(text: str) -> str:
    import segno

    uri: str = segno.make(text, error="m").svg_data_uri(scale=3, dark="#0d2b2b",
                                                         light="#ffffff")
    return uri


#: The favicon: the drop of the header, as SVG (served at /favicon.ico and linked).
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
           '<rect width="24" height="24" rx="6" fill="#0b6a6a"/>'
           '<path fill="#fff" d="M12 3.5c3.3 4 6 7.5 6 10.6a6 6 0 0 1-12 0c0-3.1 2.7-6.6 6-10.6z"/>'
           '</svg>')

#: A page for answers given before any handler runs (a foreign Host, a bad method): it
#: names nothing of this node, since a DNS-rebinding page could read it.
BARE_PAGE = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
             'content="width=device-width, initial-scale=1"><title>Refused · Rill</title>'
             '<link rel="icon" href="data:,"></head><body><main><h1>Refused</h1><p>{reason}</p>'
             '</main></body></html>')


def names_of(wallet: Any, creators: Any) -> dict[str, str]:
    """In a worker thread: did -> name, from the newest key document held of each key
    (a did, or a raw key)."""
    out: dict[str, str] = {}
    for c in creators:
        if not c:
            continue
        try:
            key = keys.key_from_did(c) if isinstance(c, str) else bytes(c)
            did = keys.did_from_key(key)
        except (LocalError, ValueError, TypeError):
            continue
        if did in out:
            continue
        doc = wallet.key_document(key)
        if doc is not None and doc.body.name:
            out[did] = doc.body.name
    return out


def chart(earnings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Bars of monthly totals (the most common currency), as plain numbers for SVG: each
    bar's receipted part solid, the part only promised hatched, its total written above."""
    if not earnings:
        return None
    currencies: dict[str, int] = {}
    for e in earnings:
        currencies[e["currency"]] = currencies.get(e["currency"], 0) + 1
    cur = max(currencies, key=lambda c: currencies[c])
    rows = [e for e in earnings if e["currency"] == cur][-12:]
    top = max((e["total"] for e in rows), default=1) or 1
    width = 56
    bars = []
    for i, e in enumerate(rows):
        h = round(150 * e["total"] / top)
        receipted = round(150 * e["receipted"] / top)
        bars.append({"x": 12 + i * width, "y": 180 - h, "h": h, "label": e["month"][2:],
                     "month": e["month"], "value": plain_amount(e["total"], cur),
                     "total": money(e["total"], cur), "paid": money(e["receipted"], cur),
                     "owed": money(e["total"] - e["receipted"], cur),
                     "receipted": receipted})
    return {"bars": bars, "currency": cur, "width": 24 + len(rows) * width}


def plain_amount(amount: int, currency: str) -> str:
    try:
        return format_amount(amount, currency)
    except LocalError:
        return str(amount)
