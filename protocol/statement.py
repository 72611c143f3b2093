"""A creator's signed monthly income statement (SPEC.md §5.9), and its checks against
the claims and receipts it lists (SPEC §7.6).

The body type lives here, apart from :mod:`rill.protocol.bodies`: it is a document a
creator hands to an accountant, never gossiped (it has no topic, SPEC §11.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .currency import MAX_AMOUNT
from .errors import MismatchError, RuleError, SchemaError
from .fields import MAX_TIME, Reader

#: The states of a statement row (those of an obligation: owed, paid, receipted).
ROW_STATES = ("owed", "paid", "receipted")


@dataclass(frozen=True)
class StatementRow:
    """One claim owed to the creator (SPEC §5.9, the row table)."""

    claim: bytes
    donor: bytes
    currency: str
    amount: int
    state: str
    receipt: bytes | None = None
    received: int | None = None

    def to_map(self) -> dict[str, Any]:
        m: dict[str, Any] = {"claim": self.claim, "donor": self.donor,
                             "currency": self.currency, "amount": self.amount,
                             "state": self.state}
        if self.receipt is not None:
            m["receipt"] = self.receipt
        if self.received is not None:
            m["received"] = self.received
        return m

    @classmethod
    def from_map(cls, m: object, where: str) -> StatementRow:
        r = Reader(m, where)
        claim = r.hash("claim")
        donor = r.key("donor")
        currency = r.currency()
        amount = r.uint("amount")
        state = r.choice("state", ROW_STATES)
        receipt = r.bstr("receipt", lo=32, hi=32, optional=True)
        received = r.uint("received", optional=True)
        if (state == "receipted") != (receipt is not None) or \
                (receipt is None) != (received is None):
            raise SchemaError(f"{where}: 'receipt' and 'received' are present exactly when "
                              "state is receipted")
        r.done()
        return cls(claim, donor, currency, amount, state, receipt, received)


@dataclass(frozen=True)
class StatementTotal:
    """The sums of one currency's rows."""

    currency: str
    claims: int
    amount: int
    received: int

    def to_map(self) -> dict[str, Any]:
        return {"currency": self.currency, "claims": self.claims, "amount": self.amount,
                "received": self.received}

    @classmethod
    def from_map(cls, m: object, where: str) -> StatementTotal:
        r = Reader(m, where)
        total = cls(r.currency(), r.uint("claims", lo=1, hi=Statement.MAX_ROWS),
                    r.uint("amount"), r.uint("received"))
        r.done()
        return total


def totals_of(rows: Iterable[StatementRow]) -> tuple[StatementTotal, ...]:
    """The totals a statement with these rows carries: one per currency, sorted."""
    sums: dict[str, list[int]] = {}
    for row in rows:
        s = sums.setdefault(row.currency, [0, 0, 0])
        s[0] += 1
        s[1] += row.amount
        s[2] += row.received or 0
    return tuple(StatementTotal(c, n, a, rcv) for c, (n, a, rcv) in sorted(sums.items()))


@dataclass(frozen=True)
class Statement:
    """A creator's income statement for one month (SPEC §5.9)."""

    TYPE: ClassVar[str] = "statement"
    MAX_SIZE: ClassVar[int] = 524288
    MAX_ROWS: ClassVar[int] = 2000
    MAX_PARTS: ClassVar[int] = 10000

    month: str
    time: int
    part: int
    parts: int
    rows: tuple[StatementRow, ...]
    totals: tuple[StatementTotal, ...]

    def to_map(self) -> dict[str, Any]:
        return {"month": self.month, "time": self.time, "part": self.part,
                "parts": self.parts, "rows": [row.to_map() for row in self.rows],
                "totals": [t.to_map() for t in self.totals]}

    @classmethod
    def from_map(cls, m: object) -> Statement:
        r = Reader(m, "statement")
        month = r.month()
        time = r.uint("time", hi=MAX_TIME)
        part = r.uint("part", lo=1, hi=cls.MAX_PARTS)
        parts = r.uint("parts", lo=1, hi=cls.MAX_PARTS)
        items = r.array("rows", hi=cls.MAX_ROWS)
        rows = tuple(StatementRow.from_map(item, f"statement.rows[{i}]")
                     for i, item in enumerate(items))
        for i in range(1, len(rows)):
            if not rows[i - 1].claim < rows[i].claim:
                raise SchemaError("statement.rows: must be strictly ascending by claim "
                                  "(sorted, one row per claim)")
        items = r.array("totals", hi=cls.MAX_ROWS)
        totals = tuple(StatementTotal.from_map(item, f"statement.totals[{i}]")
                       for i, item in enumerate(items))
        for i in range(1, len(totals)):
            if not totals[i - 1].currency < totals[i].currency:
                raise SchemaError("statement.totals: must be strictly ascending by currency")
        r.done()
        return cls(month, time, part, parts, rows, totals)

    def check_rules(self, signer: bytes) -> None:
        if self.part > self.parts:
            raise RuleError(f"statement: part {self.part} of {self.parts}",
                            code="bad-total")
        want = totals_of(self.rows)
        if self.totals != want:
            raise RuleError("statement: totals do not add up: " + _totals_diff(self.totals,
                                                                              want),
                            code="bad-total")


def _totals_diff(got: tuple[StatementTotal, ...], want: tuple[StatementTotal, ...]) -> str:
    g = {t.currency: t for t in got}
    w = {t.currency: t for t in want}
    for cur in sorted(set(g) | set(w)):
        if cur not in g:
            return f"no total for {cur}, which rows use"
        if cur not in w:
            return f"a total for {cur}, which no row uses"
        a, b = g[cur], w[cur]
        for name in ("claims", "amount", "received"):
            if getattr(a, name) != getattr(b, name):
                return (f"{cur} {name} is {getattr(a, name)}, the rows add up to "
                        f"{getattr(b, name)}")
    return "they differ"  # pragma: no cover - the tuples differ somewhere above


def make_statement(month: str, time: int, rows: Iterable[StatementRow], part: int = 1,
                   parts: int = 1) -> Statement:
    """A statement over ``rows`` (any order), its totals computed."""
    ordered = tuple(sorted(rows, key=lambda row: row.claim))
    if any(t.amount > MAX_AMOUNT or t.received > MAX_AMOUNT for t in totals_of(ordered)):
        from .errors import LocalError

        raise LocalError("a total of this statement is above the largest amount")
    return Statement(month, time, part, parts, ordered, totals_of(ordered))


def _short(oid: bytes) -> str:
    return oid.hex()[:16]


def check_statement(statement: Any, claims: Mapping[bytes, Any],
                    receipts: Mapping[bytes, Any] | None = None,
                    all_claims: Iterable[Any] = ()) -> list[str]:
    """Check a statement against claims (by ID) and receipts (by ID) given with it
    (SPEC §7.6).  Returns one message per failing row, empty when all agree.

    ``claims`` must hold every listed claim (a missing one is a failing row);
    ``receipts``, when given, must hold the receipt of every receipted row;
    ``all_claims``: valid claims given with it (those of this creator and month are
    looked at), for a one-part statement that leaves one out.
    """
    s = statement.body
    creator = statement.signer
    problems: list[str] = []
    for i, row in enumerate(s.rows):
        where = f"row {i + 1} (claim {_short(row.claim)})"
        claim = claims.get(row.claim)
        if claim is None:
            problems.append(f"{where}: the claim is not among the objects given")
        else:
            c = claim.body
            if c.creator != creator:
                problems.append(f"{where}: the claim is owed to another creator")
            if c.month != s.month:
                problems.append(f"{where}: the claim is for {c.month}, the statement for "
                                f"{s.month}")
            if claim.signer != row.donor:
                problems.append(f"{where}: the claim is signed by another donor")
            if (c.currency, c.amount) != (row.currency, row.amount):
                problems.append(f"{where}: the statement says {row.amount} {row.currency}, "
                                f"the claim {c.amount} {c.currency}")
        if receipts is None or row.receipt is None:
            continue
        receipt = receipts.get(row.receipt)
        if receipt is None:
            problems.append(f"{where}: marked receipted, but its receipt "
                            f"{_short(row.receipt)} is not among the objects given")
            continue
        r = receipt.body
        if receipt.signer != creator:
            problems.append(f"{where}: the receipt is signed by another key")
        if r.claim != row.claim or r.donor != row.donor or r.month != s.month:
            problems.append(f"{where}: the receipt is for another claim, donor or month")
        if (r.currency, r.amount) != (row.currency, row.received):
            problems.append(f"{where}: the statement says {row.received} {row.currency} "
                            f"received, the receipt {r.amount} {r.currency}")
    if s.parts == 1:
        listed = {row.claim for row in s.rows}
        for claim in all_claims:
            if (claim.body.creator == creator and claim.body.month == s.month
                    and claim.id not in listed):
                problems.append(f"claim {_short(claim.id)} to this creator for {s.month} "
                                "is not listed")
    return problems


def raise_problems(problems: list[str]) -> None:
    """Raise :class:`MismatchError` naming the first problem and how many there are."""
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MismatchError(problems[0] + more)


__all__ = ["ROW_STATES", "Statement", "StatementRow", "StatementTotal", "check_statement",
           "make_statement", "raise_problems", "totals_of"]
