"""Statements and exports: a creator's signed monthly income statement, the donor's
own giving records, and a creator's statistics per month and per thing.

Functions over an open :class:`rill.wallet.wallet.Wallet` (no clock: ``now`` is given).
CSV text is in :mod:`rill.wallet.exports`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ..protocol import checks, keys
from ..protocol import messages as m
from ..protocol.errors import LocalError, RemoteError
from ..protocol.months import month_end, parse_month
from ..protocol.shares import thing_shares
from ..protocol.statement import Statement, StatementRow, make_statement
from .errors import Refused

#: Columns of a statement's CSV export, in order.
STATEMENT_COLUMNS = ("month", "claim", "donor", "donor_name", "amount", "currency", "state",
                     "received", "receipt", "reference")
#: Columns of the donor's giving export, in order.
GIVING_COLUMNS = ("month", "creator", "creator_name", "claim", "amount", "currency", "state",
                  "reference", "receipt")


def _name(w: Any, key: bytes) -> str | None:
    doc = w.key_document(key)
    return doc.body.name if doc is not None else None


def statement_rows(w: Any, month: str) -> list[dict[str, Any]]:
    """The claims owed to this wallet's key for ``month``, one dict per claim (sorted by
    claim ID, the statement's order), with what each receipt says."""
    month = parse_month(month)
    out = []
    names: dict[bytes, str | None] = {}
    for claim, donor, amount, currency, state, reference, receipt in w.db.execute(
            "SELECT claim, donor, amount, currency, state, reference, receipt FROM "
            "obligations WHERE direction = 'in' AND month = ? ORDER BY claim", (month,)):
        received = None
        if receipt is not None:
            received = w._object(receipt, m.Receipt).body.amount
        if donor not in names:
            names[donor] = _name(w, donor)
        out.append({"month": month, "claim": claim.hex(), "donor": keys.did_from_key(donor),
                    "donor_name": names[donor], "amount": amount, "currency": currency,
                    "state": state, "received": received,
                    "receipt": receipt.hex() if receipt else None, "reference": reference})
    return out


def statement_months(w: Any) -> list[dict[str, Any]]:
    """The months with claims owed to this key, newest first: per currency, the number
    of claims, the total claimed and what receipts acknowledge."""
    months: dict[str, list[dict[str, Any]]] = {}
    for mo, cur, n, total, receipted in w.db.execute(
            "SELECT month, currency, count(*), sum(amount), "
            "sum(CASE WHEN state = 'receipted' THEN amount ELSE 0 END) FROM obligations "
            "WHERE direction = 'in' GROUP BY month, currency ORDER BY month DESC, currency"):
        months.setdefault(mo, []).append({"currency": cur, "claims": n, "total": total,
                                          "receipted": receipted})
    return [{"month": mo, "totals": t} for mo, t in months.items()]


def sign_statements(w: Any, month: str, now: int, size: int = Statement.MAX_ROWS
                    ) -> list[m.Signed[Statement]]:
    """Sign the creator's statement for ``month``: several parts of ``size`` rows above
    that many claims (SPEC §5.9).  Refused before the month has ended."""
    month = parse_month(month)
    if month_end(month) > now + checks.MAX_SKEW:
        raise Refused(f"{month} has not ended yet: its statement can be signed from "
                      "the first day of the next month", code="future")
    rows = [StatementRow(bytes.fromhex(r["claim"]), keys.key_from_did(r["donor"]),
                         r["currency"], r["amount"], r["state"],
                         bytes.fromhex(r["receipt"]) if r["receipt"] else None,
                         r["received"]) for r in statement_rows(w, month)]
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)] or [[]]
    out = []
    for i, chunk in enumerate(chunks):
        body = make_statement(month, now, chunk, i + 1, len(chunks))
        try:
            s = m.sign(body, w.key)
            checks.check_time(s, now)
        except (LocalError, RemoteError) as exc:
            raise Refused(f"cannot sign this statement: {exc}") from None
        out.append(s)
    return out


def statement_evidence(w: Any, month: str) -> list[m.Signed[Any]]:
    """The claims (in clear) and receipts a month's statement lists, for a verifier
    (``rill verify`` checks the statement against them).  The claims name the things
    each donor supported."""
    out: list[m.Signed[Any]] = []
    for claim, receipt in w.db.execute(
            "SELECT claim, receipt FROM obligations WHERE direction = 'in' AND month = ? "
            "ORDER BY claim", (parse_month(month),)).fetchall():
        out.append(w._object(claim, m.Claim))
        if receipt is not None:
            out.append(w._object(receipt, m.Receipt))
    return out


def giving(w: Any, year: int) -> list[dict[str, Any]]:
    """The donor's own records for ``year``: every claim it signed, what became of it."""
    if not 2000 <= year <= 9999:
        raise Refused(f"year {year} is outside 2000..9999", code="bad-month")
    names: dict[bytes, str | None] = {}
    out = []
    for claim, mo, creator, amount, currency, state, reference, receipt in w.db.execute(
            "SELECT claim, month, creator, amount, currency, state, reference, receipt FROM "
            "obligations WHERE direction = 'out' AND month >= ? AND month <= ? "
            "ORDER BY month, creator, claim", (f"{year:04d}-01", f"{year:04d}-12")):
        if creator not in names:
            names[creator] = _name(w, creator)
        if reference is None and receipt is not None:  # not recorded here: the creator's
            reference = w._object(receipt, m.Receipt).body.reference or None
        out.append({"month": mo, "creator": keys.did_from_key(creator),
                    "creator_name": names[creator], "claim": claim.hex(), "amount": amount,
                    "currency": currency, "state": state, "reference": reference,
                    "receipt": receipt.hex() if receipt else None})
    return out


def creator_stats(w: Any, month: str | None = None, top: int = 10) -> dict[str, Any]:
    """What Flattr showed a creator, from the claims owed to this key.

    Per month and currency: flattrs received (things counted in claims), donors (who
    signed a claim), supporters (donors whose claim is receipted: paid), new supporters
    (paid for the first time that month), total claimed, receipted (the claims' amounts)
    and received (what the receipts acknowledge), top things.  Per
    thing: flattrs and amount (its equal shares, SPEC §6.3) per month.  ``month``
    narrows everything to one month.
    """
    # Stored objects were verified when they arrived: read them without checking their
    # signatures again (a page showing thousands of claims stays fast).
    rows = w.db.execute(
        "SELECT b.month, b.donor, b.amount, b.currency, b.state, b.settlement, c.raw, r.raw "
        "FROM obligations b JOIN objects c ON c.id = b.claim "
        "LEFT JOIN objects r ON r.id = b.receipt "
        "WHERE b.direction = 'in' ORDER BY b.month, b.claim").fetchall()
    first_paid: dict[bytes, str] = {}
    for mo, donor, _a, _c, state, _s, _raw, _r in rows:
        if state == "receipted":
            first_paid.setdefault(donor, mo)
    months: dict[tuple[str, str], dict[str, Any]] = {}
    things: dict[tuple[str, str], dict[str, dict[str, int]]] = defaultdict(dict)
    tops: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    #: settlement ID -> (budget, n, things before our line), None if not held
    splits: dict[bytes, tuple[int, int, int] | None] = {}
    for mo, donor, amount, cur, state, sid, claim_raw, receipt_raw in rows:
        claim = m.decode(claim_raw, m.Claim, verify_signature=False).body
        if sid not in splits:
            splits[sid] = _split_of(w, sid)
        split = splits[sid]
        # the settlement gives each thing's share; without it (evicted) only the counts
        shares = (thing_shares(split[0], split[1], split[2], len(claim.things))
                  if split is not None else [0] * len(claim.things))
        e = months.setdefault((mo, cur), {
            "month": mo, "currency": cur, "flattrs": 0, "donors": set(), "supporters": set(),
            "total": 0, "receipted": 0, "received": 0, "claims": 0})
        e["claims"] += 1
        e["flattrs"] += len(claim.things)
        e["donors"].add(donor)
        e["total"] += amount
        if state == "receipted":
            e["supporters"].add(donor)
            e["receipted"] += amount
            e["received"] += (m.decode(receipt_raw, m.Receipt, verify_signature=False)
                              .body.amount if receipt_raw is not None else amount)
        for thing, share in zip(claim.things, shares, strict=True):
            cell = things[(thing, cur)].setdefault(mo, {"flattrs": 0, "amount": 0})
            cell["flattrs"] += 1
            cell["amount"] += share
            tops[(mo, cur)][thing] += 1
    out_months = []
    for (mo, cur), e in sorted(months.items()):
        if month is not None and mo != month:
            continue
        out_months.append({
            **e, "donors": len(e["donors"]), "supporters": len(e["supporters"]),
            "new_supporters": sorted(keys.did_from_key(d) for d in e["supporters"]
                                     if first_paid.get(d) == mo),
            "top_things": [{"thing": t, "flattrs": n}
                           for t, n in sorted(tops[(mo, cur)].items(),
                                              key=lambda x: (-x[1], x[0]))[:top]]})
    out_things: list[dict[str, Any]] = []
    for (thing, cur), per in things.items():
        if month is not None:
            if month not in per:
                continue
            per = {month: per[month]}
        out_things.append({
            "thing": thing, "currency": cur,
            "flattrs": sum(c["flattrs"] for c in per.values()),
            "amount": sum(c["amount"] for c in per.values()),
            "months": [{"month": mo, **per[mo]} for mo in sorted(per)]})
    out_things.sort(key=lambda t: (-t["flattrs"], -t["amount"], t["thing"], t["currency"]))
    return {"month": month, "months": out_months, "things": out_things}


def _split_of(w: Any, sid: bytes) -> tuple[int, int, int] | None:
    """A stored settlement's budget, thing count and the things before our line."""
    row = w.db.execute("SELECT raw FROM objects WHERE id = ?", (sid,)).fetchone()
    if row is None:
        return None
    s = m.decode(row[0], m.Settlement, verify_signature=False).body
    before = 0
    for line in s.lines:
        if line.creator == w.identity:
            return s.budget, s.things, before
        before += line.things
    return None


def thing_chart(series: list[dict[str, Any]], width: int = 240, height: int = 64
                ) -> dict[str, Any]:
    """One thing's months as numbers for an inline SVG bar chart: each bar's height is
    its flattrs relative to the thing's best month."""
    top = max((s["flattrs"] for s in series), default=1) or 1
    step = width / max(len(series), 6)  # a lone month is a bar, not a block
    bar = max(2.0, step * 0.7)
    bars = []
    for i, s in enumerate(series):
        h = round((height - 14) * s["flattrs"] / top, 1)
        bars.append({"x": round(i * step + (step - bar) / 2, 1), "y": round(height - 12 - h, 1),
                     "w": round(bar, 1), "h": h, "month": s["month"],
                     "flattrs": s["flattrs"], "amount": s["amount"]})
    return {"bars": bars, "width": width, "height": height,
            "first": series[0]["month"] if series else "",
            "last": series[-1]["month"] if series else "",
            "last_x": max(90.0, bars[-1]["x"] + bars[-1]["w"]) if bars else 0}


__all__ = ["GIVING_COLUMNS", "STATEMENT_COLUMNS", "creator_stats", "giving",
           "sign_statements", "statement_evidence", "statement_months", "statement_rows",
           "thing_chart"]
