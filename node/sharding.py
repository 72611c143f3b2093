"""Shards (SPEC §11.6): the daemon's topics, the shard check of the gossip gate, publishing
to shards the node is not in (node/shardreach.py), the provider records
of its own shards, per-topic counters, and the store side of shard-scoped reconciliation
(a mixin of :class:`rill.node.daemon.Daemon`).

With ``shard_bits = 0`` (the default) nothing here changes what the node does: it joins
the four topics of §11.2 and publishes each object on its type's topic.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import trio
from libp2p.peer.id import ID

from ..protocol import messages as m
from ..protocol.network import TOPIC_OF
from ..protocol.preview import Preview, check_preview, preview
from ..protocol.shard import (
    PROVIDE_EVERY,
    check_topic_any,
    count_fresh,
    node_shards,
    object_shards,
    object_topics,
    own_providers,
    placement_points,
    prefix,
    preview_stored,
    provider_key,
    provides_shard,
    shard_of,
    shard_topic,
)
from ..wallet.wallet import Wallet
from .discovery import find_providers
from .host import key_from_peer_id
from .shardreach import ShardPeers, ShardReach, topic_shard

log = logging.getLogger("rill.node")

#: A member retries its first provide this often until the DHT has a peer to take it.
PROVIDE_RETRY_S = 2.0
#: One provide (a lookup of the key's closest peers, then ADD_PROVIDER to up to 20 of them,
#: 3 at a time) may take this long; a failed one is tried again after PROVIDE_RETRY_S, then
#: twice as long each time, at most PROVIDE_RETRY_MAX_S.  (It was cut at FIND_S and retried
#: every 2 s: on a busy network of 20-50 nodes most provides took longer than 10 s, so every
#: node provided without end, each provide dialling new peers, each new peer a sync and a
#: reconciliation: 2-4 KB/s and ~3% of a core per node while idle, against ~0 and 0.2%.)
PROVIDE_S = 60.0
PROVIDE_RETRY_MAX_S = 600.0
#: A member looks for more peers of each of its shards while a shard topic has fewer than
#: SHARD_PEERS of them (GossipSub's D_low): after JOIN_FIRST_S (real seconds), then twice
#: as long each round, at most JOIN_EVERY_S.
JOIN_FIRST_S = 1.0
JOIN_EVERY_S = 60.0
SHARD_PEERS = 4
#: Providers of a backbone shard's key asked for when counting its own members (at most).
OWN_PROVIDERS_ASK = 64
#: Placement prefixes remembered for the reconcile server, in bytes (then forgotten).
MAX_PREFIX_BYTES = 16 * 1024 * 1024


class Placements:
    """Object ID -> the first 16 bits of each of its placement points (2 bytes each,
    sorted, no repeats): enough to place it at any b <= 16.  Bounded in bytes; a full
    cache is cleared (each entry is recomputed from the stored object on demand)."""

    def __init__(self, limit: int = MAX_PREFIX_BYTES) -> None:
        self.limit = limit
        self.entries: dict[bytes, bytes] = {}
        self.size = 0

    def get(self, oid: bytes) -> bytes | None:
        return self.entries.get(oid)

    def put(self, oid: bytes, raw: bytes) -> bytes:
        p = preview_stored(raw)
        prefixes = b"" if p is None else b"".join(sorted(
            {prefix(pt, 16).to_bytes(2, "big") for pt in placement_points(p)}))
        if self.size + len(prefixes) + 64 > self.limit:
            self.entries.clear()
            self.size = 0
        self.entries[oid] = prefixes
        self.size += len(prefixes) + 64
        return prefixes


def in_shard(prefixes: bytes, shard: tuple[int, int]) -> bool:
    bits, index = shard
    return any(int.from_bytes(prefixes[k:k + 2], "big") >> (16 - bits) == index
               for k in range(0, len(prefixes), 2))


def shard_month_ids(w: Wallet, month: str, shard: tuple[int, int],
                    cache: Placements) -> list[bytes]:
    """In a worker thread: the public IDs of ``month`` placed in ``shard`` (SPEC §11.6).
    An object's placement is computed once (one preview parse of its stored bytes, read
    only when not cached)."""
    out = []
    for (oid_,) in w.db.execute("SELECT id FROM objects WHERE month = ? AND private = 0 "
                                "AND type != 'claim'",
                                (month,)).fetchall():
        oid = bytes(oid_)
        prefixes = cache.get(oid)
        if prefixes is None:
            row = w.db.execute("SELECT raw FROM objects WHERE id = ?", (oid,)).fetchone()
            if row is None:  # gone meanwhile
                continue
            prefixes = cache.put(oid, bytes(row[0]))
        if in_shard(prefixes, shard):
            out.append(oid)
    return out


class Sharding(ShardReach):
    def _init_shards(self) -> None:
        #: the network's shard bits over time (``[network] shard_bits``, ``shard_bits_from``)
        self.shard_schedule = self.config.shard_schedule()
        now = self.clock.now()
        self._set_bits(self.shard_schedule.at(now))
        #: the topics subscribed to: both bits' during a growth's overlap (node/growing.py)
        self.topics: tuple[str, ...] = self.shard_schedule.topics(
            self.identity, now, self.config.shard_backbone)
        #: per topic: verdicts on peers' messages and their bytes (what the node received)
        self.topic_counters: dict[str, Counter[str]] = {}
        self._deferred: dict[str, list[bytes]] = {}
        self._finding: set[str] = set()
        self._points = Placements()
        #: shard members seen subscribed before (node/shardreach.py)
        self.shard_peers = ShardPeers()
        #: (bits, index) -> (own members found announced, None if the lookup failed;
        #: when, trio seconds), per backbone shard looked up (:meth:`shards_to_provide`)
        self._own_providers_at: dict[tuple[int, int], tuple[int | None, float]] = {}

    def _set_bits(self, bits: int) -> None:
        """The shard bits in force: published at, kept, reconciled, provided."""
        self.shard_bits: int = bits
        self.shards: frozenset[int] = (node_shards(self.identity, bits,
                                                    self.config.shard_backbone)
                                       if bits else frozenset({0}))

    def member_shards(self) -> list[tuple[int, int]]:
        """(bits, index) of each shard topic subscribed to (two bits' during an overlap)."""
        return [topic_shard(t) for t in self.topics if t.startswith("rill/1/b")]

    # -- the gate -------------------------------------------------------------------------

    def _gossip_precheck(self, topic: str, raw: bytes, now: int) -> Preview:
        """The gate's cheap checks plus, in a sharded network, the object's topic: one of
        its shards' (or the equivocation topic for a proof), else ``wrong-topic``."""
        accepted = self.shard_schedule.accepted(now)  # two bits around a growth
        if accepted == (0,):
            return self._precheck(topic, raw, now)
        p = preview(topic, raw)
        check_topic_any(p, topic, accepted)  # right after the type (SPEC §11.6)
        check_preview(p, now, self.config.window_months, self.work_bits)
        return p

    def keeps(self, p: Preview) -> bool:
        """Whether this node keeps an object fetched by reconciliation: it concerns us, or
        it is placed in one of our shards (always, without shards)."""
        if not self.shard_bits or self.identity in p.subjects or p.type == "equivocation":
            return True
        return bool(object_shards(p, self.shard_bits) & self.shards)

    def _count_topic(self, msg: Any, outcome: str) -> None:
        for topic in msg.topicIDs:
            c = self.topic_counters.setdefault(str(topic), Counter())
            c["messages"] += 1
            c[outcome] += 1
            c["bytes"] += len(msg.data)

    def traffic(self) -> dict[str, Any]:
        """Counters to compare shards on and off: per topic messages judged (accepted,
        ignored, rejected) and their bytes, and the totals."""
        total: Counter[str] = Counter()
        for c in self.topic_counters.values():
            total.update(c)
        return {"shard_bits": self.shard_bits, "shards": sorted(self.shards),
                "accepted_bits": list(self.shard_schedule.accepted(self.clock.now())),
                "topics": {t: dict(c) for t, c in sorted(self.topic_counters.items())},
                "total": dict(total)}

    # -- publishing -----------------------------------------------------------------------

    def _topics_of(self, raw: bytes) -> tuple[str, ...]:
        if not self.shard_bits:
            return (TOPIC_OF[m.peek_type(raw) or ""],)
        p = self._precheck(TOPIC_OF.get(m.peek_type(raw) or "", ""), raw, self.clock.now())
        return object_topics(p, self.shard_bits)

    async def _publisher(self) -> None:
        """Publish queued objects, paced, on every topic they belong on.  Without shards
        (or on a topic with known peers) as always: held until the topic has peers.  A
        shard topic without known peers: the objects wait while the shard's members are
        looked for in the DHT (one lookup task per topic)."""
        assert self.p2p is not None
        ps = self.p2p.pubsub  # noqa: F841
        async for item in self._outbox_recv:
            if isinstance(item, tuple):
                topics, raw = (item[0],), item[1]
            else:
                raw = item
                try:
                    topics = self._topics_of(raw)
                except Exception as exc:  # checked when queued; never stop the publisher
                    log.warning("not publishing an object: %r", exc)
                    continue
            for topic in topics:
                if topic.startswith("rill/1/b") and not self._has_peers(topic):
                    self._defer(topic, raw)  # every node joins the global topics
                    continue
                while not self._has_peers(topic):
                    await trio.sleep(0.05)  # nobody to publish to yet (trap 12)
                await self._publish_on(topic, raw)
                self.counters["published"] += 1
                await trio.sleep(0.002)  # pace: the per-peer queue holds 32 (trap 3)

    def _has_peers(self, topic: str) -> bool:
        assert self.p2p is not None
        return any(True for _ in self.p2p.pubsub.peer_topics.get(topic, ()))

    # -- provider records ------------------------------------------------------------------

    async def _join_shards(self) -> None:
        """Keep SHARD_PEERS gossip peers in each of our shard topics: look for the shard's
        providers in the DHT every JOIN_EVERY_S while there are fewer (from JOIN_FIRST_S
        again when the shards change)."""
        if not self.shard_bits and not self.shard_schedule.changes:
            return  # never sharded
        delay = JOIN_FIRST_S
        while True:
            await trio.sleep(delay)
            delay = min(2 * delay, JOIN_EVERY_S)
            for bits, index in self.member_shards():
                topic = shard_topic(bits, index)
                if self._peer_count(topic) >= SHARD_PEERS:
                    continue
                try:
                    await self.reach_shard(topic, SHARD_PEERS)
                except Exception as exc:  # the DHT and dials: try again next round
                    log.debug("looking for peers of %s: %r", topic, exc)

    async def _provide_shards(self) -> None:
        """Announce this node under its shards' DHT keys (§11.6), again every
        PROVIDE_EVERY; the first time as soon as the DHT knows a peer (and again when the
        shards change: node/growing.py restarts this with :meth:`_join_shards`).  Its own
        shard's key always; a backbone shard's only while too few of the shard's own
        members are found announced (:meth:`shards_to_provide`)."""
        if not self.shard_bits and not self.shard_schedule.changes:
            return  # never sharded
        assert self.p2p is not None
        dht = self.p2p.dht
        while True:
            while dht.get_routing_table_size() == 0:
                await trio.sleep(PROVIDE_RETRY_S)
            pending = await self.shards_to_provide()
            retry = PROVIDE_RETRY_S
            while pending:
                bits, index = pending[0]
                try:
                    with trio.fail_after(PROVIDE_S):
                        ok = await dht.provide(provider_key(bits, index).hex())
                except (Exception, trio.TooSlowError) as exc:
                    log.debug("providing shard %d/%d: %r", bits, index, exc)
                    ok = False
                if ok:
                    pending.pop(0)
                    self.counters["provided"] = self.counters.get("provided", 0) + 1
                else:
                    self.counters["provide_failed"] = (
                        self.counters.get("provide_failed", 0) + 1)
                    await trio.sleep(retry)
                    retry = min(2 * retry, PROVIDE_RETRY_MAX_S)
            await trio.sleep(PROVIDE_EVERY)

    async def shards_to_provide(self) -> list[tuple[int, int]]:
        """The member shards this round of provides announces: the own shard (at each
        bits in force) first, then each backbone shard for which no lookup of its key's
        providers in the last OWN_PROVIDERS_FRESH found OWN_PROVIDERS_ENOUGH of its own
        members; a key not looked up, or found short, is looked up first (one DHT lookup
        and GET_PROVIDERS to the key's closest peers, about what a provide costs)."""
        own, backbone = [], []
        members = set(self.member_shards())
        for gone in set(self._own_providers_at) - members:  # shards left at a growth
            del self._own_providers_at[gone]
        for bits, index in sorted(members):
            (own if shard_of(self.identity, bits) == index else backbone).append((bits, index))
        for bits, index in backbone:
            found = await self._own_providers_found(bits, index)
            if provides_shard(self.identity, bits, index, found):
                own.append((bits, index))
            else:
                self.counters["provide_skipped"] = self.counters.get("provide_skipped", 0) + 1
        return own

    @property
    def own_providers(self) -> dict[tuple[int, int], int | None]:
        """Per backbone shard looked up: its own members found announced at the last
        count (None: the lookup failed)."""
        return {shard: count for shard, (count, _) in self._own_providers_at.items()}

    async def _own_providers_found(self, bits: int, index: int) -> int | None:
        """How many of the shard's own members announce themselves under its key: the
        last count while it stands (``count_fresh``), else looked up now (None if the
        lookup fails)."""
        assert self.p2p is not None
        now = trio.current_time()
        known = self._own_providers_at.get((bits, index))
        if known is not None and count_fresh(known[0], now - known[1]):
            return known[0]
        self.counters["own_provider_lookups"] = self.counters.get("own_provider_lookups",
                                                                  0) + 1
        try:
            with trio.fail_after(PROVIDE_S):
                infos = await find_providers(self.p2p.dht, provider_key(bits, index).hex(),
                                             OWN_PROVIDERS_ASK)
        except (Exception, trio.TooSlowError) as exc:
            log.debug("counting the providers of shard %d/%d: %r", bits, index, exc)
            self._own_providers_at[(bits, index)] = (None, now)
            return None
        count = own_providers((key_from_peer_id(i.peer_id) for i in infos
                               if i.peer_id != self.p2p.peer_id), bits, index)
        self._own_providers_at[(bits, index)] = (count, now)
        return count

    # -- reconciliation scopes -------------------------------------------------------------

    def reconcile_scopes(self, peer: ID) -> list[tuple[int, int] | None]:
        """What to reconcile with a peer: everything without shards; else each of our
        shards the peer is subscribed to (all of ours while its subscriptions are not
        known yet)."""
        if not self.shard_bits:
            return [None]
        assert self.p2p is not None
        topics = self.p2p.pubsub.peer_topics
        ours = sorted(self.shards)
        theirs = [i for i in ours
                  if peer in topics.get(shard_topic(self.shard_bits, i), ())]
        known = any(peer in peers for peers in topics.values())
        return [(self.shard_bits, i) for i in (theirs if known else ours)]
