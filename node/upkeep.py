"""The connections of a sharded node (SPEC §11.6 "Connections"; a mixin of
:class:`rill.node.daemon.Daemon`).

Without shards every peer carries every topic, and nothing here changes what a node does.
With shards, most connections a node gets are not gossip peers of its shards at all:
Kademlia lookups (its own and other nodes') dial peers anywhere in the network, and
publishers outside a shard dial its members to publish by fanout.  py-libp2p 0.8.1 keeps
every connection until one side closes it, and every connection becomes a gossip peer,
so a node ended up connected to most of the network, each new connection synced and
reconciled (2-4 KB/s and ~3% of a core per node while idle in the scale simulation).
Here:

* a new peer is synced and reconciled with only once its subscriptions say it is in one
  of our shards (or never say so within GREET_WAIT_S);
* every TRIM_EVERY_S, connections to peers in none of our shards, connected longer than
  TRIM_GRACE_S, are closed, oldest first, while more than KEEP_CONNECTIONS remain; a relay
  in use (ours, or one a peer reserved on us) is kept, and so is a connection with a
  stream open other than GossipSub's (a DHT request, a sync: closed a round later);
* beyond MAX_CONNECTIONS, connections to peers in none of our GossipSub meshes (of any
  topic) are closed the same way, down to MAX_CONNECTIONS: a shard of a large network has
  ~90 members and a node is in three, whose newcomers and publishers each dial a few, so
  connections would otherwise pile up over a month, each costing Yamux's pings, memory
  and a file descriptor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio
from libp2p.peer.id import ID

from ..protocol.shard import shard_topic

log = logging.getLogger("rill.node")

#: A sharded node waits this long (real seconds) for a new peer's subscriptions before
#: deciding whether to sync with it.
GREET_WAIT_S = 5.0
#: Connections are looked over this often (real seconds).
TRIM_EVERY_S = 10.0
#: A connection is never closed in its first TRIM_GRACE_S (real seconds): long enough to
#: publish by fanout through it, or to serve a lookup.
TRIM_GRACE_S = 60.0
#: Never trim below this many connections (the rendezvous looks for peers below 8).
KEEP_CONNECTIONS = 8
#: Above this many connections, those to peers in none of our meshes are closed (mesh
#: peers, relays and busy connections are kept whatever the count).
MAX_CONNECTIONS = 48


def to_trim(connected: Iterable[ID], kept: set[ID], first_seen: dict[ID, float],
            now: float, grace: float, keep: int) -> list[ID]:
    """Which connected peers to disconnect: those not ``kept``, seen for longer than
    ``grace``, oldest first, while more than ``keep`` connections would remain."""
    peers = list(connected)
    spare = len(peers) - keep
    if spare <= 0:
        return []
    old = sorted((first_seen[p], str(p), p) for p in peers
                 if p not in kept and p in first_seen and now - first_seen[p] >= grace)
    return [p for _, _, p in old[:spare]]


def busy(conn: object) -> bool:
    """A connection in the middle of an exchange: a stream open on it other than
    GossipSub's own (which lives as long as the connection), e.g. a DHT request being
    served or a sync.  Closing it would fail that exchange (on a busy network of 200
    nodes, thousands of DHT requests failed so)."""
    for stream in getattr(conn, "get_streams", tuple)():
        protocol = stream.get_protocol()
        if protocol is None or not str(protocol).startswith("/meshsub/"):
            return True
    return False


class Upkeep:
    def shares_shard(self, peer: ID) -> bool:
        """The peer is subscribed to one of the shard topics we are in."""
        assert self.p2p is not None
        topics = self.p2p.pubsub.peer_topics
        return any(peer in topics.get(shard_topic(bits, index), ())
                   for bits, index in self.member_shards())

    def _subscriptions_known(self, peer: ID) -> bool:
        assert self.p2p is not None
        return any(peer in peers for peers in self.p2p.pubsub.peer_topics.values())

    async def _greet(self, peer: ID) -> None:
        """A new gossip peer: sync and reconcile with it, and the periodic rounds back at
        their base interval (with shards, only for a peer of one of our shards)."""
        if self.shard_bits:
            with trio.move_on_after(GREET_WAIT_S):
                while not self._subscriptions_known(peer):
                    await trio.sleep(0.1)
            if self._subscriptions_known(peer) and not self.shares_shard(peer):
                self.counters["not_greeted"] = self.counters.get("not_greeted", 0) + 1
                return
        self._round_reset()
        await self._sync_quietly(peer)

    def _relay_peers(self) -> set[ID]:
        """Peers a sharded node keeps whatever their shards: the relay it reserved on and
        the peers holding a reservation on it."""
        assert self.p2p is not None
        nat = self.p2p.nat
        return set(nat.kept_peers()) if nat is not None else set()

    async def _trim_connections(self) -> None:
        """With shards: close connections to peers in none of our shards (see the module
        docstring).  Also forgets when peers gone were first seen."""
        if not self.shard_bits and not self.shard_schedule.changes:
            return  # never sharded
        assert self.p2p is not None
        swarm = self.p2p.host.get_network()
        first_seen: dict[ID, float] = {}
        while True:
            await trio.sleep(TRIM_EVERY_S)
            now = trio.current_time()
            connected_map = swarm.get_connections_map()  # type: ignore[attr-defined]
            connected = list(connected_map)
            for peer in connected:
                first_seen.setdefault(peer, now)
            for peer in set(first_seen) - set(connected):
                del first_seen[peer]
            if not self.shard_bits:
                continue
            self._remember_members()  # before their connections close
            always = self._relay_peers() | {p for p, conns in connected_map.items()
                                            if any(map(busy, conns))}
            shard_peers = {p for p in self.p2p.pubsub.peers if self.shares_shard(p)}
            trimmed = to_trim(connected, shard_peers | always, first_seen, now,
                              TRIM_GRACE_S, KEEP_CONNECTIONS)
            gone = set(trimmed)
            capped = to_trim([p for p in connected if p not in gone],
                             self._mesh_peers() | always, first_seen, now, TRIM_GRACE_S,
                             MAX_CONNECTIONS)
            for peer, why in [*((p, "trimmed") for p in trimmed),
                              *((p, "capped") for p in capped)]:
                try:
                    await self.p2p.host.disconnect(peer)
                except Exception as exc:  # a connection already gone
                    log.debug("closing the connection of %s: %r", peer, exc)
                    continue
                first_seen.pop(peer, None)
                self.counters[why] = self.counters.get(why, 0) + 1
                log.debug("closed the connection of %s: %s", peer,
                          "in none of our shards" if why == "trimmed"
                          else f"in none of our meshes, over {MAX_CONNECTIONS}")

    def _mesh_peers(self) -> set[ID]:
        """Peers in one of our GossipSub meshes (any topic)."""
        assert self.p2p is not None
        return {p for peers in self.p2p.gossipsub.mesh.values() for p in peers}
