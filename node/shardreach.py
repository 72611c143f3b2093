"""Publishing to a shard the node is not in (SPEC §11.6 "Finding a shard's peers"): the
objects wait while the shard's members are found and dialled (a mixin of
:class:`rill.node.daemon.Daemon`).

Members are looked for first among the peers the node saw subscribed to the shard's topic
before (:class:`ShardPeers`), then in the DHT.  A DHT lookup of a shard's providers
contacts about twenty peers (the key's closest peers, then their providers), each a new
connection (Noise, identify, GossipSub's hello) closed again a minute later by the
trimming of node/upkeep.py; at month end every node looks up its creators' shards.  One
remembered member is one dial.

What is remembered comes only from the node's own connections (a peer's subscriptions as
GossipSub announced them), bounded per topic and in topics.  A remembered peer may drop
what it is given, as a hostile provider record may: republishing and sync complete what
gossip drops, and a remembered member that is not found subscribed is forgotten.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError
from multiaddr import Multiaddr

from ..protocol.shard import provider_key
from .discovery import find_providers

log = logging.getLogger("rill.node")

#: Finding a shard's peers: one DHT lookup at most this long (real seconds), then at
#: most this many providers dialled, each within DIAL_S, then up to SUBSCRIBED_S for one
#: of them to announce its subscription to the shard's topic.
FIND_S = 10.0
#: Objects for a shard without known peers: the lookup is tried this many times, the
#: first retry FIND_RETRY_S after the first, twice as long each time (the DHT may not
#: know anyone yet right after start).
FIND_TRIES = 4
FIND_RETRY_S = 2.0
DIAL_PROVIDERS = 3
#: Providers a lookup of a shard's key asks for (node/discovery.py find_providers: not
#: py-libp2p's, which a member that announced itself answered from its own record alone)
FIND_COUNT = 20
DIAL_S = 5.0
SUBSCRIBED_S = 5.0
#: Objects waiting for a shard's peers to be found, in all.
MAX_DEFERRED = 10_000
#: Objects whose shard's peers were not found are looked up again after this long (real
#: seconds), then twice as long each time, at most UNPUBLISHED_RETRY_MAX_S (without it a
#: receipt whose donor's shard was not found waited for its creator's next start; at 10
#: minutes, a claim whose creator's shard was not found at month end in the scale
#: simulation reached its creator 10 minutes late).
UNPUBLISHED_RETRY_S = 60.0
UNPUBLISHED_RETRY_MAX_S = 6 * 3600.0
#: Objects waiting for a shard's peers look this often (real seconds) whether the node
#: now has a peer of the shard, or any gossip peer after having none.
DEFERRED_POLL_S = 1.0
#: Members remembered per shard topic (the most recently seen), topics in all, and
#: addresses per member.
PER_TOPIC = 8
MAX_TOPICS = 1024
MAX_ADDRS = 4


def topic_shard(topic: str) -> tuple[int, int]:
    """(bits, index) of a shard topic ``rill/1/b{bits}/s{index}``."""
    bits, index = topic.removeprefix("rill/1/b").split("/s")
    return int(bits), int(index)


_SHARD_TOPIC = re.compile(r"rill/1/b([1-9][0-9]?)/s(0|[1-9][0-9]{0,4})")


def shard_of_topic(topic: str) -> tuple[int, int] | None:
    """(bits, index) of a well-formed shard topic (1 <= bits <= 16, index < 2**bits), else
    None: a topic name a peer subscribed to is anyone's text."""
    match = _SHARD_TOPIC.fullmatch(topic)
    if match is None:
        return None
    bits, index = int(match[1]), int(match[2])
    return (bits, index) if bits <= 16 and index < 2 ** bits else None


class ShardPeers:
    """Shard topic -> the peers last seen subscribed to it, with their addresses."""

    def __init__(self, per_topic: int = PER_TOPIC, max_topics: int = MAX_TOPICS) -> None:
        self.per_topic = per_topic
        self.max_topics = max_topics
        self._seen: OrderedDict[str, OrderedDict[ID, tuple[Multiaddr, ...]]] = OrderedDict()

    def note(self, topic: str, peer: ID, addrs: Iterable[Multiaddr]) -> None:
        """``peer``, dialable at ``addrs``, is subscribed to ``topic``."""
        kept = tuple(a for a in addrs if "/p2p-circuit" not in str(a))[:MAX_ADDRS]
        if not kept:
            return
        members = self._seen.get(topic)
        if members is None:
            members = self._seen[topic] = OrderedDict()
            while len(self._seen) > self.max_topics:
                self._seen.popitem(last=False)
        self._seen.move_to_end(topic)
        members[peer] = kept
        members.move_to_end(peer)
        while len(members) > self.per_topic:
            members.popitem(last=False)

    def note_all(self, peer_topics: Mapping[str, Iterable[ID]], bits: Iterable[int],
                 addrs_of: Callable[[ID], Iterable[Multiaddr]]) -> None:
        """Every connected peer's subscriptions (GossipSub's ``peer_topics``) to shard
        topics at ``bits`` (the bits the network accepts now; other names are ignored)."""
        accepted = set(bits)
        for topic, peers in list(peer_topics.items()):
            shard = shard_of_topic(topic)
            if shard is not None and shard[0] in accepted:
                for peer in list(peers):
                    self.note(topic, peer, addrs_of(peer))

    def forget(self, topic: str, peer: ID) -> None:
        members = self._seen.get(topic)
        if members is not None:
            members.pop(peer, None)

    def members(self, topic: str) -> list[tuple[ID, tuple[Multiaddr, ...]]]:
        """The remembered members of ``topic``, most recently seen first."""
        return list(reversed(self._seen.get(topic, {}).items()))


def peerstore_addrs(peerstore: Any) -> Callable[[ID], list[Multiaddr]]:
    """A peer's addresses from the peerstore (none if it has none)."""
    def addrs_of(peer: ID) -> list[Multiaddr]:
        try:
            return list(peerstore.addrs(peer))
        except PeerStoreError:  # unknown or expired: nothing to remember
            return []
    return addrs_of


class ShardReach:
    def _defer(self, topic: str, raw: bytes, retry: float | None = None) -> None:
        if sum(len(v) for v in self._deferred.values()) >= MAX_DEFERRED:
            self.counters["unpublished"] = self.counters.get("unpublished", 0) + 1
            log.warning("too many objects wait for shard peers: not publishing one on %s",
                        topic)
            return
        self._deferred.setdefault(topic, []).append(raw)
        if topic not in self._finding and self._nursery is not None:
            self._finding.add(topic)
            self._nursery.start_soon(self._find_then_publish, topic,
                                     UNPUBLISHED_RETRY_S if retry is None else retry)

    async def _find_then_publish(self, topic: str, retry: float) -> None:
        reached = False
        try:
            delay = FIND_RETRY_S
            for attempt in range(FIND_TRIES):
                if attempt:
                    await trio.sleep(delay)
                    delay *= 2
                try:
                    reached = await self.reach_shard(topic)
                except Exception as exc:  # the DHT and dials: a failure is "not reached"
                    log.info("looking for peers of %s failed: %r", topic, exc)
                if reached:
                    break
        finally:
            self._finding.discard(topic)
            waiting = self._deferred.pop(topic, [])
        if not reached:
            self.counters["unpublished"] = self.counters.get("unpublished", 0) + len(waiting)
            log.info("no peer of %s found: %d object(s) not published there yet (looked "
                     "up again in %.0f s)", topic, len(waiting), retry)
            if waiting and self._nursery is not None:
                self._nursery.start_soon(self._defer_again, topic, waiting, retry)
            return
        for raw in waiting:
            await self._outbox_send.send((topic, raw))

    async def _defer_again(self, topic: str, waiting: list[bytes], retry: float) -> None:
        """Objects whose shard's peers were not found: looked for again after ``retry``
        (then twice as long), or at once when a peer of the shard connects, or when a
        node that had no gossip peer at all gets one (its lookups had no one to ask: a
        node alone at month end sends its claims as soon as it meets anyone); the
        early look keeps ``retry``."""
        assert self.p2p is not None
        pubsub = self.p2p.pubsub
        alone = not pubsub.peers
        deadline = trio.current_time() + retry
        early = False
        while trio.current_time() < deadline:
            await trio.sleep(min(DEFERRED_POLL_S, deadline - trio.current_time()))
            if self._peer_count(topic) or (alone and pubsub.peers):
                early = True
                break
        if topic_shard(topic)[0] not in self.shard_schedule.accepted(self.clock.now()):
            return  # the network's bits grew meanwhile: republished at the new ones
        for raw in waiting:
            self._defer(topic, raw, retry if early else min(2 * retry,
                                                            UNPUBLISHED_RETRY_MAX_S))

    async def reach_shard(self, topic: str, want: int = 1) -> bool:
        """Become a gossip peer of at least ``want`` members of a shard topic: members
        seen before first (:class:`ShardPeers`), then the providers of the shard's DHT
        key (§11.6), dialled until enough announce the topic (at most DIAL_PROVIDERS
        dials of each)."""
        assert self.p2p is not None
        if self._peer_count(topic) >= want:
            return True
        if not topic.startswith("rill/1/b"):
            return False
        remembered = [PeerInfo(peer, list(addrs))
                      for peer, addrs in self.shard_peers.members(topic)]
        if remembered and await self._dial_members(topic, remembered, want,
                                                   remembered=True):
            self.counters["shard_remembered"] = self.counters.get("shard_remembered", 0) + 1
            return True
        bits, index = topic_shard(topic)
        infos: list[Any] = []
        with trio.move_on_after(FIND_S):
            infos = await find_providers(self.p2p.dht, provider_key(bits, index).hex(),
                                         FIND_COUNT)
        self.counters["shard_lookups"] = self.counters.get("shard_lookups", 0) + 1
        if await self._dial_members(topic, infos, want, remembered=False):
            return True
        return self._peer_count(topic) >= min(want, 1)

    async def _dial_members(self, topic: str, infos: list[Any], want: int,
                            remembered: bool) -> bool:
        """Dial up to DIAL_PROVIDERS of ``infos`` not yet gossip peers, each then given
        SUBSCRIBED_S to announce ``topic``, until ``want`` peers of it are known.  A
        remembered member that cannot be dialled, or does not announce the topic, is
        forgotten."""
        assert self.p2p is not None
        p2p = self.p2p
        dialled = 0
        for info in infos:
            if (info.peer_id == p2p.peer_id or self.is_blocked(info.peer_id) or
                    info.peer_id in p2p.pubsub.peers):
                continue
            if dialled == DIAL_PROVIDERS:
                break
            dialled += 1
            with trio.move_on_after(DIAL_S):
                try:
                    await p2p.host.connect(info)  # liveness: a dead provider fails here
                    if not remembered:
                        await p2p.dht.routing_table.add_peer(info.peer_id)
                except Exception as exc:  # a failed dial: the next one
                    log.debug("member %s of %s: %r", info.peer_id, topic, exc)
                    if remembered:
                        self.shard_peers.forget(topic, info.peer_id)
                    continue
            with trio.move_on_after(SUBSCRIBED_S):
                while not (info.peer_id in p2p.pubsub.peer_topics.get(topic, ()) or
                           self._peer_count(topic) >= want):
                    await trio.sleep(0.05)
            if remembered and info.peer_id not in p2p.pubsub.peer_topics.get(topic, ()):
                self.shard_peers.forget(topic, info.peer_id)
            if self._peer_count(topic) >= want:
                return True
        return False

    def _remember_members(self) -> None:
        """Note every connected peer's shard subscriptions (called before trimming)."""
        assert self.p2p is not None
        self.shard_peers.note_all(self.p2p.pubsub.peer_topics,
                                  self.shard_schedule.accepted(self.clock.now()),
                                  peerstore_addrs(self.p2p.host.get_peerstore()))

    def _peer_count(self, topic: str) -> int:
        assert self.p2p is not None
        return len(self.p2p.pubsub.peer_topics.get(topic, ()))
