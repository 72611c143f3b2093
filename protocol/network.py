"""Wire formats of the network layer (SPEC.md §11): gossip topics and the sync protocol.

Pure: the node (rill.node) does the I/O.  Gossip messages are bare object
envelopes (SPEC §4).  Sync requests and responses are canonical CBOR maps inside
length-prefixed frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import cbor, keys
from . import messages as m
from .checks import check_time
from .errors import DecodeError, RemoteError, RuleError, SchemaError, TooLarge
from .months import month_index, month_of, months_back
from .work import NETWORK_WORK_BITS
from .work import work_bits as stamp_bits

#: Gossip topics and the object types each carries.
TOPICS: dict[str, frozenset[str]] = {
    "rill/1/settlements": frozenset({"settlement", "sealed-claim"}),
    "rill/1/receipts": frozenset({"receipt"}),
    "rill/1/keys": frozenset({"key"}),
    "rill/1/equivocations": frozenset({"equivocation"}),
    "rill/1/catalogue": frozenset({"listing"}),
}
TOPIC_OF: dict[str, str] = {t: topic for topic, types in TOPICS.items() for t in types}
#: Largest gossip message per topic (the largest cap of its types).
TOPIC_MAX: dict[str, int] = {
    topic: max(m.BODY_TYPES[t].MAX_SIZE for t in types) for topic, types in TOPICS.items()
}
#: The topic of equivocation proofs, the same whatever the shard count (SPEC §11.6).
EQUIVOCATION_TOPIC = "rill/1/equivocations"
#: What a shard topic ``rill/1/b{b}/s{i}`` carries (SPEC §11.6): every gossiped type but
#: equivocation proofs, which stay on EQUIVOCATION_TOPIC.
SHARD_TYPES: frozenset[str] = frozenset({"settlement", "sealed-claim", "receipt", "key"})
SHARD_MAX = max(m.BODY_TYPES[t].MAX_SIZE for t in SHARD_TYPES)
#: Most shard bits a network may use (65,536 shards).
MAX_SHARD_BITS = 16
_SHARD_TOPIC = re.compile(r"rill/1/b(0|[1-9][0-9]?)/s(0|[1-9][0-9]{0,4})")


def parse_shard_topic(topic: str) -> tuple[int, int] | None:
    """``(bits, index)`` of a shard topic ``rill/1/b{bits}/s{index}`` (decimal, no leading
    zeros, 1 <= bits <= MAX_SHARD_BITS, index < 2**bits), else None."""
    hit = _SHARD_TOPIC.fullmatch(topic)
    if hit is None:
        return None
    bits, index = int(hit[1]), int(hit[2])
    if not 1 <= bits <= MAX_SHARD_BITS or index >= 1 << bits:
        return None
    return bits, index


def topic_types(topic: str) -> frozenset[str] | None:
    """The object types a topic carries (one of TOPICS or a shard topic), else None."""
    types = TOPICS.get(topic)
    if types is None and parse_shard_topic(topic) is not None:
        return SHARD_TYPES
    return types


def topic_max(topic: str) -> int:
    """The largest ``data`` a known topic carries."""
    return int(TOPIC_MAX.get(topic, SHARD_MAX))

SYNC_PROTOCOL = "/rill/sync/1.0.0"
FRAME_HEADER = 4
MAX_REQUEST = 1024
MAX_RESPONSE = 4 * 1024 * 1024
MAX_SYNC_OBJECTS = 1000
#: How many months back (besides the current one) objects are accepted and kept.
DEFAULT_WINDOW_MONTHS = 3


def settlement_work_bits(obj: m.Signed[Any]) -> int:
    """Work bits of a settlement, or of an equivocation proof: the greater of its two
    settlements' (the stamp is bound to the donor and the month, so one stamp proves the
    donor's work; an equivocator cannot hide a proof by leaving ``work`` out of one of
    its settlements).  Other objects carry no work: 0."""
    body = obj.body
    if isinstance(body, m.Settlement):
        return stamp_bits(obj.signer, body.month, body.work)
    if isinstance(body, m.Equivocation):
        return max(stamp_bits(s.signer, s.body.month, s.body.work) for s in body.settlements)
    return 0


def outside_window(month: str, now: int,
                   window_months: int = DEFAULT_WINDOW_MONTHS) -> str | None:
    """The oldest month of the acceptance window at ``now`` when ``month`` is older than
    it (every node refuses that month's objects as ``outside-window``: they cannot be
    gossiped or synced), else None."""
    if month_index(month) < month_index(month_of(now)) - window_months:
        return months_back(month_of(now), window_months)
    return None


def check_gossip(topic: str, raw: bytes, now: int,
                 window_months: int = DEFAULT_WINDOW_MONTHS,
                 work_bits: int = NETWORK_WORK_BITS, *,
                 verify_signature: bool = True) -> m.Signed[Any]:
    """Everything a gossip validator checks; raise :class:`RemoteError` to reject.

    The verdict depends on the bytes and the time only, never on who forwarded them.
    Settlements and equivocation proofs need ``work_bits`` bits of work
    (``insufficient-work``, SPEC §11.2).
    ``verify_signature=False``: every check but the signatures (steps 7-8 of SPEC §4.4),
    the node's cheap first pass; the object returned is then not authenticated.
    """
    types = topic_types(topic)
    if types is None:
        raise SchemaError(f"unknown topic {topic[:80]!r}", code="wrong-topic")
    if len(raw) > topic_max(topic):
        raise TooLarge(f"{len(raw)} bytes is more than {topic} carries ({topic_max(topic)})")
    # any CBOR failure is a rejection: skip the reason scan
    obj = m.decode(raw, verify_signature=verify_signature, exact=False)
    if obj.type not in types:
        raise SchemaError(f"a {obj.type} does not belong on {topic}", code="wrong-topic")
    check_time(obj, now)
    month = getattr(obj.body, "month", None)
    if isinstance(obj.body, m.Equivocation):
        month = obj.body.month
    current = month_index(month_of(now))
    if month is not None and month_index(month) < current - window_months:
        oldest = months_back(month_of(now), window_months)
        raise RuleError(f"{obj.type} for {month} is older than the window (from {oldest})",
                        code="outside-window")
    if isinstance(obj.body, m.Settlement | m.Equivocation):
        bits = settlement_work_bits(obj)
        if bits < work_bits:
            raise RuleError(f"{obj.type} for {month}: {bits} bits of work, the network asks "
                            f"for {work_bits}", code="insufficient-work")
    return obj


# -- sync ------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(FRAME_HEADER, "big") + payload


def frame_length(header: bytes, limit: int) -> int:
    if len(header) != FRAME_HEADER:
        raise DecodeError("truncated frame header", code="malformed")
    n = int.from_bytes(header, "big")
    if n > limit:
        raise TooLarge(f"frame of {n} bytes exceeds {limit}")
    return n


@dataclass(frozen=True)
class SyncRequest:
    """``{"v": 1, "subject": key, "after": cursor, "limit": n}``, and ``"ids": 1`` when
    the client asks for the objects' IDs instead of the objects (SPEC §11.3)."""

    subject: bytes
    after: int
    limit: int
    ids: bool = False

    def encode(self) -> bytes:
        v: dict[str, object] = {"v": 1, "subject": self.subject, "after": self.after,
                                "limit": self.limit}
        if self.ids:
            v["ids"] = 1
        return cbor.encode(v)

    @classmethod
    def decode(cls, raw: bytes) -> SyncRequest:
        if len(raw) > MAX_REQUEST:
            raise TooLarge("sync request too large")
        v = cbor.decode(raw)
        if not isinstance(v, dict) or set(v) - {"ids"} != {"v", "subject", "after", "limit"}:
            raise SchemaError("sync request: expected exactly v, subject, after, limit "
                              "(and ids)")
        if v["v"] != 1:
            raise SchemaError("sync request: unsupported version", code="unsupported-version")
        subject = v["subject"]
        if type(subject) is not bytes:
            raise SchemaError("sync request: subject must be a 32-byte key")
        keys.admit_key(subject)
        after, limit = v["after"], v["limit"]
        if type(after) is not int or not 0 <= after < 2**63:
            raise SchemaError("sync request: bad cursor")
        if type(limit) is not int or not 1 <= limit <= MAX_SYNC_OBJECTS:
            raise SchemaError(f"sync request: limit must be 1..{MAX_SYNC_OBJECTS}")
        if "ids" in v and (type(v["ids"]) is not int or v["ids"] != 1):
            raise SchemaError("sync request: ids, when present, is 1")
        return cls(subject, after, limit, "ids" in v)


@dataclass(frozen=True)
class SyncResponse:
    """``{"v": 1, "objects": [bytes...], "next": cursor, "more": 0|1}``; the answer to a
    request with ``ids`` has ``"ids": [32-byte IDs...]`` in place of ``objects`` (held
    here in :attr:`objects`, with :attr:`ids` true)."""

    objects: tuple[bytes, ...]
    next: int
    more: bool
    ids: bool = False

    def encode(self) -> bytes:
        return cbor.encode({"v": 1, "ids" if self.ids else "objects": list(self.objects),
                            "next": self.next, "more": int(self.more)})

    @classmethod
    def decode(cls, raw: bytes) -> SyncResponse:
        if len(raw) > MAX_RESPONSE + 1024 * 1024:
            raise TooLarge("sync response too large")
        v = cbor.decode(raw, exact=False)  # up to 5 MiB: no reason scan
        if not isinstance(v, dict) or set(v) not in ({"v", "objects", "next", "more"},
                                                     {"v", "ids", "next", "more"}):
            raise SchemaError("sync response: expected exactly v, objects (or ids), next, "
                              "more")
        ids = "ids" in v
        objs, nxt, more = v["ids" if ids else "objects"], v["next"], v["more"]
        if v["v"] != 1 or type(objs) is not list or type(nxt) is not int or more not in (0, 1):
            raise SchemaError("sync response: malformed")
        if not 0 <= nxt < 2**63:
            raise SchemaError("sync response: bad cursor")
        if len(objs) > MAX_SYNC_OBJECTS or any(type(o) is not bytes for o in objs):
            raise SchemaError("sync response: objects must be at most 1000 byte strings")
        if ids and any(len(o) != 32 for o in objs):
            raise SchemaError("sync response: ids must be 32 bytes each")
        return cls(tuple(objs), nxt, bool(more), ids)


__all__ = ["EQUIVOCATION_TOPIC", "MAX_SHARD_BITS", "SHARD_TYPES", "TOPICS", "TOPIC_OF",
           "RemoteError", "SyncRequest", "SyncResponse", "check_gossip", "frame",
           "frame_length", "months_back", "parse_shard_topic", "settlement_work_bits",
           "topic_max", "topic_types"]
