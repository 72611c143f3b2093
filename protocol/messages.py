"""Rill's message bodies and the signed envelope (SPEC.md §4 and §5).

Every object on the wire is a *signed envelope*::

    {"v": 1, "t": TYPE, "body": BODY, "signer": KEY, "sig": SIG [, "cosig": SIG]}

encoded as canonical CBOR (:mod:`rill.protocol.cbor`).  ``sig`` is the
Ed25519 signature by ``signer`` over ``b"rill/1/" + TYPE + b"\\n" + cbor(BODY)``.
The object ID is SHA-256 of the whole encoded envelope.

:func:`decode` returns a :class:`Signed` only when the bytes are canonical,
within the type's size cap, schema-valid, correctly signed and obey the
type's own rules; it raises a :class:`~rill.protocol.errors.RemoteError`
otherwise.  Rules that need another object (a claim against its settlement,
a receipt against its claim) live in :mod:`rill.protocol.checks`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

import nacl.signing

from . import cbor, keys
from .currency import MAX_AMOUNT, check_currency_code
from .errors import (
    BadKey,
    BadSignature,
    DecodeError,
    LocalError,
    RemoteError,
    RuleError,
    SchemaError,
    TooLarge,
)
from .months import check_month
from .payto import check_payto
from .things import check_origin, check_thing

VERSION = 1
HASH_BYTES = 32
ZERO_HASH = bytes(HASH_BYTES)
MAX_TIME = 2**53 - 1
MAX_TEXT_BYTES = 256
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def signing_input(type_name: str, body_bytes: bytes) -> bytes:
    """The exact bytes an envelope's ``sig`` covers."""
    return b"rill/%d/" % VERSION + type_name.encode("ascii") + b"\n" + body_bytes



def parse_object_id(text: str) -> bytes:
    """Text form of an object ID: 64 lowercase hex digits."""
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise LocalError(f"not an object ID (64 hex digits): {text!r}", code="bad-id")
    return bytes.fromhex(text)


# --------------------------------------------------------------------------
# Schema reading


_MISSING = object()


class _Reader:
    """Reads fields out of a decoded map, refusing unknown or ill-typed ones."""

    def __init__(self, value: object, where: str) -> None:
        if type(value) is not dict:
            raise SchemaError(f"{where}: expected a map")
        self._m: dict[str, Any] = value
        self._seen: set[str] = set()
        self._where = where

    def _get(self, name: str, optional: bool) -> Any:
        v = self._m.get(name, _MISSING)
        if v is _MISSING:
            if optional:
                return None
            raise SchemaError(f"{self._where}: missing field {name!r}")
        self._seen.add(name)
        return v

    def _err(self, name: str, what: str) -> SchemaError:
        return SchemaError(f"{self._where}.{name}: {what}")

    def uint(self, name: str, *, lo: int = 0, hi: int = MAX_AMOUNT, optional: bool = False) -> Any:
        v = self._get(name, optional)
        if v is None:  # a missing optional field (decoded CBOR never holds null)
            return None
        if type(v) is not int:
            raise self._err(name, "expected an unsigned integer")
        if not lo <= v <= hi:
            raise self._err(name, f"out of range {lo}..{hi}")
        return v

    def text(self, name: str, *, max_bytes: int = MAX_TEXT_BYTES, optional: bool = False) -> Any:
        v = self._get(name, optional)
        if v is None:  # a missing optional field (decoded CBOR never holds null)
            return None
        if type(v) is not str:
            raise self._err(name, "expected text")
        if len(v.encode("utf-8")) > max_bytes:
            raise self._err(name, f"longer than {max_bytes} bytes")
        return v

    def label(self, name: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
        """Human text: 1..max_bytes, no control characters."""
        v: str = self.text(name, max_bytes=max_bytes)
        if not v or _CONTROL_RE.search(v) or v != v.strip():
            raise self._err(name, "must be non-empty, trimmed, without control characters")
        return v

    def raw(self, name: str, *, length: int | None = None, max_bytes: int | None = None,
            optional: bool = False) -> Any:
        v = self._get(name, optional)
        if v is None:  # a missing optional field (decoded CBOR never holds null)
            return None
        if type(v) is not bytes:
            raise self._err(name, "expected a byte string")
        if length is not None and len(v) != length:
            raise self._err(name, f"expected {length} bytes")
        if max_bytes is not None and len(v) > max_bytes:
            raise self._err(name, f"longer than {max_bytes} bytes")
        return v

    def key(self, name: str, *, optional: bool = False) -> Any:
        v = self.raw(name, length=keys.KEY_BYTES, optional=optional)
        if v is None:
            return None
        try:
            return keys.admit_key(v)
        except BadKey as exc:
            raise BadKey(f"{self._where}.{name}: {exc}") from None

    def month(self, name: str = "month") -> str:
        return check_month(self._get(name, False), f"{self._where}.{name}")

    def currency(self, name: str = "currency") -> str:
        return check_currency_code(self.text(name, max_bytes=3))

    def array(self, name: str, *, lo: int = 0, hi: int) -> list[Any]:
        v = self._get(name, False)
        if type(v) is not list:
            raise self._err(name, "expected an array")
        if not lo <= len(v) <= hi:
            raise self._err(name, f"expected {lo}..{hi} items, got {len(v)}")
        return v

    def submap(self, name: str) -> _Reader:
        return _Reader(self._get(name, False), f"{self._where}.{name}")

    def done(self) -> None:
        if len(self._seen) == len(self._m):  # every field read (and only those exist)
            return
        extra = set(self._m) - self._seen
        if extra:
            raise SchemaError(f"{self._where}: unknown field(s) {sorted(extra)}")


def _sorted_unique(items: list[Any], where: str, sort_key: Callable[[Any], Any] | None = None
                   ) -> None:
    keyed = [sort_key(i) for i in items] if sort_key else items
    if any(a >= b for a, b in itertools.pairwise(keyed)):
        raise SchemaError(f"{where}: items must be strictly ascending (sorted, no duplicates)")


def _strings(r: _Reader, name: str, check: Callable[[object, str], str], lo: int, hi: int,
             *, ordered: bool = True) -> tuple[str, ...]:
    """An array of checked strings; sorted by UTF-8 bytes unless ``ordered`` is False,
    and never with duplicates."""
    items = r.array(name, lo=lo, hi=hi)
    out = tuple(check(v, f"{r._where}.{name}[{i}]") for i, v in enumerate(items))
    if ordered:
        _sorted_unique([s.encode("utf-8") for s in out], f"{r._where}.{name}")
    elif len(set(out)) != len(out):
        raise SchemaError(f"{r._where}.{name}: duplicate items")
    return out


def _thing(value: object, where: str) -> str:
    if type(value) is not str:
        raise SchemaError(f"{where}: expected text", code="bad-thing")
    if _thing_ok(value):
        return value
    try:
        return check_thing(value)
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}", code=exc.code) from None


@functools.lru_cache(maxsize=65536)
def _thing_ok(value: str) -> bool:
    """Cached verdict of check_thing (things repeat: every click, claim, settlement)."""
    try:
        check_thing(value)
    except SchemaError:
        return False
    return True


def _origin(value: object, where: str) -> str:
    if type(value) is not str:
        raise SchemaError(f"{where}: expected text", code="bad-origin")
    try:
        return check_origin(value)
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}", code=exc.code) from None


# --------------------------------------------------------------------------
# Bodies


class Body(Protocol):
    TYPE: ClassVar[str]
    MAX_SIZE: ClassVar[int]

    def to_map(self) -> dict[str, Any]: ...

    def check_rules(self, signer: bytes) -> None: ...


BodyT = TypeVar("BodyT", bound=Body, covariant=True)

CLICK_KINDS = ("click", "subscribe", "unsubscribe", "budget")
MAX_SUBSCRIPTION_MONTHS = 1200


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
        r = _Reader(m, "click")
        seq = r.uint("seq", hi=MAX_TIME)
        prev = r.raw("prev", length=HASH_BYTES)
        time = r.uint("time", hi=MAX_TIME)
        kind = r.text("kind", max_bytes=16)
        if kind not in CLICK_KINDS:
            raise SchemaError(f"click.kind: expected one of {', '.join(CLICK_KINDS)}")
        d = r.submap("data")
        r.done()
        thing = creator = months = amount = currency = None
        if kind == "budget":
            amount = d.uint("amount")
            currency = d.currency()
        else:
            raw_thing = d.text("thing", max_bytes=4096, optional=True)
            thing = None if raw_thing is None else _thing(raw_thing, "click.data.thing")
            creator = d.key("creator", optional=True)
            if kind == "click" and thing is None:
                raise SchemaError("click.data: a click needs 'thing'")
            if kind == "subscribe" and thing is None and creator is None:
                raise SchemaError("click.data: a subscribe names a 'thing', a 'creator' or both")
            if kind == "unsubscribe" and (thing is None) == (creator is None):
                raise SchemaError("click.data: an unsubscribe names exactly one of 'thing', "
                                  "'creator'")
            if kind == "subscribe":
                months = d.uint("months", lo=1, hi=MAX_SUBSCRIPTION_MONTHS, optional=True)
        d.done()
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
        r = _Reader(m, "key")
        name = r.label("name", max_bytes=128)
        origins = _strings(r, "origins", _origin, 1, cls.MAX_ORIGINS)
        payto = _strings(r, "payto", check_payto, 0, cls.MAX_PAYTO, ordered=False)
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


@dataclass(frozen=True)
class Settlement:
    """A donor's month-end split of its budget (SPEC §5.3)."""

    TYPE: ClassVar[str] = "settlement"
    MAX_SIZE: ClassVar[int] = 262144
    MAX_LINES: ClassVar[int] = 2000

    month: str
    currency: str
    budget: int
    things: int
    head: bytes
    lines: tuple[SettlementLine, ...]

    def to_map(self) -> dict[str, Any]:
        return {"month": self.month, "currency": self.currency, "budget": self.budget,
                "things": self.things, "head": self.head,
                "lines": [line.to_map() for line in self.lines]}

    @classmethod
    def from_map(cls, m: object) -> Settlement:
        r = _Reader(m, "settlement")
        month = r.month()
        currency = r.currency()
        budget = r.uint("budget")
        things = r.uint("things", hi=MAX_TIME)
        head = r.raw("head", length=HASH_BYTES)
        lines = []
        for i, item in enumerate(r.array("lines", hi=cls.MAX_LINES)):
            lr = _Reader(item, f"settlement.lines[{i}]")
            line = SettlementLine(lr.key("creator"), lr.uint("amount"),
                                  lr.uint("things", lo=1, hi=MAX_TIME),
                                  lr.raw("commit", length=HASH_BYTES))
            lr.done()
            lines.append(line)
        r.done()
        _sorted_unique([ln.creator for ln in lines], "settlement.lines (by creator)")
        return cls(month, currency, budget, things, head, tuple(lines))

    def check_rules(self, signer: bytes) -> None:
        from .shares import check_split  # local import: shares imports this module

        check_split(self)


@dataclass(frozen=True)
class Claim:
    """What one donor owes one creator for one month (SPEC §5.4)."""

    TYPE: ClassVar[str] = "claim"
    MAX_SIZE: ClassVar[int] = 262144
    MAX_THINGS: ClassVar[int] = 10000

    settlement: bytes
    month: str
    creator: bytes
    currency: str
    amount: int
    things: tuple[str, ...]
    salt: bytes

    def to_map(self) -> dict[str, Any]:
        return {"settlement": self.settlement, "month": self.month, "creator": self.creator,
                "currency": self.currency, "amount": self.amount,
                "things": list(self.things), "salt": self.salt}

    @classmethod
    def from_map(cls, m: object) -> Claim:
        r = _Reader(m, "claim")
        settlement = r.raw("settlement", length=HASH_BYTES)
        month = r.month()
        creator = r.key("creator")
        currency = r.currency()
        amount = r.uint("amount")
        things = _strings(r, "things", _thing, 1, cls.MAX_THINGS)
        salt = r.raw("salt", length=32)
        r.done()
        return cls(settlement, month, creator, currency, amount, things, salt)

    def check_rules(self, signer: bytes) -> None:
        return None


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
        r = _Reader(m, "sealed-claim")
        settlement = r.raw("settlement", length=HASH_BYTES)
        month = r.month()
        creator = r.key("creator")
        claim = r.raw("claim", length=HASH_BYTES)
        box = r.raw("box", max_bytes=Claim.MAX_SIZE + cls.SEAL_OVERHEAD)
        r.done()
        if len(box) < cls.SEAL_OVERHEAD + 1:
            raise SchemaError("sealed-claim.box: too short for a sealed box")
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
        r = _Reader(m, "receipt")
        claim = r.raw("claim", length=HASH_BYTES)
        donor = r.key("donor")
        month = r.month()
        currency = r.currency()
        amount = r.uint("amount")
        reference = r.text("reference")
        time = r.uint("time", hi=MAX_TIME)
        r.done()
        if _CONTROL_RE.search(reference):
            raise SchemaError("receipt.reference: control characters are not allowed")
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
        r = _Reader(m, "equivocation")
        a = r.raw("a", max_bytes=Settlement.MAX_SIZE)
        b = r.raw("b", max_bytes=Settlement.MAX_SIZE)
        r.done()
        return cls(a, b)

    @functools.cached_property
    def settlements(self) -> tuple[Signed[Settlement], Signed[Settlement]]:
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


BODY_TYPES: Mapping[str, Any] = {
    cls.TYPE: cls
    for cls in (ClickEntry, KeyDocument, Settlement, Claim, SealedClaim, Receipt, Equivocation)
}
MAX_OBJECT_SIZE = max(cls.MAX_SIZE for cls in BODY_TYPES.values())

_BodyOut = TypeVar("_BodyOut")


# --------------------------------------------------------------------------
# The envelope


@dataclass(frozen=True)
class Signed(Generic[BodyT]):
    """A decoded, verified signed object."""

    body: BodyT
    signer: bytes
    signature: bytes
    raw: bytes = field(repr=False)
    cosignature: bytes | None = None

    @property
    def type(self) -> str:
        return self.body.TYPE

    @functools.cached_property
    def id(self) -> bytes:
        """SHA-256 of the encoded envelope."""
        return hashlib.sha256(self.raw).digest()

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    @property
    def signer_did(self) -> str:
        return keys.did_from_key(self.signer)


def encode(obj: Signed[Any]) -> bytes:
    """The canonical bytes of a signed object."""
    return obj.raw


def _envelope_map(body: Body, signer: bytes, sig: bytes, cosig: bytes | None) -> dict[str, Any]:
    env: dict[str, Any] = {"v": VERSION, "t": body.TYPE, "body": body.to_map(),
                           "signer": signer, "sig": sig}
    if cosig is not None:
        env["cosig"] = cosig
    return env


def rotation_input(body_bytes: bytes) -> bytes:
    """What the previous key signs in a key rotation (``cosig``)."""
    return signing_input("key-rotation", body_bytes)


def sign(body: _BodyOut, signing_key: nacl.signing.SigningKey,
         previous_key: nacl.signing.SigningKey | None = None) -> Signed[Any]:
    """Sign ``body``; ``previous_key`` co-signs a key rotation.

    The result is decoded again before it is returned, so an invalid body
    raises :class:`LocalError` here instead of reaching the network.
    """
    b = cast(Body, body)
    body_bytes = cbor.encode(b.to_map())
    signer = keys.public_key(signing_key)
    sig = keys.sign(signing_key, signing_input(b.TYPE, body_bytes))
    cosig = None
    if previous_key is not None:
        cosig = keys.sign(previous_key, rotation_input(body_bytes))
    raw = cbor.encode(_envelope_map(b, signer, sig, cosig))
    try:
        # everything but our own fresh signature is checked (a key document's
        # co-signature is checked too: it may come from a wrong previous key)
        return decode(raw, verify_signature=isinstance(body, KeyDocument))
    except RemoteError as exc:
        raise LocalError(f"refusing to sign an invalid {b.TYPE}: {exc.reason}",
                         code=exc.code) from None


def peek_type(raw: bytes) -> str | None:
    """Best-effort type name of possibly invalid bytes (for reports only)."""
    try:
        env = cbor.decode(raw, exact=False) if len(raw) <= MAX_OBJECT_SIZE else None
    except RemoteError:
        return None
    if isinstance(env, dict) and isinstance(env.get("t"), str) and env["t"] in BODY_TYPES:
        return cast(str, env["t"])
    return None


def _body_slice(raw: bytes, type_name: str, has_cosig: bool) -> bytes:
    """The bytes of ``body`` inside a canonical envelope, without re-encoding it.

    Canonical key order is t, v, sig, body, [cosig,] signer; every other field
    has a fixed size, so the body is what lies between them.
    """
    tlen = len(type_name)  # ASCII, < 24: one-byte text header
    prefix = 1 + 2 + 1 + tlen + 2 + 1 + 4 + 2 + keys.SIG_BYTES + 5
    suffix = (6 + 2 + keys.SIG_BYTES if has_cosig else 0) + 7 + 2 + keys.KEY_BYTES
    return raw[prefix:len(raw) - suffix]


def _signed(body: Any, signer: bytes, sig: bytes, raw: bytes, cosig: bytes | None
            ) -> Signed[Any]:
    """``Signed(...)`` without the frozen dataclass's per-field ``__setattr__`` calls
    (decode's hot path; the fields are the same)."""
    obj: Signed[Any] = Signed.__new__(Signed)
    obj.__dict__.update(body=body, signer=signer, signature=sig, raw=raw, cosignature=cosig)
    return obj


def decode(raw: bytes, expect: type[_BodyOut] | None = None, *,
           verify_signature: bool = True, exact: bool = True) -> Signed[Any]:
    """Decode and fully verify one signed object (see module doc).

    ``verify_signature=False`` skips steps 7-8 of SPEC §4.4.  Use it only for
    bytes already authenticated another way, such as click-log entries whose
    hash links lead to a verified head (:func:`checks.check_chain_links`).
    ``exact=False`` refuses input that is not canonical CBOR as ``malformed``
    without looking for the §3.2 reason (see :func:`cbor.decode`).
    """
    if type(raw) is not bytes:
        raw = bytes(raw)
    if len(raw) > MAX_OBJECT_SIZE:
        raise TooLarge(f"{len(raw)} bytes is more than any Rill object ({MAX_OBJECT_SIZE})")
    env = cbor.decode(raw, exact=exact)
    r = _Reader(env, "envelope")
    version = r.uint("v", hi=2**32)
    if version != VERSION:
        raise SchemaError(f"unsupported version {version}", code="unsupported-version")
    type_name = r.text("t", max_bytes=32)
    cls = BODY_TYPES.get(type_name)
    if cls is None:
        raise SchemaError(f"unknown type {type_name!r}", code="unknown-type")
    if expect is not None and cls is not expect:
        raise SchemaError(f"expected a {cast(Any, expect).TYPE}, got a {type_name}",
                          code="wrong-type")
    if len(raw) > cls.MAX_SIZE:
        raise TooLarge(f"{len(raw)} bytes is more than the {type_name} cap ({cls.MAX_SIZE})")
    signer = r.key("signer")
    sig = r.raw("sig", length=keys.SIG_BYTES)
    cosig = r.raw("cosig", length=keys.SIG_BYTES, optional=True)
    body_map = env.get("body")
    r._get("body", False)
    r.done()
    body = cls.from_map(body_map)
    if not verify_signature:
        body.check_rules(signer)
        return _signed(body, signer, sig, raw, cosig)
    body_bytes = _body_slice(raw, type_name, cosig is not None)
    try:
        keys.verify_signature(signer, signing_input(type_name, body_bytes), sig)
    except BadSignature as exc:
        raise BadSignature(f"{type_name}: {exc}") from None
    prev = getattr(body, "prev", None) if cls is KeyDocument else None
    if (cosig is None) != (prev is None):
        raise SchemaError("envelope: 'cosig' is present exactly when a key document has 'prev'",
                          code="bad-rotation")
    if cosig is not None and prev is not None:
        try:
            keys.verify_signature(prev, rotation_input(body_bytes), cosig)
        except BadSignature:
            raise BadSignature("key: the previous key's rotation signature does not verify",
                               code="bad-rotation") from None
    body.check_rules(signer)
    return _signed(body, signer, sig, raw, cosig)


__all__ = [
    "BODY_TYPES",
    "Claim",
    "ClickEntry",
    "DecodeError",
    "Equivocation",
    "KeyDocument",
    "Receipt",
    "SealedClaim",
    "Settlement",
    "SettlementLine",
    "Signed",
    "decode",
    "encode",
    "sign",
]
