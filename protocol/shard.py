"""Shards (SPEC.md §11.6): which gossip topics carry an object, which shards a node joins,
and the DHT key under which a shard's members announce themselves.

A network of ``b`` shard bits has S = 2**b shards.  A key's *shard point* is
SHA-256("rill/1/shard" || key); its shard at ``b`` bits is the first ``b`` bits of the point
(big-endian), so shard ``i`` at ``b`` bits is exactly shards ``2i`` and ``2i + 1`` at
``b + 1``: a network grows by splitting shards, never by moving an object to an unrelated
shard.  ``b = 0`` is one shard, carried by the four topics of §11.2 (no shard topics).

Objects are placed by *placement keys*: a sealed claim (and a plain claim) by its creator,
a receipt by its signer (the creator) and its donor, a settlement by its donor and every
creator its lines name, a key document by its signer, an equivocation proof by its donor
(for reconciliation only: proofs travel on the global ``rill/1/equivocations`` topic).

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import SchemaError
from .months import is_month, month_start
from .network import EQUIVOCATION_TOPIC, MAX_SHARD_BITS, TOPIC_OF, TOPICS
from .preview import Preview, preview_object

#: Their own global topics whatever the shard bits (small, rare, or bounded per creator).
CATALOGUE_TOPIC = "rill/1/catalogue"
GLOBAL_TYPES = frozenset({"equivocation", "listing"})

SHARD_TAG = b"rill/1/shard"
BACKBONE_TAG = b"rill/1/backbone"
PROVIDERS_TAG = b"rill/1/shard-providers/"
#: Long-lived backbone shards a node joins besides its own (SPEC §11.6), as the Ethereum
#: consensus layer's 2 attestation subnets per node.
BACKBONE_SHARDS = 2
#: How often a member announces itself again under its shards' provider keys, and a
#: rendezvous provider under the rendezvous key (seconds); the DHT keeps a provider record
#: 48 h.  Each announcement is a DHT lookup and up to 20 ADD_PROVIDERs: ~250 KB and ~1
#: CPU-s per key in the scale simulation at N = 50 (docs/SCALE.md).
PROVIDE_EVERY = 24 * 3600
#: Shard bits fewer than the network's at which a node's shard point must be all zero
#: for it to announce itself under the rendezvous key (SPEC §11.1): about 4 · 2^-b of
#: the nodes, 64-128 of them at SPEC §11.6's b whatever the network's size.
RENDEZVOUS_SPARE_BITS = 2
#: A member announces itself under a backbone shard's provider key only while a lookup
#: of that key's providers found fewer than this many whose own shard it is (SPEC §11.6):
#: at §11.6's bits a shard has 16-32 own members, enough for publishers to find live
#: ones, so the backbone members (twice as many) need not announce as well.
OWN_PROVIDERS_ENOUGH = 8
#: A count of at least OWN_PROVIDERS_ENOUGH is trusted this long (seconds); then the key
#: is looked up again.  A smaller count is looked up again at the next round of provides.
OWN_PROVIDERS_FRESH = 7 * 24 * 3600


def check_bits(bits: int) -> int:
    if type(bits) is not int or not 0 <= bits <= MAX_SHARD_BITS:
        raise SchemaError(f"shard bits must be an integer 0..{MAX_SHARD_BITS}, not {bits!r}")
    return bits


def point(key: bytes) -> bytes:
    """A key's shard point: SHA-256("rill/1/shard" || key)."""
    return hashlib.sha256(SHARD_TAG + key).digest()


def prefix(digest: bytes, bits: int) -> int:
    """The first ``bits`` bits of ``digest`` as an unsigned integer (0 for 0 bits)."""
    return int.from_bytes(digest[:4], "big") >> (32 - check_bits(bits))


def shard_of(key: bytes, bits: int) -> int:
    """The shard of a key at ``bits`` bits."""
    return prefix(point(key), bits)


def rendezvous_provider(key: bytes, bits: int) -> bool:
    """Whether the node of ``key`` announces itself under the rendezvous key on a
    network of ``bits`` shard bits (SPEC §11.1): its shard point's first
    max(0, bits - 2) bits are zero (every node, up to 2 bits)."""
    return prefix(point(key), max(0, check_bits(bits) - RENDEZVOUS_SPARE_BITS)) == 0


def provides_shard(key: bytes, bits: int, index: int, own_providers: int | None) -> bool:
    """Whether the node of ``key``, a member of shard ``index`` at ``bits`` bits, announces
    itself under the shard's provider key (SPEC §11.6): always for its own shard; for a
    backbone shard unless a lookup of the key's providers found ``own_providers`` >=
    OWN_PROVIDERS_ENOUGH providers whose own shard it is (None: not looked up)."""
    if shard_of(key, bits) == index:
        return True
    return own_providers is None or own_providers < OWN_PROVIDERS_ENOUGH


def count_fresh(count: int | None, age_s: float) -> bool:
    """Whether a count of a backbone shard's own members announced, taken ``age_s``
    seconds ago, still stands (SPEC §11.6): one of OWN_PROVIDERS_ENOUGH or more for
    OWN_PROVIDERS_FRESH; a smaller count or a failed lookup (None) is taken again at the
    next round of provides."""
    return count is not None and count >= OWN_PROVIDERS_ENOUGH and age_s < OWN_PROVIDERS_FRESH


def own_providers(provider_keys: Iterable[bytes | None], bits: int, index: int) -> int:
    """How many of a shard key's providers (their identity keys, from their peer IDs;
    None for a peer ID that is not an Ed25519 key) have it as their own shard; a key
    counts once."""
    return len({k for k in provider_keys if k is not None and shard_of(k, bits) == index})


def backbone_shards(key: bytes, bits: int, k: int = BACKBONE_SHARDS) -> tuple[int, ...]:
    """The node's ``k`` backbone shards: the first ``bits`` bits of
    SHA-256("rill/1/backbone" || key || j) for j = 0..k-1 (one byte j); they may repeat or
    equal the node's own shard."""
    return tuple(prefix(hashlib.sha256(BACKBONE_TAG + key + bytes([j])).digest(), bits)
                 for j in range(k))


def node_shards(key: bytes, bits: int, k: int = BACKBONE_SHARDS) -> frozenset[int]:
    """The shards a node joins: its key's shard and its backbone shards."""
    return frozenset({shard_of(key, bits), *backbone_shards(key, bits, k)})


def shard_topic(bits: int, index: int) -> str:
    """The gossip topic of shard ``index`` at ``bits`` >= 1 bits: ``rill/1/b{bits}/s{index}``."""
    if check_bits(bits) < 1 or not 0 <= index < 1 << bits:
        raise SchemaError(f"no shard {index} at {bits} bits")
    return f"rill/1/b{bits}/s{index}"


def node_topics(key: bytes, bits: int, k: int = BACKBONE_SHARDS) -> tuple[str, ...]:
    """The topics a node subscribes to: those of §11.2 at 0 bits; else its shards'
    topics, the equivocation topic and the catalogue topic (both stay global)."""
    if check_bits(bits) == 0:
        return tuple(TOPICS)
    return (*(shard_topic(bits, i) for i in sorted(node_shards(key, bits, k))),
            EQUIVOCATION_TOPIC, CATALOGUE_TOPIC)


def placement_keys(p: Preview) -> frozenset[bytes]:
    """The keys whose shards an object belongs to (see the module docstring)."""
    if p.type == "settlement":
        return p.subjects  # the donor and the creators of its lines
    if p.type in ("claim", "sealed-claim"):
        assert p.creator is not None
        return frozenset({p.creator})
    if p.type == "receipt":
        assert p.donor is not None
        return frozenset({p.signer, p.donor})
    if p.type == "equivocation":
        assert p.donor is not None
        return frozenset({p.donor})
    if p.type == "listing":
        return frozenset()  # the global catalogue topic; no month, never reconciled
    return frozenset({p.signer})  # a key document


def placement_points(p: Preview) -> tuple[bytes, ...]:
    return tuple(sorted(point(k) for k in placement_keys(p)))


def object_shards(p: Preview, bits: int) -> frozenset[int]:
    return frozenset(prefix(pt, bits) for pt in placement_points(p))


def object_topics(p: Preview, bits: int) -> tuple[str, ...]:
    """The topics an object is published on: its §11.2 topic at 0 bits and for an
    equivocation proof or a listing; else the topics of its shards, in ascending order."""
    if check_bits(bits) == 0 or p.type in GLOBAL_TYPES:
        return (TOPIC_OF[p.type],)
    return tuple(shard_topic(bits, i) for i in sorted(object_shards(p, bits)))


def check_topic(p: Preview, topic: str, bits: int) -> None:
    """A gossip message's topic must be one the object is published on in a network of
    ``bits`` shard bits (``wrong-topic``)."""
    if topic not in object_topics(p, bits):
        raise SchemaError(f"a {p.type} does not belong on {topic[:80]}", code="wrong-topic")


def preview_stored(raw: bytes) -> Preview | None:
    """The preview of a stored object of a placed type (settlement, claim, sealed claim,
    receipt, key document, equivocation proof), or None (a click entry, a statement, or
    anything that does not preview)."""
    try:
        return preview_object(raw)
    except Exception:  # stored objects were checked; refuse quietly anyway
        return None


def provider_key(bits: int, index: int) -> bytes:
    """The DHT key (a SHA-256 multihash, 34 bytes) under which the members of shard
    ``index`` at ``bits`` bits announce themselves: 0x12 0x20 ||
    SHA-256("rill/1/shard-providers/" || u8 bits || u32be index)."""
    shard_topic(bits, index)  # range checks
    return b"\x12\x20" + hashlib.sha256(
        PROVIDERS_TAG + bytes([bits]) + index.to_bytes(4, "big")).digest()


#: Around a change of shard bits (a *growth*), a node is subscribed to the topics of both
#: the old and the new bits, and accepts messages on either, from this many seconds before
#: the month's first instant to this many after it (SPEC §11.6 "Growing"): twelve times the
#: clock skew objects are allowed (300 s), and the month end's burst (one grace period,
#: an hour, after the boundary) is then published at the new bits only.
GROW_OVERLAP = 3600


@dataclass(frozen=True)
class ShardSchedule:
    """A network's shard bits over time: ``bits`` until the first change, then each
    ``(month, bits)`` of ``changes`` from that month's first instant (UTC), each one bit
    more than the one before, months ascending."""

    bits: int
    changes: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        before, last = check_bits(self.bits), ""
        for month, bits in self.changes:
            if not is_month(month):
                raise SchemaError(f"{month!r} is not a month (YYYY-MM)")
            if month <= last:
                raise SchemaError(f"months of shard bit changes must ascend: {month} after "
                                  f"{last}")
            if type(bits) is not int or bits != before + 1:
                raise SchemaError(f"shard bits grow by one at a time: {month} must be "
                                  f"{before + 1}, not {bits!r}")
            check_bits(bits)
            before, last = bits, month

    def at(self, t: int) -> int:
        """The bits in force at ``t``: nodes publish at them and keep their shards."""
        bits = self.bits
        for month, b in self.changes:
            if t < month_start(month):
                break
            bits = b
        return bits

    def accepted(self, t: int) -> tuple[int, ...]:
        """The bits whose topics a node is subscribed to and accepts messages on at ``t``:
        the bits in force, and within GROW_OVERLAP of a change the other side's too."""
        return tuple(sorted({self.at(t - GROW_OVERLAP), self.at(t),
                             self.at(t + GROW_OVERLAP)}))

    def next_event(self, t: int) -> int | None:
        """The first instant after ``t`` at which :meth:`at` or :meth:`accepted` changes."""
        times = [s + d for month, _ in self.changes for s in [month_start(month)]
                 for d in (-GROW_OVERLAP, 0, GROW_OVERLAP)]
        return min((x for x in times if x > t), default=None)

    def pending(self, t: int) -> tuple[str, int] | None:
        """The next change (month, bits) not yet in force at ``t``."""
        return next(((mo, b) for mo, b in self.changes if t < month_start(mo)), None)

    def topics(self, key: bytes, t: int, k: int = BACKBONE_SHARDS) -> tuple[str, ...]:
        """The topics a node subscribes to at ``t`` (both sets during an overlap)."""
        out: list[str] = []
        for bits in self.accepted(t):
            out += [x for x in node_topics(key, bits, k) if x not in out]
        return tuple(out)


def check_topic_any(p: Preview, topic: str, bits: tuple[int, ...]) -> None:
    """:func:`check_topic` for a message that may be on the topics of any of ``bits``
    (during a growth's overlap); ``wrong-topic`` when it is on none of them."""
    if not any(topic in object_topics(p, b) for b in bits):
        raise SchemaError(f"a {p.type} does not belong on {topic[:80]}", code="wrong-topic")


__all__ = ["BACKBONE_SHARDS", "GROW_OVERLAP", "OWN_PROVIDERS_ENOUGH", "OWN_PROVIDERS_FRESH",
           "PROVIDE_EVERY", "RENDEZVOUS_SPARE_BITS", "ShardSchedule", "backbone_shards",
           "check_topic", "check_topic_any", "count_fresh", "node_shards", "node_topics",
           "object_shards", "object_topics", "own_providers", "placement_keys", "point",
           "prefix", "preview_stored", "provider_key", "provides_shard",
           "rendezvous_provider", "shard_of", "shard_topic"]
