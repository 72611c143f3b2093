"""A gossip message's header, read without the expensive checks (SPEC §11.2, step 2).

A node decides most gossip messages on a few fields: the type, the signer, the month,
the settlement a claim names, the donor of a receipt, a settlement's work.  Reading
those costs one C-level CBOR parse and a handful of field checks; validating every
field (a claim's 10,000 things, each normalised), the canonical encoding and the
signatures costs far more.  So the gate previews a message first, decides what it can
on the preview (time, window, work, relations with what the node holds), and runs the
full checks (:func:`rill.protocol.network.check_gossip`) only on what could be accepted.

A preview is not a verdict: everything it reads is read again by the full check, and
nothing in it is authenticated.  It refuses (:class:`RemoteError`) only what the full
check would refuse too.  Pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2

from .bodies import Settlement
from .cbor import MAX_DEPTH
from .checks import MAX_SKEW
from .errors import DecodeError, RemoteError, RuleError, SchemaError, TooLarge
from .fields import MAX_TIME, check_key_field
from .months import check_month, month_end, month_index, month_of, months_back
from .network import topic_max, topic_types
from .work import work_bits as stamp_bits


@dataclass(frozen=True)
class Preview:
    """What the gate needs of a message.  ``subjects``: the keys it concerns (its signer,
    a claim's creator, a settlement's line creators, a receipt's or a proof's donor)."""

    id: bytes
    type: str
    signer: bytes
    month: str | None = None
    settlement: bytes | None = None
    creator: bytes | None = None
    donor: bytes | None = None
    time: int | None = None
    work_bits: int = 0
    subjects: frozenset[bytes] = frozenset()
    #: a listing's thing (unchecked text: the full check normalises it)
    thing: str | None = None


def _loads(raw: bytes) -> Any:
    try:
        return cbor2.loads(raw, max_depth=MAX_DEPTH, allow_indefinite=False,
                           allow_duplicate_keys=False, tag_hook=_no_tags)
    except Exception:  # cbor2's errors and the built-in ones of its semantic decoders
        raise DecodeError("not canonical Rill CBOR", code="malformed") from None


def _no_tags(decoder: Any, tag: Any) -> Any:
    raise DecodeError("a tag", code="tag")


def _envelope(raw: bytes, types: frozenset[str]) -> tuple[str, bytes, dict[str, Any]]:
    env = _loads(raw)
    if type(env) is not dict:
        raise SchemaError("envelope: expected a map")
    if env.get("v") != 1 or type(env.get("v")) is not int:
        raise SchemaError("envelope.v: not 1", code="unsupported-version")
    t = env.get("t")
    if type(t) is not str or t not in types:
        raise SchemaError(f"a {str(t)[:40]!r} does not belong here", code="wrong-topic")
    signer = check_key_field(env.get("signer"), "envelope.signer")
    body = env.get("body")
    if type(body) is not dict:
        raise SchemaError("envelope.body: expected a map")
    return t, signer, body


def _month(body: dict[str, Any], where: str) -> str:
    return check_month(body.get("month"), f"{where}.month")


def _hash(body: dict[str, Any], name: str, where: str) -> bytes:
    v = body.get(name)
    if type(v) is not bytes or len(v) != 32:
        raise SchemaError(f"{where}.{name}: expected 32 bytes")
    return v


def _uint(body: dict[str, Any], name: str, where: str, hi: int = MAX_TIME) -> int:
    v = body.get(name)
    if type(v) is not int or not 0 <= v <= hi:
        raise SchemaError(f"{where}.{name}: expected an unsigned integer 0..{hi}")
    return v


def _settlement(signer: bytes, body: dict[str, Any]) -> tuple[str, int, frozenset[bytes]]:
    month = _month(body, "settlement")
    work = body.get("work")
    if work is not None and (type(work) is not int or not 0 <= work <= 2**64 - 1):
        raise SchemaError("settlement.work: expected an unsigned integer")
    lines = body.get("lines")
    if type(lines) is not list or len(lines) > Settlement.MAX_LINES:
        raise SchemaError("settlement.lines: expected an array of at most 2000 lines")
    creators = frozenset(line["creator"] for line in lines
                         if type(line) is dict and type(line.get("creator")) is bytes)
    return month, stamp_bits(signer, month, work), creators


#: The types :func:`preview_object` reads: the gossiped ones and plain claims.
PREVIEW_TYPES = frozenset({"settlement", "claim", "sealed-claim", "receipt", "key",
                           "equivocation"})


def preview(topic: str, raw: bytes) -> Preview:
    """The header of one gossip message; :class:`RemoteError` for what cannot be a valid
    object of the topic."""
    types = topic_types(topic)
    if types is None:
        raise SchemaError(f"unknown topic {topic[:80]!r}", code="wrong-topic")
    if len(raw) > topic_max(topic):
        raise TooLarge(f"{len(raw)} bytes is more than {topic} carries")
    return _preview(raw, types)


def preview_object(raw: bytes) -> Preview:
    """The header of an object of any type in PREVIEW_TYPES, on no topic (a stored
    object, for its shard placement: SPEC §11.6)."""
    return _preview(raw, PREVIEW_TYPES)


def _preview(raw: bytes, types: frozenset[str]) -> Preview:
    t, signer, body = _envelope(raw, types)
    oid = hashlib.sha256(raw).digest()
    subjects = {signer}
    if t == "settlement":
        month, bits, creators = _settlement(signer, body)
        return Preview(oid, t, signer, month, work_bits=bits,
                       subjects=frozenset(subjects | creators))
    if t in ("claim", "sealed-claim"):
        month = _month(body, t)
        creator = check_key_field(body.get("creator"), f"{t}.creator")
        return Preview(oid, t, signer, month, settlement=_hash(body, "settlement", t),
                       creator=creator, subjects=frozenset({signer, creator}))
    if t == "receipt":
        donor = check_key_field(body.get("donor"), "receipt.donor")
        return Preview(oid, t, signer, _month(body, "receipt"), donor=donor,
                       time=_uint(body, "time", "receipt"),
                       subjects=frozenset({signer, donor}))
    if t == "key":
        return Preview(oid, t, signer, time=_uint(body, "valid_from", "key"),
                       subjects=frozenset(subjects))
    if t == "listing":
        time = _uint(body, "time", "listing")
        thing = body.get("thing")
        if type(thing) is not str:
            raise SchemaError("listing.thing: expected text", code="bad-thing")
        return Preview(oid, t, signer, month_of(time), time=time,
                       subjects=frozenset(subjects), thing=thing)
    # an equivocation proof: two settlements of one donor and month, as byte strings
    inner = []
    for name in ("a", "b"):
        v = body.get(name)
        if type(v) is not bytes or len(v) > Settlement.MAX_SIZE:
            raise SchemaError(f"equivocation.{name}: expected an encoded settlement")
        try:
            _, isigner, ibody = _envelope(v, frozenset({"settlement"}))
            inner.append((isigner, *_settlement(isigner, ibody)))
        except RemoteError as exc:
            raise RuleError(f"equivocation.{name}: {exc.reason}",
                            code="bad-equivocation") from None
    (da, ma, ba, _), (db, mb, bb, _) = inner
    if da != db or ma != mb:
        raise RuleError("equivocation: the settlements differ in donor or month",
                        code="bad-equivocation")
    return Preview(oid, t, signer, ma, donor=da, work_bits=max(ba, bb),
                   subjects=frozenset({signer, da}))


def check_preview(p: Preview, now: int, window_months: int, work_bits: int,
                  skew: int = MAX_SKEW) -> None:
    """The time, window and work rules (§7.4, §11.2) on a preview; the same codes as
    :func:`rill.protocol.network.check_gossip`."""
    if p.type in ("settlement", "claim", "sealed-claim", "equivocation"):
        assert p.month is not None
        if month_end(p.month) > now + skew:
            raise RuleError(f"{p.type} for {p.month}, which has not ended yet", code="future")
    elif p.type == "receipt":
        assert p.time is not None and p.month is not None
        if p.time > now + skew:
            raise RuleError("receipt time is in the future", code="future")
        if p.time < month_end(p.month) - skew:
            raise RuleError("receipt time is before its month ended", code="bad-time")
    elif p.time is not None and p.time > now + skew:
        raise RuleError(f"{p.type} time is in the future", code="future")
    if p.month is not None and \
            month_index(p.month) < month_index(month_of(now)) - window_months:
        oldest = months_back(month_of(now), window_months)
        raise RuleError(f"{p.type} for {p.month} is older than the window (from {oldest})",
                        code="outside-window")
    if p.type in ("settlement", "equivocation") and p.work_bits < work_bits:
        raise RuleError(f"{p.type} for {p.month}: {p.work_bits} bits of work, the network "
                        f"asks for {work_bits}", code="insufficient-work")


__all__ = ["PREVIEW_TYPES", "Preview", "check_preview", "preview", "preview_object"]
