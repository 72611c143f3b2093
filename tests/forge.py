"""Forging Rill objects for attacks: validly signed, but never checked on our side.

Uses ``rill.protocol`` only to encode, hash, share and seal; a month out of range or
with fullwidth digits goes out exactly as asked.  Settlements carry proof of work
(``work``) once the protocol knows that field (SPEC §5.3, design C).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.signing

from rill.protocol import cbor, seal
from rill.protocol import messages as m
from rill.protocol.shares import commit_things, line_amounts

log = logging.getLogger("rill.tests.forge")

#: The test networks run with ``[network] work_bits = 8`` (SPEC §11, design C).
TEST_WORK_BITS = 8


def rill_key(seed: bytes | None = None) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(seed or os.urandom(32))


def public(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


def sign_raw(key: nacl.signing.SigningKey, type_: str, body: dict[str, Any]) -> bytes:
    """A validly signed envelope around ``body``, whatever the body holds (months out of
    range, fullwidth digits...): no schema check on our side."""
    sig = key.sign(m.signing_input(type_, cbor.encode(body))).signature
    return cbor.encode({"v": 1, "t": type_, "body": body, "signer": public(key), "sig": sig})


def object_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


#: Settlements carry proof of work once the network asks for it (design C); before
#: that, an unknown ``work`` field would make every settlement invalid.
WORK_SUPPORTED = "work" in {f.name for f in dataclasses.fields(m.Settlement)}


def work_bits(signer: bytes, month: str, nonce: int) -> int:
    h = hashlib.sha256(b"rill/1/work\n" + signer + month.encode()
                       + nonce.to_bytes(8, "big")).digest()
    n = int.from_bytes(h, "big")
    return 256 - n.bit_length()


_WORK: dict[tuple[bytes, str, int], int] = {}


def _protocol_find_work() -> Callable[[bytes, str, int], int] | None:
    """The protocol's own ``find_work`` once it has one (so both agree on the hash)."""
    import importlib

    for name in ("rill.protocol.settle", "rill.protocol.work"):
        try:
            fn = getattr(importlib.import_module(name), "find_work", None)
        except ImportError:
            continue
        if fn is not None:
            return fn  # type: ignore[no-any-return]
    return None


def find_work(signer: bytes, month: str, bits: int) -> int:
    """The smallest nonce giving ``bits`` leading zero bits (SPEC §5.3, design C)."""
    k = (signer, month, bits)
    if k not in _WORK and (theirs := _protocol_find_work()) is not None:
        try:
            _WORK[k] = int(theirs(signer, month, bits))
        except Exception as exc:  # e.g. it refuses a month we forge on purpose
            log.debug("protocol find_work refused %r: %s", month, exc)
    if k not in _WORK:
        nonce = 0
        while work_bits(signer, month, nonce) < bits:
            nonce += 1
        _WORK[k] = nonce
    return _WORK[k]


@dataclass(frozen=True)
class Forged:
    """A settlement and, for chosen creators, its claims and sealed claims."""

    settlement: bytes
    claims: dict[bytes, bytes]
    sealed: dict[bytes, bytes]
    donor: bytes

    @property
    def id(self) -> bytes:
        return object_id(self.settlement)

    def all(self) -> list[bytes]:
        """Settlement first, then its sealed claims (the order gossip wants)."""
        return [self.settlement, *self.sealed.values()]


def forge_settlement(donor: nacl.signing.SigningKey, month: str, creators: Sequence[bytes],
                     *, filler: int = 0, budget: int = 1000, currency: str = "EUR",
                     work: int | None = TEST_WORK_BITS, variant: str = "") -> Forged:
    """A valid settlement (equal-share amounts, real commitments) with a line for each
    of ``creators`` (claims and sealed claims made for them) and ``filler`` more lines
    for random creators (to make it big).  ``variant`` changes the things, so one donor
    can sign two different settlements for one month (equivocation).  ``work``: the
    proof-of-work bits to include when the protocol knows the field."""
    groups: dict[bytes, list[str]] = {}
    for c in creators:
        groups[c] = [f"https://c{c.hex()[:12]}.example/{variant}post"]
    for _ in range(filler):
        c = public(rill_key())
        groups[c] = [f"https://f{c.hex()[:12]}.example/{variant}"]
    order = sorted(groups)
    counts = [len(groups[c]) for c in order]
    amounts = line_amounts(budget, counts)
    salts = {c: os.urandom(32) for c in order}
    lines = [{"creator": c, "amount": a, "things": k, "commit": commit_things(salts[c],
                                                                              groups[c])}
             for c, a, k in zip(order, amounts, counts, strict=True)]
    body: dict[str, Any] = {"month": month, "currency": currency, "budget": budget,
                            "things": sum(counts), "head": bytes(32), "lines": lines}
    if WORK_SUPPORTED and work:
        body["work"] = find_work(public(donor), month, work)
    raw = sign_raw(donor, "settlement", body)
    sid = object_id(raw)
    claims, sealed = {}, {}
    for c, a in zip(order, amounts, strict=True):
        if c not in creators:
            continue
        claims[c] = sign_raw(donor, "claim", {
            "settlement": sid, "month": month, "creator": c, "currency": currency,
            "amount": a, "things": sorted(groups[c]), "salt": salts[c]})
        box = seal.seal(claims[c], c, os.urandom(32))
        sealed[c] = sign_raw(donor, "sealed-claim", {
            "settlement": sid, "month": month, "creator": c, "claim": object_id(claims[c]),
            "box": box})
    return Forged(raw, claims, sealed, public(donor))


def forge_empty_settlements(donor: nacl.signing.SigningKey, month: str, n: int,
                            *, work: int | None = TEST_WORK_BITS) -> list[bytes]:
    """``n`` distinct valid settlements with no lines (n = 0 things), cheap to sign:
    payloads that pass every check but the one under test."""
    base: dict[str, Any] = {"month": month, "currency": "EUR", "things": 0,
                            "head": bytes(32), "lines": []}
    if WORK_SUPPORTED and work:
        base["work"] = find_work(public(donor), month, work)
    return [sign_raw(donor, "settlement", {**base, "budget": i}) for i in range(n)]


def forge_receipt(creator: nacl.signing.SigningKey, claim_raw: bytes, donor: bytes,
                  month: str, amount: int, at: int, reference: str = "ref",
                  currency: str = "EUR") -> bytes:
    return sign_raw(creator, "receipt", {
        "claim": object_id(claim_raw), "donor": donor, "month": month,
        "currency": currency, "amount": amount, "reference": reference, "time": at})


__all__ = ["TEST_WORK_BITS", "Forged", "find_work", "forge_empty_settlements", "forge_receipt",
           "forge_settlement", "object_id", "public", "rill_key", "sign_raw"]
