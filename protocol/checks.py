"""Rules that relate two or more objects, and rules that need the time (SPEC.md §7).

Each check returns nothing and raises a
:class:`~rill.protocol.errors.RemoteError` subclass on failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import cbor2

from .counting import LogEntry
from .errors import MismatchError, RuleError
from .messages import (
    ZERO_HASH,
    Claim,
    ClickEntry,
    Equivocation,
    KeyDocument,
    Listing,
    Receipt,
    SealedClaim,
    Settlement,
    Signed,
    Statement,
)
from .months import month_end
from .shares import commit_things, thing_shares

#: Largest tolerated clock skew for times in the future, in seconds.
MAX_SKEW = 300


def check_claim(claim: Signed[Claim], settlement: Signed[Settlement]) -> None:
    """A creator's (or anyone's) check of a claim against its settlement."""
    c, s = claim.body, settlement.body
    if claim.signer != settlement.signer:
        raise MismatchError("claim and settlement are signed by different donors")
    if c.settlement != settlement.id:
        raise MismatchError("claim names another settlement")
    if (c.month, c.currency) != (s.month, s.currency):
        raise MismatchError("claim month or currency differs from the settlement")
    line = next((ln for ln in s.lines if ln.creator == c.creator), None)
    if line is None:
        raise MismatchError("the settlement has no line for the claim's creator")
    if line.amount != c.amount or line.things != len(c.things):
        raise MismatchError(
            f"claim says {c.amount} for {len(c.things)} things, the settlement line says "
            f"{line.amount} for {line.things}")
    if commit_things(c.salt, c.things) != line.commit:
        raise MismatchError("the claim's things do not match the settlement's commitment")


def check_sealed(sealed: Signed[SealedClaim], settlement: Signed[Settlement]) -> None:
    """What anyone can check of a sealed claim without opening it."""
    c, s = sealed.body, settlement.body
    if sealed.signer != settlement.signer or c.settlement != settlement.id:
        raise MismatchError("sealed claim does not belong to this settlement")
    if c.month != s.month or all(ln.creator != c.creator for ln in s.lines):
        raise MismatchError("the settlement has no line for the sealed claim's creator")


def claim_thing_shares(claim: Signed[Claim], settlement: Signed[Settlement]) -> list[int]:
    """Per-thing shares of a claim (same order as ``claim.body.things``)."""
    check_claim(claim, settlement)
    s = settlement.body
    before = 0
    for line in s.lines:
        if line.creator == claim.body.creator:
            break
        before += line.things
    return thing_shares(s.budget, s.things, before, len(claim.body.things))


def check_receipt(
    receipt: Signed[Receipt],
    claim: Signed[Claim] | Signed[SealedClaim] | None = None,
    key_document: Signed[KeyDocument] | None = None,
) -> None:
    """A third party's check of a receipt against the claim and the creator's key.

    ``claim`` may be the claim or its sealed cover (which carries the claim ID,
    donor and creator but not the amount).  ``key_document`` is the creator's
    document as fetched from its web site.
    """
    r = receipt.body
    if claim is not None:
        if isinstance(claim.body, Claim):
            cid, creator, month = claim.id, claim.body.creator, claim.body.month
            currency: Any = claim.body.currency
        else:
            cid, creator, month = claim.body.claim, claim.body.creator, claim.body.month
            currency = None
        if r.claim != cid:
            raise MismatchError("receipt is for another claim")
        if receipt.signer != creator:
            raise MismatchError("receipt is not signed by the claim's creator")
        if r.donor != claim.signer or r.month != month:
            raise MismatchError("receipt donor or month differs from the claim")
        if currency is not None and r.currency != currency:
            raise MismatchError("receipt currency differs from the claim")
    if key_document is not None:
        if receipt.signer != key_document.signer:
            raise MismatchError("receipt is not signed by the key in the creator's document")
        if r.time < key_document.body.valid_from:
            raise MismatchError("receipt predates the creator key's valid_from")


def check_chain(
    entries: Iterable[Signed[ClickEntry]],
    prev: bytes = ZERO_HASH,
    seq: int = 0,
    signer: bytes | None = None,
) -> tuple[bytes, int]:
    """Check a run of click-log entries continues a chain; return (head, next seq).

    The defaults check a log from its first entry.  The error message names
    the sequence number where the chain breaks.
    """
    for e in entries:
        b = e.body
        if signer is not None and e.signer != signer:
            raise RuleError(f"click log breaks at seq {b.seq}: signed by another key",
                            code="bad-chain")
        if b.seq != seq:
            raise RuleError(f"click log breaks at seq {seq}: found seq {b.seq}",
                            code="bad-chain")
        if b.prev != prev:
            raise RuleError(f"click log breaks at seq {b.seq}: prev is not the ID of seq "
                            f"{seq - 1}", code="bad-chain")
        signer, prev, seq = e.signer, e.id, seq + 1
    return prev, seq


def read_chain(
    raws: Iterable[bytes],
    signer: bytes,
    prev: bytes = ZERO_HASH,
    seq: int = 0,
) -> Iterator[LogEntry]:
    """Read a stored click log fast, checking its hash links; yield the entries.

    Each entry must be a ``click`` envelope by ``signer`` whose ``seq`` and ``prev``
    continue the chain.  Neither signatures nor bodies are checked here: verify the
    head with :func:`messages.decode` -- its signature covers ``prev``, the hash of the
    entry before, and so, link by link, every byte of every earlier entry, all of
    which the signer validated before signing.  For a log written by this wallet only.
    Raises :class:`RuleError` (``bad-chain``) naming the sequence number.
    """
    loads, sha256, make = cbor2.loads, hashlib.sha256, LogEntry._make
    for raw in raws:
        try:
            env = loads(raw)
            body = env["body"]
            ok = (env["t"] == "click" and env["signer"] == signer and body["seq"] == seq
                  and body["prev"] == prev)
            if ok:
                d = body["data"]
                prev = sha256(raw).digest()
                entry = make((prev, seq, body["time"], body["kind"], d.get("thing"),
                              d.get("creator"), d.get("months"), d.get("amount"),
                              d.get("currency")))
        except (cbor2.CBORError, KeyError, TypeError, ValueError, AttributeError):
            raise RuleError(f"click log breaks at seq {seq}: entry is not a valid click "
                            "envelope", code="bad-chain") from None
        if not ok:
            raise RuleError(f"click log breaks at seq {seq}: wrong signer, seq or prev link",
                            code="bad-chain")
        yield entry
        seq += 1


def check_time(obj: Signed[Any], now: int, skew: int = MAX_SKEW) -> None:
    """Rules that depend on the current time ``now`` (Unix seconds, UTC), SPEC §7.4."""
    body = obj.body
    if isinstance(body, Settlement | Claim | SealedClaim | Equivocation):
        # an equivocation proof is dated by its settlements' month
        if month_end(body.month) > now + skew:
            what = "equivocation proof of settlements" if isinstance(body, Equivocation) \
                else body.TYPE
            raise RuleError(f"{what} for {body.month}, which has not ended yet",
                            code="future")
    elif isinstance(body, Receipt):
        if body.time > now + skew:
            raise RuleError("receipt time is in the future", code="future")
        if body.time < month_end(body.month) - skew:
            raise RuleError("receipt time is before its month ended", code="bad-time")
    elif isinstance(body, Statement):
        if month_end(body.month) > now + skew:
            raise RuleError(f"statement for {body.month}, which has not ended yet",
                            code="future")
        if body.time > now + skew:
            raise RuleError("statement time is in the future", code="future")
        if body.time < month_end(body.month) - skew:
            raise RuleError("statement time is before its month ended", code="bad-time")
    elif isinstance(body, ClickEntry | KeyDocument | Listing):
        t = body.valid_from if isinstance(body, KeyDocument) else body.time
        if t > now + skew:
            raise RuleError(f"{body.TYPE} time is in the future", code="future")
