"""Building a month's settlement, its claims and their sealed forms (SPEC.md §6).

Pure and deterministic: the same signing key and the same inputs give the
same bytes, so a donor re-settling a month can never sign two different
settlements by accident.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import nacl.signing

from . import keys, seal
from .errors import LocalError, MismatchError, RemoteError
from .messages import (
    ZERO_HASH,
    Claim,
    SealedClaim,
    Settlement,
    SettlementLine,
    Signed,
    decode,
    sign,
)
from .shares import commit_things, derive_salt, group_things, line_amounts
from .work import NETWORK_WORK_BITS, find_work

SECRET_DOMAIN = b"rill/1/settlement-secret"
EPHEMERAL_DOMAIN = b"rill/1/seal\n"
HEAD_DOMAIN = b"rill/1/head\n"


def settlement_secret(signing_key: nacl.signing.SigningKey) -> bytes:
    """A donor-private secret derived from its key seed (never published)."""
    return hmac.new(bytes(signing_key), SECRET_DOMAIN, hashlib.sha256).digest()


def blind_head(signing_key: nacl.signing.SigningKey, head: bytes) -> bytes:
    """The ``head`` of a settlement signed by a pseudonym (SPEC §2.4): the click-log
    entry's ID (an object of the identity) hidden under the pseudonym's secret."""
    if head == ZERO_HASH:
        return head
    return hmac.new(settlement_secret(signing_key), HEAD_DOMAIN + head,
                    hashlib.sha256).digest()


@dataclass(frozen=True)
class SettlementResult:
    settlement: Signed[Settlement]
    claims: tuple[Signed[Claim], ...]
    sealed: tuple[Signed[SealedClaim], ...]


def settle(
    signing_key: nacl.signing.SigningKey,
    month: str,
    budget: int,
    currency: str,
    head: bytes,
    things: Mapping[str, bytes],
    work_bits: int = NETWORK_WORK_BITS,
    disclosures: Mapping[bytes, bytes] | None = None,
) -> SettlementResult:
    """Split ``budget`` equally over ``things`` (thing URI -> creator key).

    ``things`` holds only things whose creator is known: pending things are
    left out by the caller (SPEC §6: no custody).  The settlement carries the
    smallest proof-of-work nonce reaching ``work_bits`` (SPEC §5.3; about
    2**work_bits hashes, cached per key and month); ``work_bits=0`` leaves ``work``
    out.  ``disclosures`` (creator key -> encoded disclosure, SPEC §5.10) go into those
    creators' claims: a donor settling under a pseudonym reveals itself to them alone.
    """
    secret = settlement_secret(signing_key)
    groups = group_things(things)
    amounts = line_amounts(budget, [len(ts) for _, ts in groups])
    salts = [derive_salt(secret, month, creator) for creator, _ in groups]
    lines = tuple(
        SettlementLine(creator, amount, len(ts), commit_things(salt, ts))
        for (creator, ts), amount, salt in zip(groups, amounts, salts, strict=True)
    )
    work = find_work(keys.public_key(signing_key), month, work_bits) if work_bits else None
    settlement = sign(Settlement(month, currency, budget, len(things), head, lines, work),
                      signing_key)
    claims = tuple(
        sign(Claim(settlement.id, month, creator, currency, amount, tuple(ts), salt,
                   (disclosures or {}).get(creator)), signing_key)
        for (creator, ts), amount, salt in zip(groups, amounts, salts, strict=True)
    )
    sealed = tuple(seal_claim(c, signing_key) for c in claims)
    return SettlementResult(settlement, claims, sealed)


def seal_claim(claim: Signed[Claim], signing_key: nacl.signing.SigningKey) -> Signed[SealedClaim]:
    """Seal ``claim`` to its creator, with an ephemeral key derived from the claim ID."""
    if claim.signer != keys.public_key(signing_key):
        raise LocalError("only the claim's donor can seal it")
    ephemeral = hmac.new(settlement_secret(signing_key), EPHEMERAL_DOMAIN + claim.id,
                         hashlib.sha256).digest()
    c = claim.body
    box = seal.seal(claim.raw, c.creator, ephemeral)
    return sign(SealedClaim(c.settlement, c.month, c.creator, claim.id, box), signing_key)


def open_claim(sealed: Signed[SealedClaim], creator_key: nacl.signing.SigningKey) -> Signed[Claim]:
    """Decrypt a sealed claim addressed to ``creator_key`` and check it matches its cover."""
    s = sealed.body
    if s.creator != keys.public_key(creator_key):
        raise LocalError("this sealed claim is addressed to another creator", code="not-mine")
    inner = seal.unseal(s.box, creator_key)
    try:
        claim = decode(inner, Claim)
    except RemoteError as exc:
        raise type(exc)(f"sealed claim content: {exc}", code=exc.code) from None
    c = claim.body
    if claim.id != s.claim:
        raise MismatchError("sealed claim: content ID differs from the cover's 'claim'")
    if claim.signer != sealed.signer:
        raise MismatchError("sealed claim: content signed by another key than the cover")
    if (c.settlement, c.month, c.creator) != (s.settlement, s.month, s.creator):
        raise MismatchError("sealed claim: settlement, month or creator differ from the cover")
    return claim
