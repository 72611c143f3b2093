"""Verification of a batch of objects, as ``rill verify`` reports it (SPEC.md §7).

Each object is decoded and fully verified on its own; then objects that refer
to each other within the batch are checked together (a claim against its
settlement, a sealed claim against its settlement, a receipt against its
claim and against the creator's key document).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import armour, checks, keys, sitekeys
from . import statement as statements
from .errors import ArmourError, DecodeError, MismatchError, RemoteError
from .messages import (
    Claim,
    Disclosure,
    KeyDocument,
    Receipt,
    SealedClaim,
    Settlement,
    Signed,
    Statement,
    decode,
    peek_type,
)


@dataclass
class Verdict:
    """The outcome for one object (mutable only while the batch is checked)."""

    source: str
    type: str | None
    id: str | None
    signer: str | None
    valid: bool
    reason: str | None
    obj: Signed[Any] | None = field(default=None, repr=False)
    checks: list[str] = field(default_factory=list)
    #: A valid key document's name, origins and payment addresses (as it claims them:
    #: a file alone cannot show which sites serve it).
    key: dict[str, Any] | None = None
    #: A statement's failing rows against the claims and receipts given with it.
    problems: list[str] = field(default_factory=list)
    #: A valid disclosure's link: identity, pseudonym, month and recipient (SPEC §5.10).
    link: dict[str, Any] | None = None

    def fail(self, exc: RemoteError) -> None:
        self.valid, self.reason = False, exc.reason

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.source, "type": self.type, "id": self.id, "signer": self.signer,
            "valid": self.valid, "reason": self.reason, "checks": list(self.checks)}
        if self.key is not None:
            out["key"] = dict(self.key)
        if self.problems:
            out["problems"] = list(self.problems)
        if self.link is not None:
            out["disclosure"] = dict(self.link)
        return out


#: The "label" of an object taken from a creator's ``rill.json`` (SPEC §12.1).
KEY_FILE = "rill.json"


def split_objects(data: bytes) -> list[tuple[str | None, bytes]]:
    """The objects in one file: binary CBOR (one object), armoured text (one or more), or
    a creator's well-known key file ``rill.json`` (its signed key document, whose JSON
    members must repeat it)."""
    if sitekeys.looks_like_key_file(data):
        members, raw = sitekeys.unwrap(data)
        try:
            doc = decode(raw, KeyDocument)
        except RemoteError:
            return [(KEY_FILE, raw)]  # the object's own verdict says what is wrong
        sitekeys.check_echo(members, doc)
        return [(KEY_FILE, raw)]
    if armour.looks_armoured(data):
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ArmourError("armoured text must be ASCII") from None
        return [(label, raw) for label, raw in armour.dearmour(text)]
    return [(None, data)]


#: The reason code of a verdict the verifier could not reach because it hit a bug on
#: this input (never a verdict on the object: report it).  Every other object of the
#: batch still gets its own verdict.
INTERNAL_ERROR = "internal-error"


def _internal(exc: Exception) -> str:
    return f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc} (a bug in the verifier; the " \
           "object may be valid or not)"


def verify_one(raw: bytes, label: str | None, source: str, now: int | None) -> Verdict:
    """One object's verdict.  Never raises: a bug on one input becomes that input's
    ``internal-error`` verdict (``rill verify`` is a trust boundary)."""
    try:
        return _verify_one(raw, label, source, now)
    except Exception as exc:
        return Verdict(source, None, hashlib.sha256(raw).hexdigest(), None, False,
                       _internal(exc))


def _verify_one(raw: bytes, label: str | None, source: str, now: int | None) -> Verdict:
    obj = None
    try:
        obj = decode(raw)
        if label == KEY_FILE:
            if obj.type != "key":
                raise DecodeError(f"a rill.json file holds a key document, not a {obj.type}")
        elif label is not None and label != armour.label_of(obj.type):
            raise ArmourError(f"armour label {label} but the object is a {obj.type}")
        if now is not None:
            checks.check_time(obj, now)
    except RemoteError as exc:
        if obj is not None:
            return Verdict(source, obj.type, obj.id_hex, obj.signer_did, False, exc.reason)
        return Verdict(source, peek_type(raw), hashlib.sha256(raw).hexdigest(), None, False,
                       exc.reason)
    v = Verdict(source, obj.type, obj.id_hex, obj.signer_did, True, None, obj)
    if isinstance(obj.body, KeyDocument):
        b = obj.body
        v.key = {"name": b.name, "origins": list(b.origins), "payto": list(b.payto),
                 "valid_from": b.valid_from}
    if isinstance(obj.body, Disclosure):
        d = obj.body
        v.link = {"identity": obj.signer_did, "pseudonym": keys.did_from_key(d.pseudonym),
                  "month": d.month, "to": None if d.to is None else keys.did_from_key(d.to)}
    return v


def cross_check(verdicts: Iterable[Verdict]) -> None:
    """Check valid objects of one batch against each other, in place (SPEC §7.6).

    A statement goes with the claims of the batch, when it holds any: each row's claim
    must be there and agree; with receipts in the batch, each receipted row's receipt
    too (SPEC §7.6).

    Pairing: a claim or sealed claim goes with the settlement whose ID is its
    ``settlement``; a receipt with the claim whose ID is its ``claim``, else with the
    first (input order) sealed claim whose ``claim`` is that ID; and with the key
    document of its signer in force at its ``time``: among that signer's documents,
    the one with the greatest ``valid_from`` <= ``time`` (the first in input order
    among equal ones).  A receipt whose signer has documents in the batch, none of
    them in force at its time, is refused (``mismatch``).
    """
    valid = [v for v in verdicts if v.valid and v.obj is not None]
    by_id = {v.obj.id: v.obj for v in valid if v.obj is not None}
    keydocs: dict[bytes, list[Signed[KeyDocument]]] = {}  # signer -> documents, input order
    covers: dict[bytes, Signed[SealedClaim]] = {}  # claim ID -> its first sealed cover
    claims: dict[bytes, Signed[Claim]] = {}
    receipts: dict[bytes, Signed[Receipt]] = {}
    #: (creator, month) -> the batch's claims, for statements (built when one needs it)
    claims_of: dict[tuple[bytes, str], list[Signed[Claim]]] = {}
    for v in valid:
        assert v.obj is not None
        if isinstance(v.obj.body, KeyDocument):
            keydocs.setdefault(v.obj.signer, []).append(v.obj)
        elif isinstance(v.obj.body, SealedClaim):
            covers.setdefault(v.obj.body.claim, v.obj)
        elif isinstance(v.obj.body, Claim):
            claims[v.obj.id] = v.obj
        elif isinstance(v.obj.body, Receipt):
            receipts[v.obj.id] = v.obj
    for v in valid:
        obj = v.obj
        assert obj is not None
        body = obj.body
        try:
            if isinstance(body, Claim | SealedClaim):
                settlement = by_id.get(body.settlement)
                if settlement is not None and isinstance(settlement.body, Settlement):
                    if isinstance(body, Claim):
                        checks.check_claim(obj, settlement)
                    else:
                        checks.check_sealed(obj, settlement)
                    v.checks.append("settlement")
            elif isinstance(body, Receipt):
                claim = by_id.get(body.claim)
                if claim is None or not isinstance(claim.body, Claim):
                    claim = covers.get(body.claim)
                if claim is not None:
                    checks.check_receipt(obj, claim)
                    v.checks.append("claim")
                docs = keydocs.get(obj.signer)
                if docs:
                    checks.check_receipt(obj, key_document=key_document_at(docs, body.time))
                    v.checks.append("key")
            elif isinstance(body, Statement) and claims:
                if not claims_of:
                    for c in claims.values():
                        claims_of.setdefault((c.body.creator, c.body.month), []).append(c)
                problems = statements.check_statement(
                    obj, claims, receipts if receipts else None,
                    claims_of.get((obj.signer, body.month), []))
                v.checks.append("claims")
                if receipts:
                    v.checks.append("receipts")
                v.problems = problems
                statements.raise_problems(problems)
        except RemoteError as exc:
            v.fail(exc)
        except Exception as exc:  # a bug on one pair: that object's verdict, not the run's
            v.valid, v.reason = False, _internal(exc)


def key_document_at(docs: Iterable[Signed[KeyDocument]], time: int) -> Signed[KeyDocument]:
    """The document in force at ``time``: the greatest ``valid_from`` <= ``time``, the
    first of equal ones; :class:`MismatchError` if every document is later."""
    best: Signed[KeyDocument] | None = None
    for d in docs:
        if d.body.valid_from <= time and (best is None
                                          or d.body.valid_from > best.body.valid_from):
            best = d
    if best is None:
        raise MismatchError("receipt predates every key document of its signer (valid_from)")
    return best


class Item(NamedTuple):
    """One object to verify: where it came from, its armour label, its bytes."""

    source: str
    label: str | None
    raw: bytes


def expand(files: Iterable[tuple[str, bytes]]) -> list[Item | Verdict]:
    """Split files into objects; a file that cannot be split becomes a failed verdict."""
    out: list[Item | Verdict] = []
    for name, data in files:
        try:
            parts = split_objects(data)
        except RemoteError as exc:
            out.append(Verdict(name, None, None, None, False, exc.reason))
            continue
        except Exception as exc:
            out.append(Verdict(name, None, None, None, False, _internal(exc)))
            continue
        for i, (label, raw) in enumerate(parts):
            out.append(Item(name if len(parts) == 1 else f"{name}#{i + 1}", label, raw))
    return out



def verify_part(name: str, data: bytes, now: int | None) -> list[tuple[Verdict, bytes]]:
    """Split and verify one file or one slice of an armoured file (whole blocks).

    Returns (verdict without its object, the object's bytes) pairs: cheap to send
    between processes; :func:`reattach` rebuilds the objects cross-checks need.
    """
    out: list[tuple[Verdict, bytes]] = []
    for x in expand([(name, data)]):
        if isinstance(x, Verdict):
            out.append((x, b""))
        else:
            v = verify_one(x.raw, x.label, x.source, now)
            v.obj = None
            out.append((v, x.raw))
    return out


def split_armoured(data: bytes, parts: int) -> list[bytes]:
    """Cut armoured text into about ``parts`` slices at block boundaries."""
    step = max(1, len(data) // parts)
    cuts = [0]
    while True:
        at = data.find(b"-----BEGIN RILL ", cuts[-1] + step)
        if at < 0:
            break
        cuts.append(at)
    cuts.append(len(data))
    return [data[a:b] for a, b in itertools.pairwise(cuts) if data[a:b].strip()]


def reattach(pairs: list[tuple[Verdict, bytes]]) -> None:
    """Re-create the objects of valid verdicts where a cross-check could use them.

    Only when the batch holds objects that refer to each other (claims and their
    settlements, receipts and claims or key documents).  The bytes were verified
    already, so they are decoded without checking signatures again.
    """
    types = {v.type for v, _ in pairs if v.valid}
    needed: set[str] = set()
    if types & {"claim", "sealed-claim"} and "settlement" in types:
        needed |= {"claim", "sealed-claim", "settlement"}
    if "receipt" in types and types & {"claim", "sealed-claim", "key"}:
        needed |= {"receipt", "claim", "sealed-claim", "key"}
    if "statement" in types and "claim" in types:
        needed |= {"statement", "claim", "receipt"}
    for v, raw in pairs:
        if v.valid and v.obj is None and v.type in needed:
            try:
                v.obj = decode(raw, verify_signature=False)
            except Exception as exc:
                v.valid, v.reason = False, _internal(exc)


def verify_files(files: Iterable[tuple[str, bytes]], now: int | None) -> list[Verdict]:
    """Verify every object in ``files`` ((name, data) pairs) and cross-check them."""
    out = [x if isinstance(x, Verdict) else verify_one(x.raw, x.label, x.source, now)
           for x in expand(files)]
    cross_check(out)
    return out
