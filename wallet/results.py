"""What wallet calls return: small frozen records, and money formatting for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocol import keys
from ..protocol import messages as m
from ..protocol.counting import LogEntry
from ..protocol.currency import format_amount
from ..protocol.errors import LocalError
from .errors import HomeError


@dataclass(frozen=True)
class ClickResult:
    thing: str
    month: str
    entry: m.Signed[m.ClickEntry] | None  # None: already flattred this month, nothing added

    @property
    def new(self) -> bool:
        return self.entry is not None


@dataclass(frozen=True)
class Obligation:
    claim: bytes
    direction: str
    month: str
    donor: bytes
    creator: bytes
    amount: int
    currency: str
    state: str
    reference: str | None
    paid_at: int | None
    receipt: bytes | None
    payable: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.claim.hex(), "month": self.month,
            "donor": keys.did_from_key(self.donor), "creator": keys.did_from_key(self.creator),
            "amount": self.amount, "currency": self.currency, "state": self.state,
            "direction": "outgoing" if self.direction == "out" else "incoming",
            "payable": self.payable, "reference": self.reference,
            "receipt": self.receipt.hex() if self.receipt else None,
        }


@dataclass(frozen=True)
class Payment:
    """What to pay one creator now: the sum of its owed claims, with instructions."""

    creator: bytes
    currency: str
    amount: int
    claims: tuple[bytes, ...]
    payable: bool
    uris: tuple[str, ...]
    name: str | None
    #: the month pseudonym that owes these claims (None: our identity); never summed
    #: with another key's claims, so one payment cannot link them (SPEC §13.1)
    pseudonym: bytes | None = None

    def as_json(self) -> dict[str, Any]:
        return {"creator": keys.did_from_key(self.creator), "name": self.name,
                "currency": self.currency, "amount": self.amount,
                "claims": [c.hex() for c in self.claims], "payable": self.payable,
                "payto": list(self.uris),
                "pseudonym": keys.did_from_key(self.pseudonym) if self.pseudonym else None}


@dataclass(frozen=True)
class ImportResult:
    id: bytes
    type: str
    action: str
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id.hex(), "type": self.type, "action": self.action,
                "detail": self.detail}


@dataclass
class LogReport:
    size: int
    head: bytes
    settled: list[str] = field(default_factory=list)
    entries: list[LogEntry] = field(default_factory=list, repr=False)


def format_amount_safe(amount: int, currency: str) -> str:
    try:
        return f"{format_amount(amount, currency)} {currency}"
    except LocalError:
        return f"{amount} {currency} (minor units)"


def format_amount_strict(amount: int, currency: str) -> str:
    try:
        return format_amount(amount, currency)
    except LocalError:
        raise HomeError(f"unknown currency {currency}") from None
