"""The seven v1 message bodies and their field tables (SPEC.md §5).

Each body is a frozen dataclass with ``to_map`` (the body as a CBOR map),
``from_map`` (step 6 of SPEC §4.4: the fields in the order of the type's table,
each checked completely, then unknown fields) and ``check_rules`` (step 9: the
type's own rules, run after the signatures verified).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from . import keys
from .disclosure import Disclosure
from .errors import RemoteError, RuleError, SchemaError
from .fields import HASH_BYTES, MAX_TIME, ZERO_HASH, Reader
from .statement import Statement

if TYPE_CHECKING:
    from .envelope import Signed


class Body(Protocol):
    TYPE: ClassVar[str]
    MAX_SIZE: ClassVar[int]

    def to_map(self) -> dict[str, Any]: ...

    def check_rules(self, signer: bytes) -> None: ...


BodyT = TypeVar("BodyT", bound=Body, covariant=True)

CLICK_KINDS = ("click", "subscribe", "unsubscribe", "budget")
MAX_SUBSCRIPTION_MONTHS = 1200
#: A settlement line, and so a claim, holds at most this many things.
MAX_LINE_THINGS = 10_000
#: A settlement splits its budget over at most this many things (2,000 lines of 10,000).
MAX_SETTLEMENT_THINGS = 20_000_000
#: Largest proof-of-work nonce of a settlement (SPEC §5.3, rill.protocol.work).
MAX_WORK = 2**64 - 1
MAX_REFERENCE_BYTES = 256


@dataclass(frozen=True)
class ClickEntry:
    """One entry of a donor's hash-chained click log (SPEC §5.1)."""

    TYPE: ClassVar[str] = "click"
    MAX_SIZE: ClassVar[int] = 4096

    seq: int
    prev: bytes
    time: int
    kind: str
    thing: str | None = None
    creator: bytes | None = None
    months: int | None = None
    amount: int | None = None
    currency: str | None = None

    def to_map(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in ("thing", "creator", "months", "amount", "currency"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return {"seq": self.seq, "prev": self.prev, "time": self.time, "kind": self.kind,
                "data": data}

    @classmethod
    def from_map(cls, m: object) -> ClickEntry:
        r = Reader(m, "click")
        seq = r.uint("seq", hi=MAX_TIME)
        prev = r.hash("prev")
        time = r.uint("time", hi=MAX_TIME)
        kind = r.choice("kind", CLICK_KINDS)
        d = r.map("data")
        thing = creator = months = amount = currency = None
        if kind == "budget":
            amount = d.uint("amount")
            currency = d.currency()
        else:
            thing = d.thing("thing", optional=kind != "click")
            creator = d.key("creator", optional=True)
            if kind == "subscribe":
                months = d.uint("months", lo=1, hi=MAX_SUBSCRIPTION_MONTHS, optional=True)
                if thing is None and creator is None:
                    raise SchemaError("click.data: a subscribe names a 'thing', a 'creator' "
                                      "or both")
            elif kind == "unsubscribe" and (thing is None) == (creator is None):
                raise SchemaError("click.data: an unsubscribe names exactly one of 'thing', "
                                  "'creator'")
        d.done()
        r.done()
        return cls(seq, prev, time, kind, thing, creator, months, amount, currency)

    @property
    def target(self) -> str | None:
        """What a click or (un)subscription is for: the thing, or for an entry naming only
        a creator, the creator's ``did:key`` (SPEC §6.2)."""
        if self.thing is not None:
            return self.thing
        if self.creator is not None:
            return keys.did_from_key(self.creator)
        return None

    def check_rules(self, signer: bytes) -> None:
        if (self.seq == 0) != (self.prev == ZERO_HASH):
            raise RuleError("click: prev is all zeros exactly when seq is 0", code="bad-chain")


@dataclass(frozen=True)
class KeyDocument:
    """A creator's key document, published at /.well-known/rill.json (SPEC §5.2)."""

    TYPE: ClassVar[str] = "key"
    MAX_SIZE: ClassVar[int] = 16384
    MAX_ORIGINS: ClassVar[int] = 16
    MAX_PAYTO: ClassVar[int] = 8
    MAX_NAME_BYTES: ClassVar[int] = 128

    name: str
    origins: tuple[str, ...]
    payto: tuple[str, ...]
    valid_from: int
    prev: bytes | None = None

    def to_map(self) -> dict[str, Any]:
        m: dict[str, Any] = {"name": self.name, "origins": list(self.origins),
                             "payto": list(self.payto), "valid_from": self.valid_from}
        if self.prev is not None:
            m["prev"] = self.prev
        return m

    @classmethod
    def from_map(cls, m: object) -> KeyDocument:
        r = Reader(m, "key")
        name = r.label("name", max_bytes=cls.MAX_NAME_BYTES)
        origins = r.origins("origins", lo=1, hi=cls.MAX_ORIGINS)
        payto = r.paytos("payto", lo=0, hi=cls.MAX_PAYTO)
        valid_from = r.uint("valid_from", hi=MAX_TIME)
        prev = r.key("prev", optional=True)
        r.done()
        return cls(name, origins, payto, valid_from, prev)

    def check_rules(self, signer: bytes) -> None:
        if self.prev == signer:
            raise RuleError("key: prev must differ from the signing key", code="bad-rotation")


@dataclass(frozen=True)
class SettlementLine:
    creator: bytes
    amount: int
    things: int
    commit: bytes

    def to_map(self) -> dict[str, Any]:
        return {"creator": self.creator, "amount": self.amount, "things": self.things,
                "commit": self.commit}

    @classmethod
    def from_map(cls, m: object, where: str) -> SettlementLine:
        r = Reader(m, where)
        line = cls(r.key("creator"), r.uint("amount"),
                   r.uint("things", lo=1, hi=MAX_LINE_THINGS), r.hash("commit"))
        r.done()
        return line


@dataclass(frozen=True)
class Settlement:
    """A donor's month-end split of its budget (SPEC §5.3).

    ``work`` is the optional proof-of-work nonce (:mod:`rill.protocol.work`): not part
    of the object's validity, a gossip admission rule (SPEC §11.2).
    """

    TYPE: ClassVar[str] = "settlement"
    MAX_SIZE: ClassVar[int] = 262144
    MAX_LINES: ClassVar[int] = 2000

    month: str
    currency: str
    budget: int
    things: int
    head: bytes
    lines: tuple[SettlementLine, ...]
    work: int | None = None

    def to_map(self) -> dict[str, Any]:
        m = {"month": self.month, "currency": self.currency, "budget": self.budget,
             "things": self.things, "head": self.head,
             "lines": [line.to_map() for line in self.lines]}
        if self.work is not None:
            m["work"] = self.work
        return m

    @classmethod
    def from_map(cls, m: object) -> Settlement:
        r = Reader(m, "settlement")
        month = r.month()
        currency = r.currency()
        budget = r.uint("budget")
        things = r.uint("things", hi=MAX_SETTLEMENT_THINGS)
        head = r.hash("head")
        items = r.array("lines", hi=cls.MAX_LINES)
        lines = tuple(SettlementLine.from_map(item, f"settlement.lines[{i}]")
                      for i, item in enumerate(items))
        for i in range(1, len(lines)):
            if not lines[i - 1].creator < lines[i].creator:
                raise SchemaError("settlement.lines: must be strictly ascending by creator "
                                  "(sorted, one line per creator)")
        work = r.uint("work", hi=MAX_WORK, optional=True)
        r.done()
        return cls(month, currency, budget, things, head, lines, work)

    def check_rules(self, signer: bytes) -> None:
        from .shares import check_split  # local import: shares imports this module

        check_split(self)


@dataclass(frozen=True)
class Claim:
    """What one donor owes one creator for one month (SPEC §5.4)."""

    TYPE: ClassVar[str] = "claim"
    MAX_SIZE: ClassVar[int] = 262144
    MAX_THINGS: ClassVar[int] = MAX_LINE_THINGS

    settlement: bytes
    month: str
    creator: bytes
    currency: str
    amount: int
    things: tuple[str, ...]
    salt: bytes
    #: optional: an encoded ``disclosure`` (§5.10) of the signing pseudonym, to the creator
    disclosure: bytes | None = None

    def to_map(self) -> dict[str, Any]:
        out = {"settlement": self.settlement, "month": self.month, "creator": self.creator,
               "currency": self.currency, "amount": self.amount,
               "things": list(self.things), "salt": self.salt}
        if self.disclosure is not None:
            out["disclosure"] = self.disclosure
        return out

    @classmethod
    def from_map(cls, m: object) -> Claim:
        r = Reader(m, "claim")
        settlement = r.hash("settlement")
        month = r.month()
        creator = r.key("creator")
        currency = r.currency()
        amount = r.uint("amount")
        things = r.things("things", lo=1, hi=cls.MAX_THINGS)
        salt = r.hash("salt")
        disclosure = r.bstr("disclosure", lo=1, hi=Disclosure.MAX_SIZE, optional=True)
        r.done()
        return cls(settlement, month, creator, currency, amount, things, salt, disclosure)

    def check_rules(self, signer: bytes) -> None:
        if self.disclosure is None:
            return
        from .envelope import decode  # local import: the envelope module imports this one

        try:
            d = decode(self.disclosure, Disclosure)
        except RemoteError as exc:
            raise RuleError(f"claim.disclosure: {exc.reason}", code="bad-disclosure") from None
        if (d.body.pseudonym, d.body.month, d.body.to) != (signer, self.month, self.creator):
            raise RuleError("claim.disclosure: not the disclosure of this claim's signer and "
                            "month to its creator", code="bad-disclosure")


@dataclass(frozen=True)
class SealedClaim:
    """A claim encrypted to its creator (SPEC §5.5)."""

    TYPE: ClassVar[str] = "sealed-claim"
    MAX_SIZE: ClassVar[int] = 262144 + 4096
    SEAL_OVERHEAD: ClassVar[int] = 48

    settlement: bytes
    month: str
    creator: bytes
    claim: bytes
    box: bytes

    def to_map(self) -> dict[str, Any]:
        return {"settlement": self.settlement, "month": self.month, "creator": self.creator,
                "claim": self.claim, "box": self.box}

    @classmethod
    def from_map(cls, m: object) -> SealedClaim:
        r = Reader(m, "sealed-claim")
        settlement = r.hash("settlement")
        month = r.month()
        creator = r.key("creator")
        claim = r.hash("claim")
        box = r.bstr("box", lo=cls.SEAL_OVERHEAD + 1, hi=Claim.MAX_SIZE + cls.SEAL_OVERHEAD)
        r.done()
        return cls(settlement, month, creator, claim, box)

    def check_rules(self, signer: bytes) -> None:
        return None


@dataclass(frozen=True)
class Receipt:
    """A creator's signed acknowledgement of a payment (SPEC §5.6)."""

    TYPE: ClassVar[str] = "receipt"
    MAX_SIZE: ClassVar[int] = 4096

    claim: bytes
    donor: bytes
    month: str
    currency: str
    amount: int
    reference: str
    time: int

    def to_map(self) -> dict[str, Any]:
        return {"claim": self.claim, "donor": self.donor, "month": self.month,
                "currency": self.currency, "amount": self.amount,
                "reference": self.reference, "time": self.time}

    @classmethod
    def from_map(cls, m: object) -> Receipt:
        r = Reader(m, "receipt")
        claim = r.hash("claim")
        donor = r.key("donor")
        month = r.month()
        currency = r.currency()
        amount = r.uint("amount")
        reference = r.text("reference", max_bytes=MAX_REFERENCE_BYTES)
        time = r.uint("time", hi=MAX_TIME)
        r.done()
        return cls(claim, donor, month, currency, amount, reference, time)

    def check_rules(self, signer: bytes) -> None:
        if self.donor == signer:
            raise RuleError("receipt: creator and donor are the same key", code="self-receipt")


@dataclass(frozen=True)
class Equivocation:
    """Proof that one donor signed two different settlements for one month (SPEC §5.7)."""

    TYPE: ClassVar[str] = "equivocation"
    MAX_SIZE: ClassVar[int] = 2 * Settlement.MAX_SIZE + 4096

    a: bytes
    b: bytes

    def to_map(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}

    @classmethod
    def from_map(cls, m: object) -> Equivocation:
        r = Reader(m, "equivocation")
        a = r.bstr("a", hi=Settlement.MAX_SIZE)
        b = r.bstr("b", hi=Settlement.MAX_SIZE)
        r.done()
        return cls(a, b)

    @functools.cached_property
    def settlements(self) -> tuple[Signed[Settlement], Signed[Settlement]]:
        from .envelope import decode  # local import: the envelope module imports this one

        out = []
        for name, raw in (("a", self.a), ("b", self.b)):
            try:
                out.append(decode(raw, Settlement))
            except RemoteError as exc:
                raise RuleError(f"equivocation.{name}: {exc.reason}",
                                code="bad-equivocation") from None
        return out[0], out[1]

    def check_rules(self, signer: bytes) -> None:
        a, b = self.settlements
        if a.signer != b.signer:
            raise RuleError("equivocation: the settlements have different donors",
                            code="bad-equivocation")
        if a.body.month != b.body.month:
            raise RuleError("equivocation: the settlements are for different months",
                            code="bad-equivocation")
        if not a.id < b.id:
            raise RuleError("equivocation: a must have the smaller ID (and differ from b)",
                            code="bad-equivocation")

    @property
    def donor(self) -> bytes:
        return self.settlements[0].signer

    @property
    def month(self) -> str:
        return self.settlements[0].body.month


from .listing import Listing  # noqa: E402  (its own module: SPEC §5.8)

BODY_TYPES: Mapping[str, Any] = {
    cls.TYPE: cls
    for cls in (ClickEntry, KeyDocument, Settlement, Claim, SealedClaim, Receipt, Equivocation,
                Statement, Listing, Disclosure)
}
MAX_OBJECT_SIZE = max(cls.MAX_SIZE for cls in BODY_TYPES.values())

__all__ = [
    "BODY_TYPES",
    "CLICK_KINDS",
    "HASH_BYTES",
    "MAX_OBJECT_SIZE",
    "Body",
    "BodyT",
    "Claim",
    "ClickEntry",
    "Disclosure",
    "Equivocation",
    "KeyDocument",
    "Receipt",
    "SealedClaim",
    "Settlement",
    "SettlementLine",
]
